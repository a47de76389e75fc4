"""train.py with a fault injected at a chosen point (for the fault tests).

    python tests/helpers/fault_train.py --fill_before=best \
        --fill_file=/mnt/small/filler <train.py flags>
    python tests/helpers/fault_train.py --hold_after_step=5 \
        --hold_marker=/tmp/held --release_file=/tmp/go <train.py flags>

`--fill_before=WRITE` fills the filesystem of `--fill_file` (writes zeros
into that file until the disk says it is full) just before the run's
write WRITE, and lets the write go on: it then meets a real full disk,
in Python's or TensorFlow's own C++ writers alike. WRITE is one of
`FILL_POINTS`; `checkpoint` (and `events`, `best`) may carry `:N`, the
N-th such write (1-based). Nothing else is patched: which write fails
and how the run ends is the package's own behaviour.

`--hold_after_step=N` writes the marker file (this process's id) after
optimizer step N and waits until `--release_file` exists (the test can
kill it meanwhile, or start a second trainer on the same directory).
Everything else is train.py unchanged.
"""

import functools
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FILL_POINTS = ("config", "checkpoint", "best", "events", "label_space",
               "keras", "export", "metrics")


def _take(name, default=None):
    for i, arg in enumerate(sys.argv):
        if arg.startswith(f"--{name}="):
            del sys.argv[i]
            return arg.split("=", 1)[1]
    return default


def fill(path):
    """Writes zeros into `path` until its filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 16, 4096, 1):  # what is left below a page too
            while True:
                try:
                    if os.write(fd, b"\0" * size) < size:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)


def _before(owner, name, filler, nth=1, when=None):
    """Patches `owner.name` to fill the disk before its `nth` call (of
    those where `when(*args, **kwargs)` holds)."""
    original = getattr(owner, name)
    calls = [0]

    @functools.wraps(original)
    def patched(*args, **kwargs):
        if when is None or when(*args, **kwargs):
            calls[0] += 1
            if calls[0] == nth:
                fill(filler)
        return original(*args, **kwargs)

    setattr(owner, name, patched)


def _install_fill(point, filler):
    from epsilon_tf import export as export_lib
    from epsilon_tf.labels import label_space
    from epsilon_tf.training import checkpointing, hooks, run, trainer

    what, _, nth = point.partition(":")
    nth = int(nth or 1)
    if what not in FILL_POINTS:
        raise SystemExit(f"--fill_before must be one of {FILL_POINTS}")

    def named(file_name):
        return lambda path, *a, **k: os.path.basename(path) == file_name

    if what == "config":
        _before(trainer, "write_json", filler, nth, named("config.json"))
    elif what == "checkpoint":
        _before(checkpointing.TrainingCheckpoints, "save", filler, nth)
    elif what == "best":
        _before(checkpointing.TrainingCheckpoints, "publish_best", filler,
                nth)
    elif what == "events":
        # The TensorBoard hook flushes its event files (training/hooks.py).
        _before(hooks.TensorBoardSummaries, "flush", filler, nth)
    elif what == "label_space":
        _before(label_space.LabelSpace, "save", filler, nth)
    elif what == "keras":
        _before(run, "save_keras_atomically", filler, nth)
    elif what == "export":
        _before(export_lib, "export_saved_model", filler, nth)
    else:
        _before(run, "write_json", filler, nth, named("metrics.json"))


def _install_hold(after, marker, release):
    from epsilon_tf.training.trainer import Trainer

    step = Trainer._distributed_step

    def held_step(self, iterator):
        out = step.__get__(self, Trainer)(iterator)
        if int(self.optimizer.iterations.numpy()) == after:
            Path(marker).write_text(str(os.getpid()))
            while not os.path.exists(release):
                time.sleep(0.1)
        return out

    Trainer._distributed_step = held_step


def main():
    point = _take("fill_before")
    filler = _take("fill_file")
    hold = _take("hold_after_step")
    marker = _take("hold_marker")
    release = _take("release_file")
    sys.argv[0] = str(ROOT / "train.py")
    import train

    if point:
        _install_fill(point, filler)
    if hold:
        _install_hold(int(hold), marker, release)
    train.run_main()


if __name__ == "__main__":
    main()
