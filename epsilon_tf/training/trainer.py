"""The training loop: distributed steps, selection, summaries.

The model, its inputs and the step functions are the `Task`'s
(`training/task.py`); the checkpoints are `TrainingCheckpoints`'
(`training/checkpointing.py`); the run directory's layout is `RunDir`'s
(`training/run_dir.py`).
"""

import json
import math
import os
import sys
import time

import keras
import tensorflow as tf

from epsilon_tf.config import (
    recorded_data_config,
    to_dict,
    trajectory_free_train_fields,
    write_json,
)
from epsilon_tf.data.pipeline import input_errors, make_dataset
from epsilon_tf.errors import InputDataError, TrainingDivergedError
from epsilon_tf.models import fusion_weight
from epsilon_tf.training import strategy as strategy_lib
from epsilon_tf.training import summaries
from epsilon_tf.training.checkpointing import Progress, TrainingCheckpoints
from epsilon_tf.training.evaluation import (
    evaluate_model,
    predict_split,
    seen_label_metrics,
)
from epsilon_tf.training.progress import ProgressLines
from epsilon_tf.training.run_dir import RunDir
from epsilon_tf.training.task import LOSS_TERMS, Task

# TrainConfig fields that may change between a run and its resumption:
# all but the trainer settings (runtime, export, summaries).
# DataConfig fields that may change: where the synthetic world is cached
# (it is regenerated identically) and whether corrupt records are skipped.
RESUMABLE_DATA_CHANGES = frozenset({"cache_dir", "skip_corrupt"})
RESUMABLE_CHANGES = trajectory_free_train_fields()
SUMMARY_EVERY_STEPS = 10


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
    """Trains Epsilon (or LESA, BiAM) on a `DatasetSource`, evaluates it.

    Everything lives in `train_config.model_dir`: `config.json`,
    `checkpoints/` (the last N, written atomically by
    `tf.train.CheckpointManager`), `best/` (a copy of the checkpoint of the
    best epoch by validation seen-label `select_metric`), summaries under
    `train/`, `validation/` and `test/`, `metrics.json`, `model.keras` and
    `export/<version>/`.

    Re-running with the same `model_dir` resumes from the last checkpoint:
    model, optimizer (slots and step), epoch, step within the epoch, best
    score and epoch, and the dropout RNG states are restored; the epoch's
    input order is recreated from its seed and fast-forwarded to the
    step (see docs/training.md for what is exact).

    Args:
        model_config: `ModelConfig`.
        loss_config: `LossConfig`.
        train_config: `TrainConfig`.
        source: `DatasetSource`.
        strategy: `tf.distribute.Strategy` or None (from the config).
        data_config: `DataConfig` or None. The data the run reads; stored
            in `config.json` (with absolute paths, so `eval.py
            --model_dir` finds the run's own data) and checked on resume.
    """

    def __init__(
        self, model_config, loss_config, train_config, source, strategy=None,
        data_config=None,
    ):
        self.train_config = train_config
        self.data_config = (
            None if data_config is None else recorded_data_config(data_config)
        )
        self._restored = None
        self._validation = None
        self.loss_config = loss_config
        self.source = source
        space = source.label_space
        self.task = Task(
            model_config, loss_config, train_config, space, source=source
        )
        self.model_config = self.task.model_config
        if train_config.deterministic:
            tf.config.experimental.enable_op_determinism()
        self.strategy = strategy or strategy_lib.make_strategy(
            train_config.strategy
        )
        self.is_chief = strategy_lib.is_chief(self.strategy)
        self.verbose = train_config.verbose if self.is_chief else 0
        replicas = self.strategy.num_replicas_in_sync
        if self.is_chief and train_config.strategy != "default":
            devices = getattr(self.strategy.extended, "worker_devices", ())
            print(
                f"strategy={train_config.strategy} "
                f"({type(self.strategy).__name__}): {replicas} replicas "
                f"({', '.join(devices)})",
                flush=True,
            )
        if train_config.batch_size % replicas:
            raise ValueError(
                f"`batch_size` ({train_config.batch_size}) must be divisible "
                f"by the number of replicas ({replicas})"
            )
        self.global_batch = train_config.batch_size
        self.model_dir = train_config.model_dir
        self.run_dir = RunDir(self.model_dir)
        os.makedirs(self.model_dir, exist_ok=True)
        keras.utils.set_random_seed(train_config.seed)
        # For accelerators: bfloat16 compute, float32 variables, loss and
        # scores (bfloat16 keeps float32's range, so no loss scaling).
        keras.mixed_precision.set_global_policy(
            "mixed_bfloat16" if train_config.mixed_precision else "float32"
        )
        self.steps_per_epoch = self._steps_per_epoch()
        with self.strategy.scope():
            self.model = self.task.build_model()
            self.schedule = self.task.learning_rate(self.steps_per_epoch)
            self.optimizer = self.task.create_optimizer(self.schedule)
            self.progress = Progress.create()
        self.loss_fn = self.task.loss_fn
        self.checkpoints = TrainingCheckpoints(
            self.run_dir, self.model, self.optimizer, self.progress,
            is_chief=self.is_chief,
            worker_id=strategy_lib.worker_id(self.strategy),
            keep=train_config.keep_checkpoints,
        )
        self.writers = None
        if self.is_chief:
            self.writers = {
                name: tf.summary.create_file_writer(
                    self.run_dir.summaries(name)
                )
                for name in ("train", "validation")
            }
        self.pr_curves = None

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

    # ------------------------------------------------------------------ setup
    def _steps_per_epoch(self):
        cfg = self.train_config
        if cfg.steps_per_epoch:
            return int(cfg.steps_per_epoch)
        n = self.source.split("train").example_count()
        if n is None:
            if cfg.strategy in ("multi_worker", "tpu"):
                raise ValueError(
                    f"strategy={cfg.strategy} needs --steps_per_epoch when "
                    "the number of training examples is unknown"
                )
            return None
        steps = int(n * (1 - cfg.validation_fraction)) // self.global_batch
        if steps < 1:
            raise ValueError(
                f"The training split has about {n} examples, fewer than one "
                f"batch of {self.global_batch}; lower --batch_size"
            )
        return steps

    def current_learning_rate(self):
        lr = self.optimizer.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)

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

    def _summary_examples(self):
        """The first few validation images (fixed), for the image summaries."""
        n = self.train_config.summary_images
        if not n or "assignments" not in self.model.output:
            return None
        with input_errors():
            for batch in self._validation_dataset(n).take(1):
                ids = [v.decode("utf-8", "replace")
                       for v in batch["image_id"].numpy()]
                return batch["features"].numpy(), ids
        return None

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

    def _write_scalars(self, writer, values, step):
        summaries.write_scalars(writer, values, step)

    def _flush(self):
        for writer in (self.writers or {}).values():
            writer.flush()

    def _check_finite(self, values, epoch, step):
        if all(math.isfinite(v) for v in values.values()):
            return
        global_step = int(self.optimizer.iterations.numpy())
        self._flush()
        shown = ", ".join(f"{k}={v:.6g}" for k, v in sorted(values.items()))
        raise TrainingDivergedError(
            f"The loss became non-finite at step {global_step} (epoch "
            f"{epoch + 1}, step {step + 1} of the epoch): {shown}. Training "
            "stopped; nothing was saved after that step. The last good "
            f"checkpoint is {self.checkpoints.latest_written() or 'none'}. "
            "Lower --learning_rate, check the input features, or keep "
            "--clip_norm on."
        )

    def _run_epoch(self, epoch, skip):
        cfg = self.train_config
        iterator = iter(self._train_dataset(epoch, skip))
        bar = lines = None
        if self.verbose and sys.stdout.isatty():
            bar = keras.utils.Progbar(
                self.steps_per_epoch,
                stateful_metrics=["loss", "lr"],
                interval=0.05,
            )
        elif self.verbose:
            # A log file, CI, a cluster job: plain periodic lines instead.
            lines = ProgressLines(
                self.steps_per_epoch, self.global_batch,
                every_seconds=cfg.progress_every_seconds, first_step=skip,
            )
        step = skip
        loss_sum = 0.0
        while self.steps_per_epoch is None or step < self.steps_per_epoch:
            try:
                with input_errors():
                    terms = self._distributed_step(iterator)
            except (StopIteration, tf.errors.OutOfRangeError):
                break
            values = {k: float(v.numpy()) for k, v in terms.items()}
            self._check_finite(values, epoch, step)
            global_step = int(self.optimizer.iterations.numpy())
            step += 1
            self.step_in_epoch.assign(step)
            if global_step % SUMMARY_EVERY_STEPS == 0 or step == 1:
                self._write_scalars(
                    self.writers and self.writers["train"],
                    {
                        "loss/total": values["total"],
                        "loss/ranking": values["ranking"],
                        "loss/diversity": values["diversity"],
                        "loss/attention": values["attention"],
                        "train/grad_norm": values["grad_norm"],
                        "train/learning_rate": self.current_learning_rate(),
                        "train/fusion_weight": fusion_weight(self.model),
                    },
                    global_step,
                )
            loss_sum += values["total"]
            if bar is not None:
                bar.update(
                    step,
                    [
                        ("loss", loss_sum / (step - skip)),
                        ("lr", self.current_learning_rate()),
                    ],
                )
            if lines is not None:
                lines.update(
                    step, loss_sum / (step - skip), self.current_learning_rate()
                )
            every = cfg.checkpoint_every_steps
            last = self.steps_per_epoch is not None and (
                step >= self.steps_per_epoch
            )
            # The epoch-end checkpoint follows the last step: no duplicate.
            if every and global_step % every == 0 and not last:
                self.save()
        if lines is not None and step > skip:
            lines.finish(loss_sum / (step - skip), self.current_learning_rate())

    def train(self):
        """Runs (or resumes) training. Returns the best validation metrics."""
        cfg = self.train_config
        self.restore()
        if self.is_chief:
            write_json(self.run_dir.config, to_dict(*self._configs()))
        if int(self.epoch.numpy()) < cfg.epochs:
            self.check_data()
        examples = self._summary_examples() if self.is_chief else None
        metric = cfg.select_metric
        while int(self.epoch.numpy()) < cfg.epochs:
            epoch = int(self.epoch.numpy())
            skip = int(self.step_in_epoch.numpy())
            _log(self.verbose, f"Epoch {epoch + 1}/{cfg.epochs}")
            start = time.time()
            self._run_epoch(epoch, skip)
            seconds = time.time() - start
            metrics = self.validate()
            if metric not in metrics:
                choices = sorted(k for k in metrics if k != "n_images")
                raise ValueError(
                    f"`select_metric` {metric!r} is not a validation "
                    f"metric; choose one of {choices}"
                )
            score = metrics[metric]
            global_step = int(self.optimizer.iterations.numpy())
            self._write_scalars(
                self.writers and self.writers["validation"],
                {f"validation/{k}": v for k, v in metrics.items()
                 if k != "n_images"},
                global_step,
            )
            improved = score > float(self.best_score.numpy())
            if improved:
                self.best_score.assign(score)
                self.best_epoch.assign(epoch)
            self.epoch.assign(epoch + 1)
            self.step_in_epoch.assign(0)
            path = self.save()
            if improved and self.is_chief:
                self.checkpoints.publish_best(path, epoch)
            if self.is_chief:
                summaries.write_weight_histograms(
                    self.writers["train"], self.model, global_step
                )
                if examples is not None:
                    summaries.write_assignment_images(
                        self.writers["validation"], self.model, *examples,
                        global_step,
                    )
                self._flush()
            _log(
                self.verbose,
                f"  validation (seen labels, {metrics['n_images']} images): "
                + ", ".join(
                    f"{k}={v:.4f}" for k, v in metrics.items()
                    if k != "n_images"
                )
                + f"  [{seconds:.1f}s]"
                + ("  * best" if improved else ""),
            )
        self._flush()
        self.checkpoints.remove_worker_tmp()
        return {
            "best_epoch": int(self.best_epoch.numpy()) + 1,
            "best_validation": float(self.best_score.numpy()),
            "select_metric": metric,
        }

    def restore_best(self):
        """Loads the best epoch's weights into the model."""
        return self.checkpoints.restore_best()

    def evaluate_test(self, variant="lesa", progress=None):
        """ZSL/GZSL metrics of the current weights on the test split.

        `evaluation.evaluate_model` over the whole label space; it also
        keeps the scores of a few unseen labels for the PR-curve summaries
        (`self.pr_curves`, written by `write_test_summaries`).
        """
        space = self.source.label_space

        def keep_pr_curves(scores, labels):
            columns = summaries.select_pr_labels(
                labels, space.unseen_mask, self.train_config.pr_curve_labels
            )
            self.pr_curves = (
                summaries.pr_curve_data(scores, labels, columns),
                [space.names[int(k)] for k in columns],
            )

        with input_errors():
            return evaluate_model(
                self.model,
                self.source.split("test"),
                space,
                ks=tuple(self.source.eval_ks),
                variant=variant,
                progress=self.verbose if progress is None else progress,
                on_scores=keep_pr_curves,
            )

    def write_test_summaries(self, result, table=None):
        """Final metrics, results table, PR curves and HParams.

        `test/` gets the test (and baseline) scalars, the markdown table
        `test/results` and the PR curves; `validation/` the best
        validation score; `model_dir` itself the HParams of the run (trial
        ID: the folder's name), with the test metrics as its first columns.

        Args:
            result: the metrics dict of `train_and_evaluate` (`zsl`,
                `gzsl`, optionally `training`, `baselines`, `chance`).
            table: str or None. The markdown results table.
        """
        if not self.is_chief:
            return
        step = int(self.optimizer.iterations.numpy())
        values = summaries.final_metric_scalars(
            result, self.train_config.select_metric
        )
        best = summaries.best_validation_scalar(
            result, self.train_config.select_metric
        )
        writer = tf.summary.create_file_writer(self.run_dir.summaries("test"))
        summaries.write_scalars(writer, values, step)
        if table:
            summaries.write_text(
                writer, summaries.TEXT_TABLE_TAG, table, step,
                description="Final test metrics (%) of the selected epoch, "
                "beside the baselines.",
            )
        if self.pr_curves is not None:
            summaries.write_pr_curves(writer, *self.pr_curves, step)
        writer.flush()
        writer.close()
        validation = (self.writers or {}).get("validation")
        if validation is not None and best:
            summaries.write_scalars(validation, best, step)
            validation.flush()
        root = tf.summary.create_file_writer(self.run_dir.summaries())
        hparams = summaries.flat_hparams(
            self.model_config, self.loss_config, self.train_config
        )
        summaries.write_hparams(
            root, hparams,
            summaries.hparams_metric_names(list(values) + list(best)),
            trial_id=self.run_dir.trial_id,
        )
        root.flush()
        root.close()
