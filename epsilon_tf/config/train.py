"""How to train (`TrainConfig`) and its sections.

`TrainConfig` stays one flat record (one flag per field, one `TrainConfig`
section in a run's `config.json`, so older runs still read). Each field
also belongs to a section, as TF Model Garden splits an experiment's
settings: the trainer (the training trajectory), the runtime (where and how
a run executes), the export and the summaries. The section classes
(`TrainerConfig`, `RuntimeConfig`, `ExportConfig`, `SummaryConfig`) are
made from `TrainConfig`'s fields and are the parts of the nested
`ExperimentConfig`. Only the trainer settings define a run's trajectory:
the others may change when a run is resumed.
"""

import dataclasses
from typing import Optional

from epsilon_tf.config.settings import (
    COUNT,
    FRACTION,
    NON_NEGATIVE,
    OFF_AT_ZERO,
    POSITIVE,
    POSITIVE_INT,
    check_fields,
    setting,
)

TRAINER, RUNTIME, EXPORT, SUMMARY = "trainer", "runtime", "export", "summary"
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


@dataclasses.dataclass
class TrainConfig:
    """How to train.

    Args:
        model_dir: where checkpoints, summaries, config, metrics and the
            export go.
        epochs: passes over the training split.
        min_steps: the step budget: train at least this many optimizer
            steps, raising `epochs` to `ceil(min_steps / steps per
            epoch)` where the split is small (0: off). `train.py` drops
            it when the user gives `--epochs` (and not `--min_steps`).
        batch_size: global batch size (split across replicas).
        learning_rate: peak learning rate (cosine decay after warmup).
        warmup_steps: linear warmup steps.
        weight_decay: AdamW decoupled weight decay.
        clip_norm: global gradient-norm clip (0 disables).
        validation_fraction: fraction of the training images held out for
            model selection (by a hash of the image id).
        select_metric: validation metric that picks the best epoch.
        shuffle_buffer: examples in the shuffle buffer.
        seed: seed of initialization, shuffling and dropout.
        checkpoint_every_steps: also checkpoint every N steps (0: only at
            epoch ends).
        keep_checkpoints: the last N checkpoints kept (plus the best).
        jit_compile: XLA-compile the train step.
        strategy: "default", "mirrored", "multi_worker" or "tpu".
        steps_per_epoch: cap on steps per epoch (None: the whole split).
        export: export a SavedModel at the end.
        export_top_k: K of the exported `serving_default` signature.
        export_precision: "float32" (the model's scores) or "bfloat16"
            (faster serving on CPUs with AMX/AVX512-BF16, approximate;
            docs/serving.md).
        verbose: progress output (0 silent, 1 progress bar).
        deterministic: `tf.config.experimental.enable_op_determinism()`,
            so that two runs with the same flags and seed give the same
            numbers (see docs/training.md; costs nothing measurable on CPU).
        input_sharding: how several workers share the training data:
            "files" (each reads its own files) or "batches" (each reads
            everything and keeps its replicas' part of every global batch;
            the same examples per step as on one device).
        summary_images: validation images whose GPA assignment maps are
            drawn in TensorBoard every epoch (0: none).
        pr_curve_labels: unseen labels that get a TensorBoard PR curve on
            the test split at the end (0: none).
        mixed_precision: compute in bfloat16 ("mixed_bfloat16" policy:
            float32 variables, loss and scores), for GPUs and TPUs.
        progress_every_seconds: when stdout is not a terminal, a progress
            line (step/total, examples/s, ETA) this often (with `verbose`).
    """

    model_dir: str = setting(
        "runs/epsilon_synthetic", "Output directory.", section=RUNTIME
    )
    epochs: int = setting(
        12, "Training epochs.", check=POSITIVE_INT, section=TRAINER
    )
    min_steps: int = setting(
        0,
        "Train at least this many optimizer steps: epochs rise where the "
        "training split is small (0: off; dropped when --epochs is given).",
        check=COUNT, section=TRAINER,
    )
    batch_size: int = setting(
        64, "Global batch size.", check=POSITIVE_INT, section=TRAINER
    )
    learning_rate: float = setting(
        1e-3, "Peak LR.", check=POSITIVE, section=TRAINER
    )
    warmup_steps: int = setting(
        50, "LR warmup steps.", check=COUNT, section=TRAINER
    )
    weight_decay: float = setting(
        1e-2, "AdamW decay.", check=NON_NEGATIVE, section=TRAINER
    )
    clip_norm: float = setting(
        5.0, "Gradient clip (0: off).",
        check=OFF_AT_ZERO, section=TRAINER,
    )
    validation_fraction: float = setting(
        0.1, "Share of the training images held out for model selection.",
        check=FRACTION, section=TRAINER,
    )
    select_metric: str = setting(
        "f1@3",
        "Validation seen-label metric that selects the best epoch (default: "
        "F1 at the benchmark's first K, f1@3 or f1@10).",
        section=TRAINER,
    )
    shuffle_buffer: int = setting(
        1024, "Shuffle size.", check=POSITIVE_INT, section=TRAINER
    )
    seed: int = setting(0, "Random seed.", check=COUNT, section=TRAINER)
    checkpoint_every_steps: int = setting(
        0, "Also checkpoint every N steps (0: at epoch ends only).",
        check=COUNT, section=RUNTIME,
    )
    keep_checkpoints: int = setting(
        3, "Last N checkpoints kept.", check=POSITIVE_INT, section=RUNTIME
    )
    jit_compile: bool = setting(
        False, "XLA-compile the step.", section=RUNTIME
    )
    strategy: str = setting(
        "default", "tf.distribute strategy.", choices=STRATEGIES,
        section=RUNTIME,
    )
    steps_per_epoch: Optional[int] = setting(
        None, "Steps per epoch (default: one pass).", check=POSITIVE_INT,
        section=TRAINER,
    )
    export: bool = setting(
        True, "Export a SavedModel at the end.", section=EXPORT
    )
    export_top_k: int = setting(
        10, "K of the exported serving_default.", check=POSITIVE_INT,
        section=EXPORT,
    )
    export_precision: str = setting(
        "float32",
        "Precision of the exported graph: float32 (the model's scores) or "
        "bfloat16 (faster on CPUs with AMX/AVX512-BF16, approximate).",
        choices=("float32", "bfloat16"), section=EXPORT,
    )
    verbose: int = setting(
        1, "0: quiet, 1: progress bars.", check=COUNT, section=RUNTIME
    )
    deterministic: bool = setting(
        True,
        "Deterministic TensorFlow ops: the same flags and --seed give the "
        "same numbers (tf.config.experimental.enable_op_determinism).",
        section=RUNTIME,
    )
    input_sharding: str = setting(
        "files",
        "Multi-worker input: 'files' (each worker reads its own files) or "
        "'batches' (each reads everything, keeps its part of every global "
        "batch: the same examples per step as on one device).",
        choices=("files", "batches"), section=TRAINER,
    )
    summary_images: int = setting(
        4,
        "Validation images whose GPA maps TensorBoard shows each epoch "
        "(0: none).",
        check=COUNT, section=SUMMARY,
    )
    pr_curve_labels: int = setting(
        8,
        "Unseen labels with a TensorBoard PR curve on the test split "
        "(0: none).",
        check=COUNT, section=SUMMARY,
    )
    mixed_precision: bool = setting(
        False, "bfloat16 compute with float32 variables (for GPUs/TPUs).",
        section=TRAINER,
    )
    # Output only (issue 11): may change on resume, not a hyper-parameter.
    progress_every_seconds: float = setting(
        30.0,
        "When stdout is not a terminal (a log file, CI, a cluster job), "
        "print a progress line (step/total, examples/s, ETA) this often.",
        check=(lambda v: v > 0, "a positive number of seconds"),
        section=RUNTIME,
    )

    def __post_init__(self):
        check_fields(self)


# {section: the names of its `TrainConfig` fields, in declaration order}.
TRAIN_CONFIG_SECTIONS = {
    section: tuple(
        f.name for f in dataclasses.fields(TrainConfig)
        if f.metadata["section"] == section
    )
    for section in (TRAINER, RUNTIME, EXPORT, SUMMARY)
}


def _section_class(name, section, what):
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    cls = dataclasses.make_dataclass(
        name,
        [
            (f, known[f].type, dataclasses.field(default=known[f].default))
            for f in TRAIN_CONFIG_SECTIONS[section]
        ],
        frozen=True,
    )
    cls.__doc__ = (
        f"{what} of a `TrainConfig` (same fields, defaults and meaning; "
        "see `TrainConfig`)."
    )
    cls.__module__ = "epsilon_tf.config"
    return cls


TrainerConfig = _section_class(
    "TrainerConfig", TRAINER,
    "The training trajectory (optimization, data order, numerics)",
)
RuntimeConfig = _section_class(
    "RuntimeConfig", RUNTIME,
    "Where and how a run executes (directory, devices, compilation, "
    "checkpoint cadence, logging)",
)
ExportConfig = _section_class(
    "ExportConfig", EXPORT, "The SavedModel export at the end of a run",
)
SummaryConfig = _section_class(
    "SummaryConfig", SUMMARY, "The TensorBoard images and PR curves",
)
SECTION_CLASSES = {
    TRAINER: TrainerConfig,
    RUNTIME: RuntimeConfig,
    EXPORT: ExportConfig,
    SUMMARY: SummaryConfig,
}


def train_config_sections(train_config):
    """`{"trainer", "runtime", "export", "summary"}` -> the typed parts."""
    return {
        section: cls(**{
            f.name: getattr(train_config, f.name)
            for f in dataclasses.fields(cls)
        })
        for section, cls in SECTION_CLASSES.items()
    }


def train_config_from_sections(trainer=None, runtime=None, export=None,
                               summary=None):
    """The flat `TrainConfig` of its parts (None: that part's defaults)."""
    fields = {}
    for part in (trainer, runtime, export, summary):
        if part is not None:
            fields.update(dataclasses.asdict(part))
    return TrainConfig(**fields)


def trajectory_free_train_fields():
    """`TrainConfig` fields that may change when a run is resumed."""
    return frozenset(
        name
        for section, names in TRAIN_CONFIG_SECTIONS.items()
        if section != TRAINER
        for name in names
    )


def budget_epochs(epochs, min_steps, steps_per_epoch):
    """The epochs of a run: `epochs`, raised so that the run takes at
    least `min_steps` optimizer steps of `steps_per_epoch` each (None:
    unknown, `epochs` stands)."""
    if not min_steps or not steps_per_epoch:
        return int(epochs)
    return max(int(epochs), -(-int(min_steps) // int(steps_per_epoch)))
