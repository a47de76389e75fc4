"""The training loop: distributed steps, checkpoints, selection, summaries."""

import dataclasses
import math
import os
import sys
import time

import keras
import tensorflow as tf

from epsilon_tf.config import to_dict, write_json
from epsilon_tf.data.pipeline import make_dataset
from epsilon_tf.losses import RankingLoss
from epsilon_tf.models import build_epsilon, fusion_weight
from epsilon_tf.training import strategy as strategy_lib
from epsilon_tf.training.evaluation import (
    evaluate_model,
    forward_scores,
    predict_split,
    seen_label_metrics,
)

NO_DECAY = ["bias", "gamma", "beta", "prompt_tokens", "theta",
            "log_temperature"]


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def _log(verbose, *args):
    if verbose:
        print(*args, flush=True)


class Trainer:
    """Trains Epsilon on a `DatasetSource` and evaluates it.

    Everything lives in `train_config.model_dir`: `config.json`,
    `checkpoints/` (the last N, written atomically by
    `tf.train.CheckpointManager`), `best/` (the best epoch by validation
    seen-label `select_metric`), summaries under `train/` and
    `validation/`, `metrics.json`, `model.keras` and `export/<version>/`.
    Re-running with the same `model_dir` resumes from the last checkpoint:
    model, optimizer, epoch, step within the epoch, best score and the
    dropout RNG state are restored, and the epoch's input order is
    recreated from its seed and fast-forwarded.

    Args:
        model_config: `ModelConfig`.
        loss_config: `LossConfig`.
        train_config: `TrainConfig`.
        source: `DatasetSource`.
        strategy: `tf.distribute.Strategy` or None (from the config).
    """

    def __init__(
        self, model_config, loss_config, train_config, source, strategy=None
    ):
        self.train_config = train_config
        self.loss_config = loss_config
        self.source = source
        space = source.label_space
        self.model_config = dataclasses.replace(
            model_config,
            feature_shape=tuple(source.feature_shape),
            embedding_dim=space.embedding_dim,
        )
        self.strategy = strategy or strategy_lib.make_strategy(
            train_config.strategy
        )
        self.is_chief = strategy_lib.is_chief(self.strategy)
        self.verbose = train_config.verbose if self.is_chief else 0
        replicas = self.strategy.num_replicas_in_sync
        if train_config.batch_size % replicas:
            raise ValueError(
                f"`batch_size` ({train_config.batch_size}) must be divisible "
                f"by the number of replicas ({replicas})"
            )
        self.global_batch = train_config.batch_size
        self.model_dir = train_config.model_dir
        os.makedirs(self.model_dir, exist_ok=True)
        keras.utils.set_random_seed(train_config.seed)
        self.steps_per_epoch = self._steps_per_epoch()
        with self.strategy.scope():
            self.model = build_epsilon(self.model_config, space.subset("seen"))
            self.schedule = self._schedule()
            self.optimizer = keras.optimizers.AdamW(
                learning_rate=self.schedule,
                weight_decay=train_config.weight_decay,
                global_clipnorm=train_config.clip_norm or None,
            )
            self.optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.step_in_epoch = tf.Variable(0, dtype=tf.int64,
                                             trainable=False)
            self.best_score = tf.Variable(-1.0, dtype=tf.float64,
                                          trainable=False)
            self.best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.loss_fn = RankingLoss(
            form=loss_config.form,
            margin=loss_config.margin,
            diversity_weight=loss_config.diversity_weight,
        )
        rng_states = {
            f"rng_{i}": v
            for i, v in enumerate(self.model.non_trainable_variables)
            if "seed_generator" in v.path
        }
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            epoch=self.epoch,
            step_in_epoch=self.step_in_epoch,
            best_score=self.best_score,
            best_epoch=self.best_epoch,
            rng=tf.train.Checkpoint(**rng_states),
        )
        ckpt_dir = os.path.join(self.model_dir, "checkpoints")
        best_dir = os.path.join(self.model_dir, "best")
        if not self.is_chief:  # collective saves; only the chief's are kept
            tmp = os.path.join(
                self.model_dir, f"worker_tmp_{strategy_lib.worker_id(self.strategy)}"
            )
            ckpt_dir = os.path.join(tmp, "checkpoints")
            best_dir = os.path.join(tmp, "best")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, ckpt_dir,
            max_to_keep=max(1, train_config.keep_checkpoints),
        )
        self.best_checkpoint = tf.train.Checkpoint(model=self.model)
        self.best_manager = tf.train.CheckpointManager(
            self.best_checkpoint, best_dir, max_to_keep=1
        )
        self.writers = None
        if self.is_chief:
            self.writers = {
                name: tf.summary.create_file_writer(
                    os.path.join(self.model_dir, name)
                )
                for name in ("train", "validation")
            }
        self._scores_fn = forward_scores(self.model)
        self._grad_fn = tf.function(
            self._gradients, jit_compile=train_config.jit_compile
        )

    # ------------------------------------------------------------------ setup
    def _steps_per_epoch(self):
        cfg = self.train_config
        if cfg.steps_per_epoch:
            return int(cfg.steps_per_epoch)
        n = self.source.split("train").num_examples
        if n is None:
            if cfg.strategy == "multi_worker":
                raise ValueError(
                    "strategy=multi_worker needs --steps_per_epoch when the "
                    "number of training examples is unknown"
                )
            return None
        steps = int(n * (1 - cfg.validation_fraction)) // self.global_batch
        if steps < 1:
            raise ValueError(
                f"The training split has about {n} examples, fewer than one "
                f"batch of {self.global_batch}; lower --batch_size"
            )
        return steps

    def _schedule(self):
        cfg = self.train_config
        if self.steps_per_epoch is None:
            return cfg.learning_rate
        total = self.steps_per_epoch * cfg.epochs
        warmup = min(cfg.warmup_steps, max(total - 1, 0))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else cfg.learning_rate,
            decay_steps=max(total - warmup, 1),
            alpha=0.01,
            warmup_target=cfg.learning_rate if warmup else None,
            warmup_steps=warmup,
        )

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
            ds = make_dataset(
                self.source.split("train"),
                per_replica,
                subset="train",
                validation_fraction=cfg.validation_fraction,
                shuffle_seed=seed,
                shuffle_buffer=cfg.shuffle_buffer,
                input_context=input_context,
                drop_remainder=True,
            )
            ds = ds.map(lambda b: (b["features"], b["labels"]))
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

    def _validation_dataset(self):
        return make_dataset(
            self.source.split("train"),
            256,
            subset="validation",
            validation_fraction=self.train_config.validation_fraction,
        )

    # ------------------------------------------------------------------- step
    def _gradients(self, features, labels):
        with tf.GradientTape() as tape:
            outputs = self.model(features, training=True)
            terms = self.loss_fn.per_example_terms(labels, outputs)
            per_example = terms["ranking"] + terms["diversity"]
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=self.global_batch
            )
        variables = self.model.trainable_variables
        grads = tape.gradient(loss, variables)
        sums = {
            k: tf.nn.compute_average_loss(
                v, global_batch_size=self.global_batch
            )
            for k, v in terms.items()
        }
        sums["total"] = loss
        return grads, sums

    @tf.function
    def _distributed_step(self, iterator):
        def step_fn(features, labels):
            grads, terms = self._grad_fn(features, labels)
            self.optimizer.apply_gradients(
                zip(grads, self.model.trainable_variables)
            )
            return terms

        features, labels = next(iterator)
        per_replica = self.strategy.run(step_fn, args=(features, labels))
        return {
            k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()
        }

    # ----------------------------------------------------------------- public
    def restore(self):
        """Restores the last checkpoint, if any. Returns its path or None."""
        path = self.manager.latest_checkpoint
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
            _log(
                self.verbose,
                f"Resuming from {path}: epoch {int(self.epoch.numpy()) + 1}, "
                f"step {int(self.step_in_epoch.numpy())} of that epoch",
            )
        return path

    def save(self):
        return self.manager.save(checkpoint_number=self.optimizer.iterations)

    def validate(self):
        """Seen-label metrics on the validation images."""
        buffer = predict_split(
            self._scores_fn, self._validation_dataset(),
            progress=False,
        )
        with buffer:
            scores, labels = buffer.finalize()
            metrics = seen_label_metrics(scores, labels, self.source.eval_ks)
        metrics["n_images"] = int(scores.shape[0])
        return metrics

    def _write_scalars(self, writer, values, step):
        if writer is None:
            return
        with writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def train(self):
        """Runs (or resumes) training. Returns the best validation metrics."""
        cfg = self.train_config
        self.restore()
        if self.is_chief:
            write_json(
                os.path.join(self.model_dir, "config.json"),
                to_dict(self.model_config, self.loss_config, cfg),
            )
        metric = cfg.select_metric
        best = None
        while int(self.epoch.numpy()) < cfg.epochs:
            epoch = int(self.epoch.numpy())
            skip = int(self.step_in_epoch.numpy())
            iterator = iter(self._train_dataset(epoch, skip))
            _log(self.verbose, f"Epoch {epoch + 1}/{cfg.epochs}")
            bar = (
                keras.utils.Progbar(
                    self.steps_per_epoch,
                    stateful_metrics=["loss", "lr"],
                    interval=0.05 if sys.stdout.isatty() else 10.0,
                )
                if self.verbose
                else None
            )
            step = skip
            loss_sum = 0.0
            start = time.time()
            while self.steps_per_epoch is None or step < self.steps_per_epoch:
                try:
                    terms = self._distributed_step(iterator)
                except (StopIteration, tf.errors.OutOfRangeError):
                    break
                values = {k: float(v.numpy()) for k, v in terms.items()}
                global_step = int(self.optimizer.iterations.numpy())
                if not all(math.isfinite(v) for v in values.values()):
                    raise TrainingDivergedError(
                        f"The loss became non-finite at step {global_step} "
                        f"(epoch {epoch + 1}, step {step + 1} of the epoch): "
                        f"{values}. Training stopped; the last good "
                        f"checkpoint is {self.manager.latest_checkpoint}"
                    )
                step += 1
                self.step_in_epoch.assign(step)
                if global_step % 10 == 0 or step == 1:
                    self._write_scalars(
                        self.writers and self.writers["train"],
                        {
                            "loss/total": values["total"],
                            "loss/ranking": values["ranking"],
                            "loss/diversity": values["diversity"],
                            "learning_rate": self.current_learning_rate(),
                            "fusion_weight": fusion_weight(self.model),
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
                every = cfg.checkpoint_every_steps
                if every and global_step % every == 0:
                    self.save()
            seconds = time.time() - start
            metrics = self.validate()
            score = metrics[metric]
            global_step = int(self.optimizer.iterations.numpy())
            self._write_scalars(
                self.writers and self.writers["validation"],
                {f"seen/{k}": v for k, v in metrics.items()
                 if k != "n_images"},
                global_step,
            )
            improved = score > float(self.best_score.numpy())
            if improved:
                self.best_score.assign(score)
                self.best_epoch.assign(epoch)
                self.best_manager.save(checkpoint_number=epoch + 1)
            self.epoch.assign(epoch + 1)
            self.step_in_epoch.assign(0)
            self.save()
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
            best = metrics if improved else best
        for writer in (self.writers or {}).values():
            writer.flush()
        return {
            "best_epoch": int(self.best_epoch.numpy()) + 1,
            "best_validation": float(self.best_score.numpy()),
            "select_metric": metric,
        }

    def restore_best(self):
        """Loads the best epoch's weights into the model."""
        path = self.best_manager.latest_checkpoint
        if path is None:
            raise FileNotFoundError(
                f"No best checkpoint under {self.best_manager.directory}; "
                "train first"
            )
        self.best_checkpoint.restore(path).expect_partial()
        return path

    def evaluate_test(self, variant="lesa", progress=None):
        """ZSL/GZSL metrics of the current weights on the test split."""
        return evaluate_model(
            self.model,
            self.source.split("test"),
            self.source.label_space,
            ks=self.source.eval_ks,
            variant=variant,
            progress=self.verbose if progress is None else progress,
        )

