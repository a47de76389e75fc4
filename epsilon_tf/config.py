"""Typed configuration. Flags are turned into these once, in `flags.py`."""

import dataclasses
import json
from typing import Optional

TOKEN_NORMS = ("layer", "standardize", "none")
MODELS = ("epsilon", "lesa", "biam")


@dataclasses.dataclass
class ModelConfig:
    """Epsilon's architecture (docs/design.md §2). Every ablation is a field.

    `model` picks Epsilon or one of the baselines LESA and BiAM
    (BUILD_NOTES.md, "Baselines: LESA and BiAM"); the `lesa_*` and `biam_*`
    fields size the baselines, the others Epsilon.

    Args:
        model: "epsilon", "lesa" or "biam".
        feature_shape: (num_regions, channels) of the backbone features.
        token_norm: how region tokens are normalized before the
            projection: "layer" (LayerNormalization of every token on its
            own), "standardize" (`FeatureStandardization`: every channel
            standardized with fixed statistics of the training regions, so
            a region keeps its strength relative to the others) or "none".
        hidden_dim: width D of the projected tokens.
        embedding_dim: width E of the word vectors (taken from the label
            space when built through `build_epsilon`).
        num_prompts: G, the GPA group prompts.
        gpa_layers: L, Transformer encoder blocks in GPA.
        gpa_heads: attention heads in GPA.
        grouping: "tokens" (softmax over tokens) or "groups" (GroupViT).
        num_global: M, the GFP global vectors.
        gfp_blocks: residual blocks in GFP.
        gfp_input: what GFP pools: "tokens" (the projected tokens) or
            "features" (the input region features; see
            `GlobalForwardPropagation`).
        gfp_pooled_norm: standardize GFP's pooled vector with fixed
            training statistics before its projection (needs
            `gfp_input="features"`).
        branches: "both", "gpa" (GPA only) or "gfp" (GFP only).
        fusion: "learned" or "fixed" fusion weight.
        fusion_init: initial (or fixed) fusion weight a.
        fusion_temperature: learn a per-branch temperature.
        token_dropout: probability of dropping a whole region token.
        dropout: dropout inside GPA and GFP.
        normalize_semantic: L2-normalize the semantic vectors before
            scoring (scores become cosines; see `score_scale`). On by
            default: unnormalized prompts fit the seen labels' directions
            and transfer worse (BUILD_NOTES.md, "Against ESZSL").
        score_scale: multiplier on the fused scores (with normalized
            vectors the scores are cosines in [-1, 1] and the hinge margin
            is 1, so the scale sets how hard the margin is).
        lesa_attentions: LESA's T shared attentions.
        lesa_conv: LESA's 2x2 convolution + batch norm + ReLU over the
            region grid before the attention (its NUS-WIDE release run).
        biam_channels: BiAM's channel width (256).
        biam_heads: heads of BiAM's region-level attention (8).
        biam_top_k: BiAM scores a label by the mean of its top-k region
            scores (6).
    """

    model: str = "epsilon"
    feature_shape: tuple = (196, 512)
    token_norm: str = "layer"
    hidden_dim: int = 512
    embedding_dim: int = 300
    num_prompts: int = 7
    gpa_layers: int = 1
    gpa_heads: int = 8
    grouping: str = "tokens"
    num_global: int = 3
    gfp_blocks: int = 2
    gfp_input: str = "tokens"
    gfp_pooled_norm: bool = False
    branches: str = "both"
    fusion: str = "learned"
    fusion_init: float = 0.5
    fusion_temperature: bool = False
    token_dropout: float = 0.1
    dropout: float = 0.1
    normalize_semantic: bool = True
    score_scale: float = 5.0
    lesa_attentions: int = 10
    lesa_conv: bool = True
    biam_channels: int = 256
    biam_heads: int = 8
    biam_top_k: int = 6

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(
                f"`model` must be one of {MODELS}. "
                f"Received: model={self.model!r}"
            )
        self.feature_shape = tuple(int(v) for v in self.feature_shape)
        if len(self.feature_shape) != 2 or min(self.feature_shape) < 1:
            raise ValueError(
                "`feature_shape` must be (num_regions, channels) with "
                f"positive sizes. Received: feature_shape={self.feature_shape}"
            )
        if self.token_norm not in TOKEN_NORMS:
            raise ValueError(
                f"`token_norm` must be one of {TOKEN_NORMS}. "
                f"Received: token_norm={self.token_norm!r}"
            )
        if self.gfp_input not in ("tokens", "features"):
            raise ValueError(
                "`gfp_input` must be one of ('tokens', 'features'). "
                f"Received: gfp_input={self.gfp_input!r}"
            )
        if self.gfp_pooled_norm and self.gfp_input != "features":
            raise ValueError(
                "`gfp_pooled_norm=True` needs `gfp_input='features'`. "
                f"Received: gfp_input={self.gfp_input!r}"
            )
        if self.branches not in ("both", "gpa", "gfp"):
            raise ValueError(
                "`branches` must be one of ('both', 'gpa', 'gfp'). "
                f"Received: branches={self.branches!r}"
            )
        if self.score_scale <= 0:
            raise ValueError(
                "`score_scale` must be positive. "
                f"Received: score_scale={self.score_scale}"
            )


@dataclasses.dataclass
class LossConfig:
    """The training objective (docs/design.md §2, item 6).

    Args:
        form: "hinge" (LESA/BiAM ranking loss) or "smooth" (log(1+exp)).
        margin: hinge margin.
        diversity_weight: lambda of the prompt-diversity regularizer
            (0 disables it).
        lesa_dist_weight, lesa_global_weight, lesa_span_weight: weights of
            LESA's attention regularizers (used with `model="lesa"` only;
            `losses.ranking.lesa_regularizers`): its NUS-WIDE release
            run's 0.1, 0.001 and 0.01, the last two rescaled from LESA's
            per-batch sums to per-image means at its batch of 32 (x32 and
            x sqrt(32)). 0 disables a term.
        lesa_global_margin: margin of LESA's global-attention term.
        label_weight: weight of the per-label image ranking
            (`losses.ranking.label_ranking`) added to the ranking term;
            hinge form only; 0 disables it.
        branch_weight: weight of the same ranking objective on each
            branch's scores alone (two-branch Epsilon; deep supervision);
            0 disables it.
    """

    form: str = "hinge"
    margin: float = 1.0
    diversity_weight: float = 0.1
    lesa_dist_weight: float = 0.1
    lesa_global_weight: float = 0.032
    lesa_span_weight: float = 0.0566
    lesa_global_margin: float = 0.0
    label_weight: float = 0.0
    branch_weight: float = 0.0


@dataclasses.dataclass
class TrainConfig:
    """How to train.

    Args:
        model_dir: where checkpoints, summaries, config, metrics and the
            export go.
        epochs: passes over the training split.
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

    model_dir: str = "runs/epsilon_synthetic"
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 1e-2
    clip_norm: float = 5.0
    validation_fraction: float = 0.1
    select_metric: str = "f1@3"
    shuffle_buffer: int = 1024
    seed: int = 0
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 3
    jit_compile: bool = False
    strategy: str = "default"
    steps_per_epoch: Optional[int] = None
    export: bool = True
    export_top_k: int = 10
    export_precision: str = "float32"
    verbose: int = 1
    deterministic: bool = True
    input_sharding: str = "files"
    summary_images: int = 4
    pr_curve_labels: int = 8
    mixed_precision: bool = False
    # Output only (issue 11): may change on resume, not a hyper-parameter.
    progress_every_seconds: float = 30.0


# `TrainConfig`'s fields by kind, as TF Model Garden splits an experiment's
# settings into trainer and runtime configs (plus export and summaries
# here). `TrainConfig` stays one flat record (one flag per field, one
# `TrainConfig` section in a run's `config.json`, so older runs still
# read); `train_config_sections` gives the typed parts. Only the trainer
# settings define a run's trajectory: the others may change when a run is
# resumed.
TRAIN_CONFIG_SECTIONS = {
    "trainer": (
        "epochs", "batch_size", "learning_rate", "warmup_steps",
        "weight_decay", "clip_norm", "validation_fraction", "select_metric",
        "shuffle_buffer", "seed", "steps_per_epoch", "input_sharding",
        "mixed_precision",
    ),
    "runtime": (
        "model_dir", "strategy", "jit_compile", "deterministic",
        "checkpoint_every_steps", "keep_checkpoints", "verbose",
        "progress_every_seconds",
    ),
    "export": ("export", "export_top_k", "export_precision"),
    "summary": ("summary_images", "pr_curve_labels"),
}


def _train_config_section(name, fields, what):
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    cls = dataclasses.make_dataclass(
        name,
        [
            (f, known[f].type, dataclasses.field(default=known[f].default))
            for f in fields
        ],
        frozen=True,
    )
    cls.__doc__ = (
        f"{what} of a `TrainConfig` (same fields, defaults and meaning; "
        "see `TrainConfig`)."
    )
    cls.__module__ = __name__
    return cls


TrainerConfig = _train_config_section(
    "TrainerConfig", TRAIN_CONFIG_SECTIONS["trainer"],
    "The training trajectory (optimization, data order, numerics)",
)
RuntimeConfig = _train_config_section(
    "RuntimeConfig", TRAIN_CONFIG_SECTIONS["runtime"],
    "Where and how a run executes (directory, devices, compilation, "
    "checkpoint cadence, logging)",
)
ExportConfig = _train_config_section(
    "ExportConfig", TRAIN_CONFIG_SECTIONS["export"],
    "The SavedModel export at the end of a run",
)
SummaryConfig = _train_config_section(
    "SummaryConfig", TRAIN_CONFIG_SECTIONS["summary"],
    "The TensorBoard images and PR curves",
)
_SECTION_CLASSES = {
    "trainer": TrainerConfig,
    "runtime": RuntimeConfig,
    "export": ExportConfig,
    "summary": SummaryConfig,
}


def train_config_sections(train_config):
    """`{"trainer", "runtime", "export", "summary"}` -> the typed parts."""
    return {
        section: cls(**{
            f.name: getattr(train_config, f.name)
            for f in dataclasses.fields(cls)
        })
        for section, cls in _SECTION_CLASSES.items()
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
        if section != "trainer"
        for name in names
    )


@dataclasses.dataclass
class DataConfig:
    """Which data to read.

    Args:
        dataset: "synthetic", "nus_like" (the built-in benchmarks),
            "nus_wide" or "open_images"; or another member of the family
            of worlds (docs/worlds.md): "flickr_vgg_mild",
            "resnet_scenes", "web_crowded", "vit_tokens", "product_deep".
        data_format: "native", "lesa" or "biam".
        cache_dir: where the built-in benchmark is written.
        data_dir: directory of native-format data.
        train_files, test_files: glob patterns of release files.
        label_dir: directory of the release's label files.
        word_vectors: path of the word-vector pickle.
        feature_shape: (num_regions, channels) of the stored features.
        skip_corrupt: skip corrupt records (and report how many).
        names_file: BiAM NUS-WIDE: pickle of {'img_names': [...]} (per
            split; a '{split}' in the path is replaced by train/test).
    """

    dataset: str = "synthetic"
    data_format: str = "native"
    cache_dir: str = "cache"
    data_dir: Optional[str] = None
    train_files: Optional[str] = None
    test_files: Optional[str] = None
    label_dir: Optional[str] = None
    word_vectors: Optional[str] = None
    feature_shape: tuple = (196, 512)
    skip_corrupt: bool = False
    names_file: Optional[str] = None


# Settings for release-shaped data (VGG conv5 region features, 196x512,
# GloVe-300 vocabularies): every non-synthetic dataset. Chosen on the
# label-held-out validation task of the nus_like benchmark's training split
# (`python -m benchmarks.tune_release_shaped`; BUILD_NOTES.md, "Learning on
# release-shaped data"), never on a test split. Applied by the flags to the
# settings a user did not give.
RELEASE_PRESET = {
    "token_norm": "standardize",
    "gfp_input": "features",
    "gfp_pooled_norm": True,
    "gfp_blocks": 0,
    "num_global": 1,
    "hidden_dim": 128,
    "gpa_heads": 4,
    "learning_rate": 3e-3,
    "batch_size": 64,
    "epochs": 4,
    "label_weight": 2.0,
    "gpa_layers": 0,
    "grouping": "groups",
    "fusion_init": 0.3,
}


def preset_configs(preset, feature_shape, model_overrides=None):
    """(ModelConfig, LossConfig, TrainConfig) of a preset, without flags.

    Args:
        preset: dict of field -> value (e.g. `RELEASE_PRESET`) for any of
            the three configs.
        feature_shape: (num_regions, channels).
        model_overrides: dict or None. Further `ModelConfig` fields.

    Returns:
        tuple of the three configs.
    """
    picked = {}
    for cls in (ModelConfig, LossConfig, TrainConfig):
        names = {f.name for f in dataclasses.fields(cls)}
        picked[cls] = {k: v for k, v in preset.items() if k in names}
    model_kw = {**picked[ModelConfig], **(model_overrides or {})}
    if model_kw.get("branches") == "gpa":
        # GPA alone has no GFP to configure.
        for key in ("gfp_input", "gfp_pooled_norm"):
            model_kw.pop(key, None)
    return (
        ModelConfig(feature_shape=tuple(feature_shape), **model_kw),
        LossConfig(**picked[LossConfig]),
        TrainConfig(**picked[TrainConfig]),
    )


_DATA_PATH_FIELDS = (
    "cache_dir", "data_dir", "train_files", "test_files", "label_dir",
    "word_vectors", "names_file",
)


def recorded_data_config(data_config):
    """`data_config` with absolute paths, as a run records it.

    Each comma-separated part of a path field is made absolute (glob
    characters and a `{split}` placeholder are kept), so the record means
    the same files from any working directory.
    """
    import os

    changes = {}
    for name in _DATA_PATH_FIELDS:
        value = getattr(data_config, name)
        if value:
            changes[name] = ",".join(
                os.path.abspath(part.strip()) if part.strip() else part
                for part in str(value).split(",")
            )
    return dataclasses.replace(data_config, **changes)


def to_dict(*configs):
    """`{ClassName: fields}` of the given configs, JSON-ready."""
    return {type(c).__name__: dataclasses.asdict(c) for c in configs}


def write_json(path, payload):
    """Writes `payload` as JSON to `path` atomically."""
    import os

    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)
