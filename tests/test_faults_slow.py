"""Fault injection, the slow half: real runs meeting real faults.

- A full disk at each write path: `helpers/fault_train.py` fills a small
  tmpfs (mounted by the test, as root; skipped with the reason where that
  is refused) just before the write, which then meets ENOSPC in Python's
  or TensorFlow's own C++ writers. The run must end in one `error:` line
  naming the file, leave everything written before intact, and, once the
  filler is deleted, the same command must finish with the metrics of an
  uninterrupted run.
- Two trainers on one directory: the second is refused (naming the first
  one's pid) and writes nothing; `eval.py` on the directory in training
  says which process trains there; the first finishes with the metrics of
  an uninterrupted run.
- SIGKILL at several points: the rerun is not refused (the lock died with
  the process) and finishes with the metrics of an uninterrupted run.

docs/faults.md lists the matrix.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import faults, release, tiny

pytestmark = pytest.mark.slow

ROOT = tiny.ROOT
PYTHON = sys.executable
FAULT_TRAIN = str(ROOT / "tests" / "helpers" / "fault_train.py")
# 160 training images, 144 after the validation carve: 9 steps of 16 per
# epoch, two epochs; the export is on (release.MODEL_FLAGS).
EPOCHS = 2
STEPS_PER_EPOCH = 9


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults_slow")
    paths = release.lesa_release(tmp / "release")
    flags = [*release.MODEL_FLAGS, f"--epochs={EPOCHS}",
             *release.lesa_flags(paths)]
    baseline = tmp / "baseline"
    code, out = tiny.run(_train(flags, baseline), tmp / "baseline.log")
    assert code == 0, out[-3000:]
    return flags, _metrics(baseline), tmp


def _train(flags, model_dir, *extra, script=None):
    script = script or str(ROOT / "train.py")
    return [PYTHON, script, *extra, *flags, f"--model_dir={model_dir}"]


def _metrics(run):
    result = json.loads((Path(run) / "metrics.json").read_text())
    return {
        "zsl": result["zsl"], "gzsl": result["gzsl"],
        "best_epoch": result["training"]["best_epoch"],
    }


def _one_error_line(code, output):
    return faults.one_error_line(code, output)


@pytest.fixture
def small_disk(tmp_path):
    with faults.small_tmpfs(tmp_path, "16M") as mount:
        yield mount


def _intact(run):
    """What a failed write must not have damaged: the JSON files parse,
    every checkpoint the state files list is complete and loads, and no
    partial temporary file of an atomic write is left."""
    import tensorflow as tf

    for name in ("config.json", "metrics.json"):
        path = run / name
        if path.exists():
            json.loads(path.read_text())
        assert not (run / f"{name}.tmp").exists()
    for directory in (run / "checkpoints", run / "best"):
        if not (directory / "checkpoint").exists():
            continue
        state = tf.train.get_checkpoint_state(str(directory))
        for prefix in state.all_model_checkpoint_paths:
            reader = tf.train.load_checkpoint(prefix)
            assert reader.get_variable_to_shape_map()
    assert not list(run.glob("*.tmp.keras"))


# Where the disk fills, and the path the error line must name (relative to
# the run directory; None: whichever write meets the full disk first).
FILL_POINTS = {
    "config": "config.json",
    "checkpoint:1": "checkpoints/",
    "checkpoint:2": "checkpoints/",
    "best": "best/",
    "events": None,
    "label_space": "label_space",
    "keras": "model.keras",
    "export": "export/",
    "metrics": "metrics.json",
}


@pytest.mark.parametrize("point", sorted(FILL_POINTS))
def test_a_full_disk_at_each_write_then_free_space_and_rerun(
    data, small_disk, point
):
    flags, expected, tmp = data
    run = small_disk / "run"
    filler = small_disk / "filler"
    code, out = tiny.run(
        _train(flags, run, f"--fill_before={point}",
               f"--fill_file={filler}", script=FAULT_TRAIN),
        small_disk.parent / "fault.log",
    )
    line = _one_error_line(code, out)
    assert "No space left on device: could not write " in line
    named = FILL_POINTS[point]
    assert f"could not write {run / (named or '')}" in line, line
    assert "free on its filesystem" in line
    _intact(run)
    # Free the space; the same command finishes as an uninterrupted run.
    filler.unlink()
    code, out = tiny.run(_train(flags, run), small_disk.parent / "rerun.log")
    assert code == 0, out[-3000:]
    assert _metrics(run) == expected
    _intact(run)


def _held(flags, run, tmp, step):
    marker, release_file = tmp / f"held_{step}", tmp / f"go_{step}"
    proc = tiny.start(
        _train(flags, run, f"--hold_after_step={step}",
               f"--hold_marker={marker}", f"--release_file={release_file}",
               script=FAULT_TRAIN),
        tmp / f"held_{step}.log",
    )
    assert tiny.wait_for_file(marker, proc), Path(proc.log_path).read_text()
    return proc, release_file


def test_two_trainers_on_one_directory(data, tmp_path):
    flags, expected, _ = data
    run = tmp_path / "run"
    first, go = _held(flags, run, tmp_path, step=STEPS_PER_EPOCH + 3)
    try:
        before = sorted(str(p) for p in run.rglob("*"))
        code, out = tiny.run(_train(flags, run), tmp_path / "second.log")
        line = _one_error_line(code, out)
        assert f"{run} is in use: process {first.pid} is training in it" in (
            line
        )
        # eval.py on the directory in training says who trains there.
        code, out = tiny.run(
            [PYTHON, str(ROOT / "eval.py"), f"--model_dir={run}"],
            tmp_path / "eval.log",
        )
        line = _one_error_line(code, out)
        assert f"No finished model in {run} yet: process {first.pid} is " in (
            line
        )
        assert "ckpt-9" in line  # epoch 1's checkpoint, finished
        # Neither wrote anything into the directory.
        assert sorted(str(p) for p in run.rglob("*")) == before
    finally:
        go.write_text("go")
    code, out = tiny.finish(first)
    assert code == 0, out[-3000:]
    assert _metrics(run) == expected


@pytest.mark.parametrize("step", [3, STEPS_PER_EPOCH, STEPS_PER_EPOCH + 4])
@pytest.mark.parametrize("kill", ["SIGKILL", "SIGTERM"])
def test_sigkill_then_rerun_is_not_refused(data, tmp_path, step, kill):
    """A trainer killed (SIGKILL) or stopped by a scheduler (SIGTERM) at
    several points: it ends at once, leaves no lock, and the rerun ends
    as an uninterrupted run."""
    flags, expected, _ = data
    run = tmp_path / "run"
    proc, _ = _held(flags, run, tmp_path, step)
    os.kill(proc.pid, getattr(signal, kill))
    code, _ = tiny.finish(proc, timeout=30)
    assert code == -getattr(signal, kill)
    code, out = tiny.run(_train(flags, run), tmp_path / "rerun.log")
    assert code == 0, out[-3000:]
    assert "is in use" not in out
    assert _metrics(run) == expected


@pytest.mark.parametrize("damage", ["random bytes", "empty"])
def test_a_damaged_saved_model_is_named(data, tmp_path, damage):
    flags, _, _ = data
    version = tmp_path / "serving model" / "1"
    version.mkdir(parents=True)
    pb = version / "saved_model.pb"
    pb.write_bytes(os.urandom(300) if damage == "random bytes" else b"")
    data_flags = [f for f in flags if f.startswith((
        "--dataset=", "--data_format=", "--label_dir=", "--feature_shape=",
        "--test_files="))]
    code, out = tiny.run(
        [PYTHON, str(ROOT / "eval.py"), f"--saved_model={version}",
         *data_flags],
        tmp_path / "eval.log",
    )
    line = _one_error_line(code, out)
    assert str(version) in line, line


def test_a_full_disk_at_the_world_cache_then_free_space_and_rerun(
    tmp_path
):
    """The built-in world written to a full `--cache_dir`: one line naming
    the cache, no half-written world left to be taken for a finished one,
    and once space is freed the same command trains as if nothing had
    happened."""
    command = [
        tiny.PYTHON, str(tiny.ROOT / "train.py"), *tiny.MODEL_FLAGS,
        "--dataset=synthetic", "--epochs=1", "--steps_per_epoch=3",
        "--batch_size=32", "--warmup_steps=2", "--nobaseline", "--noexport",
        "--verbose=0",
    ]
    clean = tmp_path / "clean"
    code, out = tiny.run(
        [*command, f"--cache_dir={tmp_path / 'cache'}",
         f"--model_dir={clean}"], tmp_path / "clean.log")
    assert code == 0, out[-3000:]
    with faults.small_tmpfs(tmp_path, "4M") as disk:
        run = tmp_path / "run"
        again = [*command, f"--cache_dir={disk}", f"--model_dir={run}"]
        code, out = tiny.run(again, tmp_path / "full.log")
        line = _one_error_line(code, out)
        assert "No space left on device" in line, line
        assert str(disk) in line, line
        assert not [p for p in disk.iterdir() if (p / "train.json").exists()]
        remount = subprocess.run(
            ["mount", "-o", "remount,size=256M", str(disk)],
            capture_output=True, text=True,
        )
        assert remount.returncode == 0, remount.stderr
        code, out = tiny.run(again, tmp_path / "rerun.log")
        assert code == 0, out[-3000:]
    first, second = tiny.metrics(clean), tiny.metrics(run)
    assert first["zsl"] == second["zsl"] and first["gzsl"] == second["gzsl"]


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_damaged_saved_model_variables_are_named(tmp_path, damage):
    """A SavedModel whose variables file is cut short or overwritten:
    `eval.py --saved_model` ends in one line naming the export."""
    import keras

    from epsilon_tf.export import export_saved_model
    from epsilon_tf.models import build_epsilon

    data = tiny.write_native(tmp_path / "data")
    space = tiny.native_source(data).label_space
    keras.utils.set_random_seed(0)
    model = build_epsilon(tiny.model_config(), space.subset("seen"))
    version = Path(export_saved_model(
        model, space, str(tmp_path / "serving model")))
    shards = sorted((version / "variables").glob("variables.data-*"))
    assert shards
    for shard in shards:
        size = shard.stat().st_size
        shard.write_bytes(b"" if damage == "truncated" else bytes(size))
    code, out = tiny.run(
        [PYTHON, str(ROOT / "eval.py"), f"--saved_model={version}",
         "--dataset=synthetic", "--data_format=native",
         f"--data_dir={data}"],
        tmp_path / "eval.log",
    )
    line = _one_error_line(code, out)
    assert str(version) in line, line
