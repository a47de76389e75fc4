"""The layout of a training directory (`--model_dir`), in one place.

A run writes everything under its `model_dir`:

- `config.json`: the run's settings (checked on resume; `eval.py
  --model_dir` reads the run's data settings from it);
- `checkpoints/`: the last N checkpoints (`tf.train.CheckpointManager`);
- `best/`: the checkpoint of the best epoch (by validation score);
- `train/`, `validation/`, `test/`: TensorBoard summaries (the HParams
  in `model_dir` itself);
- `label_space/` (written when training starts), `model.keras` (the best
  epoch, before the test evaluation), `metrics.json`: the finished run;
- `export/<version>/`: TF Serving versions (`export.versions`);
- `worker_tmp_<id>/`: a non-chief worker's scratch checkpoints;
- `.lock`: the lock a trainer or an export holds (`run_lock`).

Every module that reads or writes one of these goes through `RunDir`.
This module imports only the standard library (the command-line tools
use it before TensorFlow loads).
"""

import os

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
KERAS_FILE = "model.keras"
LABEL_SPACE_DIR = "label_space"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
EXPORT_DIR = "export"
EXAMPLES_DIR = "examples"
SUMMARY_DIRS = ("train", "validation", "test")
_WORKER_TMP = "worker_tmp_{}"


class RunDir:
    """The paths of one training directory.

    Args:
        path: str or path-like. The run's `model_dir`.

    Example:

    >>> run = RunDir("runs/x")
    >>> run.best
    'runs/x/best'
    >>> run.export
    'runs/x/export'
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"RunDir({self.path!r})"

    def _join(self, *parts):
        return os.path.join(self.path, *parts)

    @property
    def config(self):
        """`config.json`: the run's settings."""
        return self._join(CONFIG_FILE)

    @property
    def metrics(self):
        """`metrics.json`: the finished run's results."""
        return self._join(METRICS_FILE)

    @property
    def keras_model(self):
        """`model.keras`: the selected model, saved at the end."""
        return self._join(KERAS_FILE)

    @property
    def label_space(self):
        """`label_space/`: the full label space (`LabelSpace.save`)."""
        return self._join(LABEL_SPACE_DIR)

    @property
    def checkpoints(self):
        """`checkpoints/`: the last N training checkpoints."""
        return self._join(CHECKPOINTS_DIR)

    @property
    def best(self):
        """`best/`: the checkpoint of the best epoch."""
        return self._join(BEST_DIR)

    @property
    def export(self):
        """`export/`: the TF Serving base (numbered versions)."""
        return self._join(EXPORT_DIR)

    @property
    def examples(self):
        """`examples/`: the example pictures of `eval.py --examples`."""
        return self._join(EXAMPLES_DIR)

    def summaries(self, name=None):
        """The summary directory `name` (`train`, `validation`, `test`),
        or the run directory itself (HParams) for None."""
        if name is None:
            return self.path
        if name not in SUMMARY_DIRS:
            raise ValueError(
                f"Summary directory must be one of {SUMMARY_DIRS}. "
                f"Received: {name!r}"
            )
        return self._join(name)

    def worker_tmp(self, worker_id):
        """A non-chief worker's scratch directory (removed after saves)."""
        return self._join(_WORKER_TMP.format(int(worker_id)))

    def worker_checkpoints(self, worker_id):
        """Where a non-chief worker writes its (discarded) checkpoints."""
        return os.path.join(self.worker_tmp(worker_id), CHECKPOINTS_DIR)

    def has_config(self):
        return os.path.exists(self.config)

    @property
    def trial_id(self):
        """The run's name (its folder's), the HParams trial ID."""
        return os.path.basename(os.path.normpath(os.path.abspath(self.path)))


def of_export_version(version_dir):
    """The `RunDir` holding the export version `version_dir`, or None.

    A version lies in `RUN/export/<version>`; it belongs to a run when
    `RUN/config.json` exists.
    """
    run = RunDir(os.path.dirname(os.path.dirname(os.path.abspath(
        os.fspath(version_dir)
    ))))
    return run if run.has_config() else None
