"""Typed configuration. Flags are turned into these once, in `flags.py`."""

import dataclasses
import json
from typing import Optional


@dataclasses.dataclass
class ModelConfig:
    """Epsilon's architecture (DESIGN §2). Every ablation is a field.

    Args:
        feature_shape: (num_regions, channels) of the backbone features.
        hidden_dim: width D of the projected tokens.
        embedding_dim: width E of the word vectors (taken from the label
            space when built through `build_epsilon`).
        num_prompts: G, the GPA group prompts.
        gpa_layers: L, Transformer encoder blocks in GPA.
        gpa_heads: attention heads in GPA.
        grouping: "tokens" (softmax over tokens) or "groups" (GroupViT).
        num_global: M, the GFP global vectors.
        gfp_blocks: residual blocks in GFP.
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
    """

    feature_shape: tuple = (196, 512)
    hidden_dim: int = 512
    embedding_dim: int = 300
    num_prompts: int = 7
    gpa_layers: int = 1
    gpa_heads: int = 8
    grouping: str = "tokens"
    num_global: int = 3
    gfp_blocks: int = 2
    branches: str = "both"
    fusion: str = "learned"
    fusion_init: float = 0.5
    fusion_temperature: bool = False
    token_dropout: float = 0.1
    dropout: float = 0.1
    normalize_semantic: bool = True
    score_scale: float = 5.0

    def __post_init__(self):
        self.feature_shape = tuple(int(v) for v in self.feature_shape)
        if len(self.feature_shape) != 2 or min(self.feature_shape) < 1:
            raise ValueError(
                "`feature_shape` must be (num_regions, channels) with "
                f"positive sizes. Received: feature_shape={self.feature_shape}"
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
    """The training objective (DESIGN §2.6).

    Args:
        form: "hinge" (LESA/BiAM ranking loss) or "smooth" (log(1+exp)).
        margin: hinge margin.
        diversity_weight: lambda of the prompt-diversity regularizer
            (0 disables it).
    """

    form: str = "hinge"
    margin: float = 1.0
    diversity_weight: float = 0.1


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


@dataclasses.dataclass
class DataConfig:
    """Which data to read.

    Args:
        dataset: "synthetic", "nus_wide" or "open_images".
        data_format: "native", "lesa" or "biam".
        cache_dir: where the built-in benchmark is written.
        data_dir: directory of native-format data.
        train_files, test_files: glob patterns of release files.
        label_dir: directory of the release's label files.
        word_vectors: path of the word-vector pickle.
        feature_shape: (num_regions, channels) of the stored features.
        skip_corrupt: skip corrupt records (and report how many).
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
