"""The Task: a single-replica view of training (TF Model Garden's sense).

A `Task` builds the model, its loss and optimizer and the inputs of one
replica, and defines the step functions: `compute_gradients` (forward
pass and gradients of one replica's batch), `train_step` (in a replica
context: sum the gradients over the replicas, clip, apply) and
`validation_step` (scores of a batch). The trainer runs `train_step`
under its `tf.distribute.Strategy`; the benchmarks and the baselines
(LESA, BiAM: any model `models.build_model` makes) call the very same
functions, with the same optimizer.
"""

import dataclasses

import keras
import tensorflow as tf

from epsilon_tf.baselines.eszsl import ESZSL, POOLINGS, pooled_columns
from epsilon_tf.data.pipeline import carve, input_errors, make_dataset
from epsilon_tf.losses import RankingLoss
from epsilon_tf.models import build_model
from epsilon_tf.training.evaluation import forward_scores
from epsilon_tf.training.standardization import (
    fit_standardization,
    standardization_targets,
)
from epsilon_tf.training.summed_gradients import (
    SummedGradientsAdamW,
    check_keras_contract,
)

# Variables (by name) without weight decay.
NO_DECAY = ["bias", "gamma", "beta", "prompt_tokens", "theta",
            "log_temperature"]
# The validation images are kept in memory after the first epoch's pass
# when their estimate (below) fits in this many bytes: later epochs read no
# file (the carve otherwise reads the whole training split every epoch).
# 1 GiB holds the 800 validation images of an 8,000-image 197x768 world
# (ViT tokens; 512 MiB did not, and every epoch re-read the whole split).
VALIDATION_CACHE_BYTES = 2**30
# Head-room on the expected validation share (the carve is by hash).
VALIDATION_SHARE_MARGIN = 1.5
# The loss terms of a step, in the order of `train_step`'s vector.
LOSS_TERMS = ("total", "ranking", "diversity", "attention")


def make_loss(loss_config, score_scale):
    """The `RankingLoss` of a `LossConfig` (its fields are the loss's
    arguments, one for one) for a model whose scores are scaled by
    `score_scale` (`ModelConfig.score_scale`; the per-branch term scales
    the branch scores alike)."""
    return RankingLoss(branch_scale=score_scale,
                       **dataclasses.asdict(loss_config))


def fit_eszsl_model(source, validation_fraction, poolings=POOLINGS):
    """ESZSL fitted as every run fits it: on the training subset of
    `source`'s training split, its recipe (among `poolings`), γ and λ
    chosen on the validation images, never the test split."""
    train = source.split("train").dataset()
    baseline = ESZSL(select_k=source.eval_ks[0], poolings=poolings)
    baseline.fit(
        carve(train, "train", validation_fraction),
        carve(train, "validation", validation_fraction),
        source.label_space.subset("seen").vectors,
    )
    return baseline


class Task:
    """Builds and steps one model (Epsilon, LESA or BiAM) on one replica.

    Call `build_model` and `create_optimizer` (inside the strategy's
    scope when there is one) before the steps.

    Args:
        model_config: `ModelConfig`. With `source`, its `feature_shape`
            and `embedding_dim` are taken from the data.
        loss_config: `LossConfig`.
        train_config: `TrainConfig`.
        label_space: `LabelSpace`. The model scores its seen labels.
        source: `DatasetSource` or None. The data of `build_*_inputs` and
            `initialize` (None: the caller feeds tensors itself, as the
            benchmarks do).
        global_batch: int or None. The global batch the loss is averaged
            over (default `train_config.batch_size`).

    Example (`space` a `LabelSpace`, `features` and `labels` tensors):

        task = Task(ModelConfig(), LossConfig(), TrainConfig(), space)
        task.build_model()
        task.create_optimizer(1e-3)
        step = tf.function(task.train_step)
        terms, grad_norm = step(features, labels)
    """

    def __init__(self, model_config, loss_config, train_config,
                 label_space, source=None, global_batch=None):
        if source is not None:
            model_config = dataclasses.replace(
                model_config,
                feature_shape=tuple(source.feature_shape),
                embedding_dim=label_space.embedding_dim,
            )
        self.model_config = model_config
        self.loss_config = loss_config
        self.train_config = train_config
        self.label_space = label_space
        self.source = source
        self.global_batch = int(global_batch or train_config.batch_size)
        self.loss_fn = make_loss(loss_config, model_config.score_scale)
        self.model = None
        self.optimizer = None
        self._gradient_fn = None
        self._scores_fn = None
        self.eszsl = None  # the ESZSL of a warm start (`warm_start`)

    # ------------------------------------------------------------- building
    def build_model(self):
        """Builds (once) and returns the model over the seen labels."""
        if self.model is None:
            self.model = build_model(
                self.model_config, self.label_space.subset("seen")
            )
            self._scores_fn = forward_scores(self.model)
        return self.model

    def learning_rate(self, steps_per_epoch):
        """Cosine decay with linear warmup over the run (or a constant
        when the number of steps is unknown)."""
        cfg = self.train_config
        if steps_per_epoch is None:
            return cfg.learning_rate
        total = steps_per_epoch * cfg.epochs
        warmup = min(cfg.warmup_steps, max(total - 1, 0))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else cfg.learning_rate,
            decay_steps=max(total - warmup, 1),
            alpha=0.01,
            warmup_target=cfg.learning_rate if warmup else None,
            warmup_steps=warmup,
        )

    def create_optimizer(self, learning_rate):
        """AdamW (no decay on `NO_DECAY`), given summed gradients.

        Clipping is `train_step`'s (of the global batch's gradient), not
        Keras' `global_clipnorm` (see `summed_gradients`).
        """
        check_keras_contract()
        model = self.build_model()
        optimizer = SummedGradientsAdamW(
            learning_rate=learning_rate,
            weight_decay=self.train_config.weight_decay,
            name="adamw",
        )
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
        optimizer.build(model.trainable_variables)
        self.optimizer = optimizer
        return optimizer

    def initialize(self):
        """Fixed feature statistics of a fresh model (from the training
        images; a resumed run restores them instead), and with
        `gfp_linear="eszsl"` GFP's linear path warm-started from ESZSL
        fitted on the same training images (`warm_start`; a model without
        GFP, `branches="gpa"`, has none to start)."""
        model = self.build_model()
        if not standardization_targets(model):
            return None
        ds = make_dataset(
            self.source.split("train"),
            256,
            subset="train",
            validation_fraction=self.train_config.validation_fraction,
        )
        with input_errors():
            used = fit_standardization(
                model, (b["features"].numpy() for b in ds)
            )
        if (self.model_config.gfp_linear == "eszsl"
                and "gfp" in {layer.name for layer in model.layers}):
            self.warm_start()
        return used

    def warm_start(self):
        """Starts GFP's linear path at the closed-form ESZSL solution.

        ESZSL is fitted as `train.py` prints it (`fit_eszsl`: the training
        subset, its recipe, γ and λ chosen on the validation images, never
        the test split), restricted to the poolings GFP's pooled vector
        holds; the fitted baseline is kept as `self.eszsl`.
        """
        gfp = self.model.get_layer("gfp")
        poolings = {"avg_max": POOLINGS, "avg": ("mean",),
                    "max": ("max",)}[gfp.pooling]
        with input_errors():
            baseline = fit_eszsl_model(
                self.source, self.train_config.validation_fraction, poolings
            )
        width = 2 * self.model_config.feature_shape[1]
        columns = pooled_columns(baseline.pooling, width)
        if gfp.pooling != "avg_max":
            columns = slice(None)
        gfp.warm_start_linear(
            columns, baseline.mean, baseline.std, baseline.projection,
            glorot_multiple=self.model_config.gfp_linear_scale,
        )
        self.eszsl = baseline
        return baseline

    # --------------------------------------------------------------- inputs
    def build_train_inputs(self, batch_size, seed, input_context=None):
        """One input pipeline's shuffled `(features, labels)` batches of
        the training subset (the validation carve held out)."""
        cfg = self.train_config
        ds = make_dataset(
            self.source.split("train"),
            batch_size,
            subset="train",
            validation_fraction=cfg.validation_fraction,
            shuffle_seed=seed,
            shuffle_buffer=cfg.shuffle_buffer,
            input_context=input_context,
            drop_remainder=True,
            input_sharding=cfg.input_sharding,
        )
        return ds.map(lambda b: (b["features"], b["labels"]))

    def build_validation_inputs(self, batch_size=256, cache=False):
        """Batches (dicts with `features`, `labels`, `image_id`) of the
        validation images, in file order.

        With `cache=True` the batches are kept in memory after the first
        full pass when `validation_bytes()` fits `VALIDATION_CACHE_BYTES`
        (iterate such a dataset fully every time).
        """
        ds = make_dataset(
            self.source.split("train"),
            batch_size,
            subset="validation",
            validation_fraction=self.train_config.validation_fraction,
        )
        estimate = self.validation_bytes() if cache else None
        if estimate is not None and estimate <= VALIDATION_CACHE_BYTES:
            ds = ds.cache()
        return ds

    def validation_bytes(self):
        """An upper estimate of the validation images' size in memory
        (float32 features and labels), or None when the training split's
        size is not known without counting."""
        train = self.source.split("train")
        n = train.num_examples
        if n is None:
            return None
        share = min(1.0, self.train_config.validation_fraction
                    * VALIDATION_SHARE_MARGIN)
        regions, channels = self.model_config.feature_shape
        per_image = 4 * (regions * channels + len(self.label_space.names))
        return int(n * share * per_image)

    # ---------------------------------------------------------------- steps
    def compute_gradients(self, features, labels):
        """Gradients and loss terms of one replica's batch.

        The loss is averaged over the global batch, so summing the
        replicas' gradients gives the gradient of the global-batch mean.

        Returns:
            `(gradients, terms)`: a list aligned with the model's
            trainable variables (zeros where a variable gets none) and a
            dict of the loss terms (`LOSS_TERMS`), each this replica's
            share of the global-batch mean.
        """
        model = self.model
        with tf.GradientTape() as tape:
            outputs = model(features, training=True)
            terms = self.loss_fn.per_example_terms(labels, outputs)
            per_example = sum(terms.values())
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=self.global_batch
            )
        variables = model.trainable_variables
        grads = tape.gradient(loss, variables)
        grads = [
            tf.zeros_like(v) if g is None else g
            for g, v in zip(grads, variables, strict=True)
        ]
        sums = {
            k: tf.nn.compute_average_loss(
                v, global_batch_size=self.global_batch
            )
            for k, v in terms.items()
        }
        sums["total"] = loss
        return grads, sums

    @property
    def gradient_fn(self):
        """`compute_gradients` as a `tf.function` (XLA with
        `train_config.jit_compile`)."""
        if self._gradient_fn is None:
            self._gradient_fn = tf.function(
                self.compute_gradients,
                jit_compile=self.train_config.jit_compile,
            )
        return self._gradient_fn

    def train_step(self, features, labels):
        """One optimizer step, in a replica context.

        Sums the replicas' gradients (all-reduce; the identity on one
        device), clips the sum to `train_config.clip_norm` by its global
        norm and applies it.

        Returns:
            `(terms, grad_norm)`: this replica's loss terms stacked in the
            order of `LOSS_TERMS` (sum them over the replicas), and the
            global norm of the summed gradient before clipping.
        """
        clip = self.train_config.clip_norm
        grads, terms = self.gradient_fn(features, labels)
        # The gradient of the global-batch mean: sum over replicas.
        grads = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, grads
        )
        norm = tf.linalg.global_norm(grads)
        if clip:
            grads, _ = tf.clip_by_global_norm(grads, clip, use_norm=norm)
        self.optimizer.apply_gradients(
            zip(grads, self.model.trainable_variables, strict=True)
        )
        return tf.stack([terms[k] for k in LOSS_TERMS]), norm

    def validation_step(self, features):
        """float32 scores [batch, seen labels] of a batch (inference)."""
        return self._scores_fn(features)
