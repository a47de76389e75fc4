"""train.py that freezes after a given optimizer step (for crash tests).

    python tests/helpers/pause_train.py --pause_after_step=18 \
        --pause_marker=/tmp/paused <train.py flags>

After step N has been computed (and before its bookkeeping or any
checkpoint of that step), it writes the marker file and sleeps; the test
then kills it with SIGKILL, like a machine that dies mid-epoch. Everything
else is train.py unchanged.
"""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _take(name):
    for i, arg in enumerate(sys.argv):
        if arg.startswith(f"--{name}="):
            del sys.argv[i]
            return arg.split("=", 1)[1]
    raise SystemExit(f"pause_train.py needs --{name}=")


def main():
    pause_after = int(_take("pause_after_step"))
    marker = _take("pause_marker")
    sys.argv[0] = str(ROOT / "train.py")
    import train
    from epsilon_tf.training.trainer import Trainer

    step = Trainer._distributed_step

    def paused_step(self, iterator):
        out = step.__get__(self, Trainer)(iterator)
        if int(self.optimizer.iterations.numpy()) >= pause_after:
            Path(marker).write_text(str(os.getpid()))
            time.sleep(3600)
        return out

    Trainer._distributed_step = paused_step
    train.run_main()


if __name__ == "__main__":
    main()
