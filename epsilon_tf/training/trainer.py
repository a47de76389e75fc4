"""The training loop: distributed steps, selection, checkpoints.

The Trainer only loops. It receives a built `Task` (model, loss, inputs
and step functions: `training/task.py`), its model and optimizer (built
by `training/run.py: build_trainer`, which also sets the process-wide
settings) and hooks that report (the console and TensorBoard:
`training/hooks.py`); the checkpoints are `TrainingCheckpoints'`
(`training/checkpointing.py`), the run directory's layout is `RunDir`'s
(`training/run_dir.py`).
"""

import json
import math
import os
import time

import tensorflow as tf

from epsilon_tf.config import (
    recorded_data_config,
    to_dict,
    trajectory_free_train_fields,
    write_json,
)
from epsilon_tf.data.pipeline import input_errors, make_dataset
from epsilon_tf.errors import InputDataError, TrainingDivergedError
from epsilon_tf.training import strategy as strategy_lib
from epsilon_tf.training.checkpointing import Progress, TrainingCheckpoints
from epsilon_tf.training.evaluation import (
    evaluate_model,
    predict_split,
    seen_label_metrics,
)
from epsilon_tf.training.interrupt import deferred_interrupt
from epsilon_tf.training.run_dir import RunDir
from epsilon_tf.training.task import LOSS_TERMS

# TrainConfig fields that may change between a run and its resumption:
# all but the trainer settings (runtime, export, summaries).
# DataConfig fields that may change: where the synthetic world is cached
# (it is regenerated identically) and whether corrupt records are skipped.
RESUMABLE_DATA_CHANGES = frozenset({"cache_dir", "skip_corrupt"})
RESUMABLE_CHANGES = trajectory_free_train_fields()


def _log(verbose, *args):
    if verbose:
        print(*args, flush=True)


def _files_text(split, limit=3):
    files = list(getattr(split, "files", ()) or ())
    if not files:
        return f"split {split.name!r}"
    shown = ", ".join(files[:limit])
    more = f" and {len(files) - limit} more" if len(files) > limit else ""
    return shown + more


class Trainer:
    """Trains a built model of a `Task` on its `DatasetSource`.

    Everything lives in `train_config.model_dir`: `config.json`,
    `checkpoints/` (the last N, written atomically by
    `tf.train.CheckpointManager`) and `best/` (a copy of the checkpoint of
    the best epoch by validation seen-label `select_metric`); the hooks
    add their own output (TensorBoard's `train/`, `validation/`).

    Re-running with the same `model_dir` resumes from the last checkpoint:
    model, optimizer (slots and step), epoch, step within the epoch, best
    score and epoch, and the dropout RNG states are restored; the epoch's
    input order is recreated from its seed and fast-forwarded to the
    step (see docs/training.md for what is exact).

    Use `training.run.build_trainer` to make one from the configs (it
    builds the task, model and optimizer in the order that keeps runs
    reproducible).

    Args:
        task: `Task` with a `source`; `task.model` and `task.optimizer`
            are the `model` and `optimizer` given.
        model: the task's built Keras model.
        optimizer: the task's optimizer, built for the model.
        strategy: `tf.distribute.Strategy` the model was built under.
        steps_per_epoch: int or None (unknown: each epoch reads the
            training subset once).
        data_config: `DataConfig` or None. The data the run reads; stored
            in `config.json` (with absolute paths, so `eval.py
            --model_dir` finds the run's own data) and checked on resume.
        hooks: sequence of `TrainingHook` (console progress, TensorBoard).
    """

    def __init__(self, task, model, optimizer, strategy, steps_per_epoch,
                 data_config=None, hooks=()):
        if task.model is not model or task.optimizer is not optimizer:
            raise ValueError(
                "The Trainer steps `task.train_step`: give it the task's own "
                "model and optimizer (`task.build_model()`, "
                "`task.create_optimizer(...)`)"
            )
        self.task = task
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.steps_per_epoch = steps_per_epoch
        self.hooks = list(hooks)
        self.train_config = task.train_config
        self.model_config = task.model_config
        self.loss_config = task.loss_config
        self.loss_fn = task.loss_fn
        self.source = task.source
        self.data_config = (
            None if data_config is None else recorded_data_config(data_config)
        )
        self._restored = None
        self._data_checked = False  # `check_data` ran (fresh start)
        self._validation = None
        self.is_chief = strategy_lib.is_chief(strategy)
        self.verbose = self.train_config.verbose if self.is_chief else 0
        self.global_batch = self.train_config.batch_size
        self.model_dir = self.train_config.model_dir
        self.run_dir = RunDir(self.model_dir)
        os.makedirs(self.model_dir, exist_ok=True)
        with strategy.scope():
            self.progress = Progress.create()
        self.checkpoints = TrainingCheckpoints(
            self.run_dir, model, optimizer, self.progress,
            is_chief=self.is_chief,
            worker_id=strategy_lib.worker_id(strategy),
            keep=self.train_config.keep_checkpoints,
        )

    # The training counters (tf.Variables, checkpointed).
    @property
    def epoch(self):
        return self.progress.epoch

    @property
    def step_in_epoch(self):
        return self.progress.step_in_epoch

    @property
    def best_score(self):
        return self.progress.best_score

    @property
    def best_epoch(self):
        return self.progress.best_epoch

    def current_learning_rate(self):
        lr = self.optimizer.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)

    def global_step(self):
        """The optimizer's step (steps done over the whole run)."""
        return int(self.optimizer.iterations.numpy())

    # ------------------------------------------------------------------- data
    def _train_dataset(self, epoch, skip):
        cfg = self.train_config
        per_replica = self.global_batch // self.strategy.num_replicas_in_sync
        seed = cfg.seed * 1_000_003 + epoch
        steps = self.steps_per_epoch

        def dataset_fn(input_context):
            ds = self.task.build_train_inputs(
                per_replica, seed, input_context=input_context
            )
            if steps is not None:
                # Every replica-batch of a step: a fixed number per epoch,
                # the same on every worker (a multi-worker requirement).
                per_step = (
                    self.strategy.num_replicas_in_sync
                    // input_context.num_input_pipelines
                )
                ds = ds.repeat().take(steps * per_step)
                return ds.skip(skip * per_step)
            return ds.skip(skip)

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def _validation_dataset(self, batch_size=256):
        return self.task.build_validation_inputs(batch_size)

    def _scored_validation(self):
        """The validation batches of `validate`: one dataset for the whole
        run, kept in memory after its first pass when it fits
        (`Task.build_validation_inputs`)."""
        if self._validation is None:
            self._validation = self.task.build_validation_inputs(cache=True)
        return self._validation

    def check_data(self):
        """Fails before the first step on data that cannot train or select.

        Reads a few records: the training split must fill one batch after
        the validation carve, the carve must hold at least one image (it is
        chosen by a hash of the image id, so a split whose ids are all
        equal or empty lands on one side) and the test split must hold an
        image. Raises `InputDataError` naming the files.
        """
        cfg = self.train_config
        train = self.source.split("train")
        where = _files_text(train)
        fraction = cfg.validation_fraction
        need = self.global_batch

        def count(dataset, limit):
            n = 0
            with input_errors():
                for _ in dataset.take(limit):
                    n += 1
            return n

        kept = count(
            make_dataset(train, 1, subset="train",
                         validation_fraction=fraction).unbatch(),
            need,
        )
        if kept == 0:
            raise InputDataError(
                f"The training split ({where}) has no images left for "
                f"training after holding out the validation images: the "
                "files hold no records, or every image id hashes into the "
                "held-out part (are the image ids empty or all equal?)"
            )
        if kept < need and self.steps_per_epoch is None:
            raise InputDataError(
                f"The training split ({where}) has only {kept} images for "
                f"training after the validation carve, fewer than one batch "
                f"of --batch_size={need}; lower --batch_size"
            )
        if count(self._validation_dataset(1), 1) == 0:
            raise InputDataError(
                f"No validation images: none of the image ids of the "
                f"training split ({where}) falls in the held-out "
                f"{fraction:.0%} (--validation_fraction), so no epoch can be "
                "selected. Every image needs its own non-empty image id; "
                "with very few images raise --validation_fraction"
            )
        if "test" in self.source.splits:
            test = self.source.split("test")
            if count(test.dataset(), 1) == 0:
                raise InputDataError(
                    f"The test split ({_files_text(test)}) has no images"
                )

    # ------------------------------------------------------------------- step
    @tf.function
    def _distributed_step(self, iterator):
        per_replica = self.global_batch // self.strategy.num_replicas_in_sync
        feature_shape = (per_replica, *self.model_config.feature_shape)
        label_shape = (per_replica, self.model.output["scores"].shape[-1])

        def step_fn(features, labels):
            # Multi-worker input relaxes static shapes; the batch is fixed
            # (drop_remainder), so restore them (some gradients need them).
            features = tf.ensure_shape(features, feature_shape)
            labels = tf.ensure_shape(labels, label_shape)
            return self.task.train_step(features, labels)

        features, labels = next(iterator)
        terms, norm = self.strategy.run(step_fn, args=(features, labels))
        # One reduction for all the loss terms (a collective per step on
        # multi-worker); the gradient norm is the same on every replica.
        summed = self.strategy.reduce(
            tf.distribute.ReduceOp.SUM, terms, axis=None
        )
        out = {k: summed[i] for i, k in enumerate(LOSS_TERMS)}
        out["grad_norm"] = self.strategy.experimental_local_results(norm)[0]
        return out

    # ------------------------------------------------------------ checkpoints
    def _configs(self):
        configs = [self.model_config, self.loss_config, self.train_config]
        if self.data_config is not None:
            configs.append(self.data_config)
        return configs

    def checkpointed_epochs(self):
        """Epochs completed by the last checkpoint (0 without one).

        Read from the checkpoint file, without restoring anything.
        """
        return self.checkpoints.checkpointed_epochs()

    def is_finished(self):
        """True when the run's settings match and every epoch is done.

        Raises the changed-settings error of `restore` when they differ.
        """
        if not self.checkpoints.latest():
            return False
        self._check_same_run()
        return self.checkpointed_epochs() >= self.train_config.epochs

    def restore(self):
        """Restores the last checkpoint, if any. Returns its path or None.

        Every worker reads the chief's `checkpoints/` directory. A second
        call returns the first one's path without restoring again.
        """
        if self._restored is not None:
            return self._restored
        path = self.checkpoints.latest()
        self._restored = path
        if path:
            self._check_same_run()
            self.checkpoints.restore(path)
            _log(
                self.verbose,
                f"Resuming from {path}: epoch {int(self.epoch.numpy()) + 1}, "
                f"step {int(self.step_in_epoch.numpy())} of that epoch",
            )
            self.checkpoints.repair_best(path)
        else:
            # Before the feature statistics and the ESZSL warm start read
            # the data: a split that cannot train fails in one line first.
            self.check_data()
            self._data_checked = True
            self._fit_standardization()
        return path

    def _fit_standardization(self):
        """Fixed feature statistics of a fresh model (checkpointed after)."""
        used = self.task.initialize()
        if used is not None:
            _log(self.verbose,
                 f"Feature statistics from {used} training images")

    def _check_same_run(self):
        """Refuses to resume a run whose settings differ from this one's.

        Resuming is exact only with the settings the checkpoint was made
        with; a different model, loss or training trajectory in the same
        `model_dir` is an error naming the differences. Settings that do
        not change the trajectory (output, logging, export, checkpoint
        cadence) may change.
        """
        path = self.run_dir.config
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        current = json.loads(json.dumps(
            to_dict(*self._configs()), default=str,
        ))
        differences = []
        for section, fields in current.items():
            for name, value in fields.items():
                if section == "TrainConfig" and name in RESUMABLE_CHANGES:
                    continue
                if section == "DataConfig" and name in RESUMABLE_DATA_CHANGES:
                    continue
                old = saved.get(section, {}).get(name, value)
                if old != value:
                    differences.append(f"{name}: {old!r} -> {value!r}")
        if differences:
            raise ValueError(
                f"{self.model_dir} holds a run with other settings "
                f"({'; '.join(differences)}). Re-run with the same flags to "
                "resume it, or use a new --model_dir"
            )

    def save(self):
        """Writes a checkpoint (every worker must call it). Returns its path.

        Only the chief's checkpoint is kept; other workers' copies go to
        their scratch directory, removed right away.
        """
        return self.checkpoints.save()

    # ----------------------------------------------------------------- public
    def validate(self):
        """Seen-label metrics on the validation images."""
        with input_errors():
            buffer = predict_split(
                self.task.validation_step, self._scored_validation(),
                progress=False,
            )
        with buffer:
            scores, labels = buffer.finalize()
            metrics = seen_label_metrics(scores, labels, self.source.eval_ks)
        metrics["n_images"] = int(scores.shape[0])
        return metrics

    def _call_hooks(self, point, *args):
        for hook in self.hooks:
            getattr(hook, point)(self, *args)

    def _check_finite(self, values, epoch, step):
        if all(math.isfinite(v) for v in values.values()):
            return
        shown = ", ".join(f"{k}={v:.6g}" for k, v in sorted(values.items()))
        raise TrainingDivergedError(
            f"The loss became non-finite at step {self.global_step()} (epoch "
            f"{epoch + 1}, step {step + 1} of the epoch): {shown}. Training "
            "stopped; nothing was saved after that step. The last good "
            f"checkpoint is {self.checkpoints.latest_written() or 'none'}. "
            "Lower --learning_rate, check the input features, or keep "
            "--clip_norm on."
        )

    def _run_epoch(self, epoch, skip):
        every = self.train_config.checkpoint_every_steps
        iterator = iter(self._train_dataset(epoch, skip))
        step = skip
        while self.steps_per_epoch is None or step < self.steps_per_epoch:
            try:
                with input_errors():
                    terms = self._distributed_step(iterator)
            except (StopIteration, tf.errors.OutOfRangeError):
                break
            values = {k: float(v.numpy()) for k, v in terms.items()}
            self._check_finite(values, epoch, step)
            step += 1
            self.step_in_epoch.assign(step)
            self._call_hooks("on_step", epoch, step, values)
            last = self.steps_per_epoch is not None and (
                step >= self.steps_per_epoch
            )
            # The epoch-end checkpoint follows the last step: no duplicate.
            if every and self.global_step() % every == 0 and not last:
                self.save()
            self._stop_if_interrupted(saved=False)
        self._call_hooks("on_epoch_trained", epoch)

    def _stop_if_interrupted(self, saved):
        """After Ctrl-C (`training/interrupt.py`): checkpoints the step just
        done (unless `saved`) and raises `KeyboardInterrupt`."""
        request = getattr(self, "_interrupt", None)
        if request is None or not request.requested:
            return
        path = self.checkpoints.latest_written() if saved else self.save()
        _log(
            self.is_chief,
            f"Interrupted: checkpoint of epoch {int(self.epoch.numpy()) + 1}"
            f", step {int(self.step_in_epoch.numpy())} written ({path}); "
            "rerun the same command to resume.",
        )
        raise KeyboardInterrupt

    def _validate_epoch(self, epoch):
        """Validates the epoch just trained, keeps it when it is the best
        and checkpoints. Returns `(metrics, improved)`."""
        metric = self.train_config.select_metric
        metrics = self.validate()
        if metric not in metrics:
            choices = sorted(k for k in metrics if k != "n_images")
            raise ValueError(
                f"`select_metric` {metric!r} is not a validation "
                f"metric; choose one of {choices}"
            )
        score = metrics[metric]
        improved = score > float(self.best_score.numpy())
        if improved:
            self.best_score.assign(score)
            self.best_epoch.assign(epoch)
        self.epoch.assign(epoch + 1)
        self.step_in_epoch.assign(0)
        path = self.save()
        if improved and self.is_chief:
            self.checkpoints.publish_best(path, epoch)
        return metrics, improved

    def train(self):
        """Runs (or resumes) training. Returns the best validation metrics.

        The hooks see every point of the loop (`training/hooks.py`);
        `on_train_end` also when training stops on an error.
        """
        cfg = self.train_config
        self.restore()
        if self.is_chief:
            write_json(self.run_dir.config, to_dict(*self._configs()))
        if int(self.epoch.numpy()) < cfg.epochs and not self._data_checked:
            self.check_data()
        single = strategy_lib.worker_count(self.strategy) == 1
        try:
            self._call_hooks("on_train_begin")
            with deferred_interrupt(enabled=single) as self._interrupt:
                while int(self.epoch.numpy()) < cfg.epochs:
                    epoch = int(self.epoch.numpy())
                    skip = int(self.step_in_epoch.numpy())
                    self._call_hooks("on_epoch_begin", epoch, skip)
                    start = time.time()
                    self._run_epoch(epoch, skip)
                    seconds = time.time() - start
                    metrics, improved = self._validate_epoch(epoch)
                    self._call_hooks(
                        "on_epoch_end", epoch, metrics, improved, seconds
                    )
                    # The epoch's checkpoint is written: stop here.
                    self._stop_if_interrupted(saved=True)
        finally:
            self._interrupt = None
            self._call_hooks("on_train_end")
        self.checkpoints.remove_worker_tmp()
        return {
            "best_epoch": int(self.best_epoch.numpy()) + 1,
            "best_validation": float(self.best_score.numpy()),
            "select_metric": cfg.select_metric,
        }

    def restore_best(self):
        """Loads the best epoch's weights into the model."""
        return self.checkpoints.restore_best()

    def evaluate_test(self, variant="lesa", progress=None, on_scores=None):
        """ZSL/GZSL metrics of the current weights on the test split.

        `evaluation.evaluate_model` over the whole label space.

        Args:
            variant: the AP protocol ("lesa" or "biam_openimages").
            progress: bool or None (None: the trainer's `verbose`).
            on_scores: callable or None, given the full score and label
                matrices (e.g. `TensorBoardSummaries.pr_curve_hook`).
        """
        with input_errors():
            return evaluate_model(
                self.model,
                self.source.split("test"),
                self.source.label_space,
                ks=tuple(self.source.eval_ks),
                variant=variant,
                progress=self.verbose if progress is None else progress,
                on_scores=on_scores,
            )
