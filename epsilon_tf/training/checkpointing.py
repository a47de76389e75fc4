"""Checkpoints of a run: the last N, the best epoch's, resume and reload.

`TrainingCheckpoints` owns the `tf.train.Checkpoint` of a training run
(model, optimizer, progress counters, dropout RNG states), its
`tf.train.CheckpointManager` over `checkpoints/` and the copy of the best
epoch's checkpoint in `best/`, written atomically. `load_training_dir`
reads a model back from a run directory (its `model.keras`, or a
checkpoint). `checkpoint_gaps` is the one check that `tf.train.Checkpoint`
reaches every variable of a model: Keras 3 sublayers held only in a
Python list are invisible to TensorFlow's object graph, so a checkpoint
would silently neither save nor restore them; the trainer and the
reloader refuse such a model instead.
"""

import dataclasses
import json
import os
import shutil
import sys

import keras
import tensorflow as tf

import epsilon_tf.layers  # noqa: F401  (registers the custom layers)
from epsilon_tf.config import ModelConfig
from epsilon_tf.labels import LabelSpace
from epsilon_tf.models import build_model
from epsilon_tf.training.run_dir import RunDir

# The checkpoint key of the completed-epochs counter.
_EPOCH_KEY = "epoch/.ATTRIBUTES/VARIABLE_VALUE"


def rng_variables(model):
    """The Keras `SeedGenerator` states of the model (dropout RNG)."""
    return {
        f"rng_{i}": v
        for i, v in enumerate(model.non_trainable_variables)
        if "seed_generator" in v.path
    }


def checkpoint_gaps(model):
    """Paths of the model variables `tf.train.Checkpoint` cannot reach.

    Keras 3 sublayers kept in a Python list are invisible to TF's object
    graph, so a `tf.train.Checkpoint(model=model)` silently neither saves
    nor restores them. Seed-generator states are ignored.
    """
    checkpoint = tf.train.Checkpoint(model=model)
    reachable = {
        id(obj) for obj in tf.train.TrackableView(checkpoint).descendants()
    }
    return [
        v.path
        for v in model.variables
        if id(v) not in reachable and "seed_generator" not in v.path
    ]


def _gaps_message(model, gaps):
    return (
        f"tf.train.Checkpoint does not track {len(gaps)} of the variables "
        f"of model {model.name!r} (e.g. {gaps[:3]}): a layer keeps "
        "sublayers only in a Python list; assign each sublayer to an "
        "attribute of its layer as well"
    )


@dataclasses.dataclass
class Progress:
    """The training counters saved with every checkpoint (tf.Variables).

    Create it inside the strategy's scope.
    """

    epoch: tf.Variable
    step_in_epoch: tf.Variable
    best_score: tf.Variable
    best_epoch: tf.Variable

    @classmethod
    def create(cls):
        return cls(
            epoch=tf.Variable(0, dtype=tf.int64, trainable=False),
            step_in_epoch=tf.Variable(0, dtype=tf.int64, trainable=False),
            best_score=tf.Variable(-1.0, dtype=tf.float64, trainable=False),
            best_epoch=tf.Variable(-1, dtype=tf.int64, trainable=False),
        )


class TrainingCheckpoints:
    """The checkpoints of one training run in its `RunDir`.

    Every worker restores from the chief's directories (which must be on
    storage all workers see); other workers write their (identical)
    copies to a scratch directory that is removed after each save.

    Args:
        run_dir: `RunDir`.
        model: the Keras model.
        optimizer: its optimizer (built).
        progress: `Progress`.
        is_chief: bool. This worker writes `checkpoints/` and `best/`.
        worker_id: int. This worker's index (names its scratch directory).
        keep: int. Checkpoints kept in `checkpoints/` (at least 1).

    Raises:
        ValueError: a variable of `model` is out of the checkpoint's reach
            (`checkpoint_gaps`).
    """

    def __init__(self, run_dir, model, optimizer, progress, is_chief=True,
                 worker_id=0, keep=1):
        gaps = checkpoint_gaps(model)
        if gaps:
            raise ValueError(
                f"Cannot checkpoint the run: {_gaps_message(model, gaps)}"
            )
        self.run_dir = run_dir
        self.progress = progress
        self.is_chief = is_chief
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=optimizer,
            epoch=progress.epoch,
            step_in_epoch=progress.step_in_epoch,
            best_score=progress.best_score,
            best_epoch=progress.best_epoch,
            rng=tf.train.Checkpoint(**rng_variables(model)),
        )
        self.optimizer = optimizer
        self.directory = run_dir.checkpoints
        self.best_dir = run_dir.best
        self.worker_tmp = None
        save_dir = self.directory
        if not is_chief:
            self.worker_tmp = run_dir.worker_tmp(worker_id)
            save_dir = run_dir.worker_checkpoints(worker_id)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, save_dir, max_to_keep=max(1, int(keep)),
        )
        self.best_checkpoint = tf.train.Checkpoint(model=model)

    # ------------------------------------------------------------ reading
    def latest(self):
        """The chief's latest checkpoint prefix, or None."""
        return tf.train.latest_checkpoint(self.directory)

    def latest_written(self):
        """This worker's last written checkpoint, or None."""
        return self.manager.latest_checkpoint

    def checkpointed_epochs(self):
        """Epochs completed by the last checkpoint (0 without one).

        Read from the checkpoint file, without restoring anything.
        """
        path = self.latest()
        if not path:
            return 0
        reader = tf.train.load_checkpoint(path)
        if _EPOCH_KEY not in reader.get_variable_to_shape_map():
            return 0
        return int(reader.get_tensor(_EPOCH_KEY))

    def restore(self, path):
        """Restores everything from `path`; every object must match."""
        self.checkpoint.restore(path).assert_existing_objects_matched()

    def restore_best(self):
        """Loads the best epoch's weights into the model. Returns its path."""
        path = tf.train.latest_checkpoint(self.best_dir)
        if path is None:
            raise FileNotFoundError(
                f"No best checkpoint under {self.best_dir}; train first"
            )
        self.best_checkpoint.restore(path).expect_partial()
        return path

    # ------------------------------------------------------------ writing
    def save(self):
        """Writes a checkpoint (every worker must call it). Returns its path.

        Numbered by the optimizer's step. Only the chief's checkpoint is
        kept; other workers' copies go to their scratch directory, removed
        right away (and then None is returned).
        """
        path = self.manager.save(checkpoint_number=self.optimizer.iterations)
        if not self.is_chief:
            shutil.rmtree(self.worker_tmp, ignore_errors=True)
            return None
        return path

    def remove_worker_tmp(self):
        if self.worker_tmp:
            shutil.rmtree(self.worker_tmp, ignore_errors=True)

    def best_prefix(self, epoch):
        return os.path.join(self.best_dir, f"ckpt-{epoch + 1}")

    def publish_best(self, source_prefix, epoch):
        """Copies a saved checkpoint into `best/`, atomically (chief only).

        The files are copied under temporary names and renamed, then the
        `best/checkpoint` state file is switched (atomically) to them, and
        only then is the previous best deleted: a crash at any point
        leaves a complete best checkpoint behind.
        """
        target = self.best_prefix(epoch)
        if tf.train.latest_checkpoint(self.best_dir) == target:
            return target
        tf.io.gfile.makedirs(self.best_dir)
        for src in tf.io.gfile.glob(source_prefix + ".*"):
            suffix = src[len(source_prefix):]
            tmp = target + suffix + ".tmp"
            tf.io.gfile.copy(src, tmp, overwrite=True)
            tf.io.gfile.rename(tmp, target + suffix, overwrite=True)
        old = tf.train.latest_checkpoint(self.best_dir)
        # The `checkpoint` state file, relative path (as CheckpointManager
        # writes it), replaced atomically.
        name = os.path.basename(target)
        state = os.path.join(self.best_dir, "checkpoint")
        with tf.io.gfile.GFile(state + ".tmp", "w") as f:
            f.write(
                f'model_checkpoint_path: "{name}"\n'
                f'all_model_checkpoint_paths: "{name}"\n'
            )
        tf.io.gfile.rename(state + ".tmp", state, overwrite=True)
        if old and old != target:
            for f in tf.io.gfile.glob(old + ".*"):
                tf.io.gfile.remove(f)
        return target

    def repair_best(self, restored_path):
        """After a crash between an epoch's save and its copy to `best/`."""
        if not self.is_chief:
            return
        progress = self.progress
        best = int(progress.best_epoch.numpy())
        if best < 0:
            return
        target = self.best_prefix(best)
        if tf.train.latest_checkpoint(self.best_dir) == target:
            return
        at_end_of_best = (
            int(progress.epoch.numpy()) == best + 1
            and int(progress.step_in_epoch.numpy()) == 0
        )
        if at_end_of_best:
            self.publish_best(restored_path, best)
        else:
            print(
                f"Warning: best/ does not hold epoch {best + 1}, the best "
                f"epoch recorded in {restored_path}",
                file=sys.stderr,
                flush=True,
            )


def load_training_dir(model_dir, verbose=False):
    """The trained model and full label space of a training directory.

    Reads `model_dir/model.keras` when present (written at the end of
    training). Otherwise (mid-training, say) rebuilds the model from
    `config.json` over the seen labels and restores the latest checkpoint of
    `best/` (or, lacking one, of `checkpoints/`).

    Args:
        model_dir: str. A training directory (`label_space/`, `config.json`
            and `model.keras` or `best/` / `checkpoints/`).
        verbose: bool. Print where the weights come from.

    Returns:
        A tuple `(model, label_space)`.
    """
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"Training directory not found: {model_dir}")
    run = RunDir(model_dir)
    space = LabelSpace.load(run.label_space)
    if os.path.exists(run.keras_model):
        if verbose:
            print(f"Loading {run.keras_model}", flush=True)
        return keras.saving.load_model(run.keras_model), space
    if not run.has_config():
        raise FileNotFoundError(
            f"{model_dir} has neither model.keras nor config.json; it is "
            "not a training directory"
        )
    with open(run.config, encoding="utf-8") as f:
        fields = json.load(f).get("ModelConfig")
    if fields is None:
        raise ValueError(f"{run.config} has no `ModelConfig` section")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    config = ModelConfig(**{k: v for k, v in fields.items() if k in known})
    model = build_model(config, space.subset("seen"))
    for directory in (run.best, run.checkpoints):
        path = tf.train.latest_checkpoint(directory)
        if path:
            gaps = checkpoint_gaps(model)
            if gaps:
                raise ValueError(
                    f"Cannot restore the model from {path}: "
                    f"tf.train.Checkpoint does not track {len(gaps)} of its "
                    f"variables (e.g. {gaps[:3]}), so the checkpoint lacks "
                    "them (a layer keeps sublayers in a Python list). "
                    "Export from model.keras instead"
                )
            if verbose:
                print(f"Restoring the model from checkpoint {path}", flush=True)
            tf.train.Checkpoint(model=model).restore(path).expect_partial()
            return model, space
    raise FileNotFoundError(
        f"{model_dir} has no model.keras and no checkpoint in best/ or "
        "checkpoints/"
    )
