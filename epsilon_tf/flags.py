"""Command-line flags of train.py and eval.py; the only module reading FLAGS.

Flags are defined here, turned into the typed configs of
`epsilon_tf.config` once (`train_configs`, `eval_options`), and the values
are passed on as arguments. `--flagfile=FILE` works for every flag.
"""

import dataclasses

from absl import flags

from epsilon_tf.config import (
    RELEASE_PRESET,
    TOKEN_NORMS,
    DataConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
)
from epsilon_tf.data.catalog import WORLD_FAMILY
from epsilon_tf.errors import CommandLineError

FLAGS = flags.FLAGS


def _shape(text, name):
    try:
        parts = tuple(int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 2 or min(parts) < 1:
        raise flags.ValidationError(
            f"--{name} must be REGIONSxCHANNELS, e.g. 196x512. "
            f"Received: {text!r}"
        )
    return parts


def define_data_flags():
    d = DataConfig()
    flags.DEFINE_enum(
        "dataset", d.dataset,
        ["synthetic", "nus_like", "nus_wide", "open_images", *WORLD_FAMILY],
        "Benchmark to use (synthetic and nus_like are built in).",
    )
    flags.DEFINE_enum(
        "data_format", d.data_format, ["native", "lesa", "biam"],
        "Layout of the feature files.",
    )
    flags.DEFINE_string(
        "cache_dir", d.cache_dir, "Where the built-in benchmark is written."
    )
    flags.DEFINE_string(
        "data_dir", None, "Directory of native-format data (and its labels)."
    )
    flags.DEFINE_string(
        "train_files", None, "Glob of the release's training feature files."
    )
    flags.DEFINE_string(
        "test_files", None, "Glob of the release's test feature files."
    )
    flags.DEFINE_string(
        "label_dir", None,
        "Directory of the release's label files (TagList1k.txt, "
        "Concepts81.txt / classes-trainable.txt, unseen_labels.pkl, "
        "top_400_unseen.csv, class-descriptions.csv).",
    )
    flags.DEFINE_string(
        "word_vectors", None, "Word-vector pickle ([seen, unseen] arrays)."
    )
    flags.DEFINE_string(
        "names_file", None,
        "BiAM NUS-WIDE: pickle of {'img_names': [...]} (per split; a "
        "'{split}' in the path is replaced by train/test).",
    )
    flags.DEFINE_string(
        "feature_shape", "196x512", "Stored feature shape, REGIONSxCHANNELS."
    )
    flags.DEFINE_bool(
        "skip_corrupt", False,
        "Skip corrupt records (their number is reported) instead of failing.",
    )


def data_config():
    return DataConfig(
        dataset=FLAGS.dataset,
        data_format=FLAGS.data_format,
        cache_dir=FLAGS.cache_dir,
        data_dir=FLAGS.data_dir,
        train_files=FLAGS.train_files,
        test_files=FLAGS.test_files,
        label_dir=FLAGS.label_dir,
        word_vectors=FLAGS.word_vectors,
        feature_shape=_shape(FLAGS.feature_shape, "feature_shape"),
        skip_corrupt=FLAGS.skip_corrupt,
        names_file=FLAGS.names_file,
    )


def define_eval_flags():
    flags.DEFINE_string(
        "k", None,
        "Comma-separated K of P/R/F1@K (default: 3,5 for NUS-WIDE and the "
        "synthetic benchmark, 10,20 for Open Images).",
    )
    flags.DEFINE_enum(
        "ap_variant", "lesa", ["lesa", "biam_openimages"],
        "Evaluation semantics. 'lesa' is the standard protocol; "
        "'biam_openimages' is BiAM's Open Images variant (not the standard "
        "number): images without a positive dropped, mAP = BiAM's pooled "
        "AP.",
    )


def ks_value():
    """The K of --k as a tuple, or None for the dataset's default."""
    if FLAGS.k is None:
        return None
    try:
        ks = tuple(int(k) for k in FLAGS.k.split(","))
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise flags.ValidationError(
            f"--k must be comma-separated positive integers, e.g. 3,5. "
            f"Received: {FLAGS.k!r}"
        )
    return ks


def define_train_flags():
    """Defines every flag of train.py (model, loss, training, data)."""
    define_data_flags()
    define_eval_flags()
    m, lo, t = ModelConfig(), LossConfig(), TrainConfig()
    flags.DEFINE_string("model_dir", t.model_dir, "Output directory.")
    flags.DEFINE_integer("epochs", t.epochs, "Training epochs.")
    flags.DEFINE_integer("batch_size", t.batch_size, "Global batch size.")
    flags.DEFINE_float("learning_rate", t.learning_rate, "Peak LR.")
    flags.DEFINE_integer("warmup_steps", t.warmup_steps, "LR warmup steps.")
    flags.DEFINE_float("weight_decay", t.weight_decay, "AdamW decay.")
    flags.DEFINE_float("clip_norm", t.clip_norm, "Gradient clip (0: off).")
    flags.DEFINE_float(
        "validation_fraction", t.validation_fraction,
        "Share of the training images held out for model selection.",
    )
    flags.DEFINE_string(
        "select_metric", t.select_metric,
        "Validation seen-label metric that selects the best epoch (default: "
        "F1 at the benchmark's first K, f1@3 or f1@10).",
    )
    flags.DEFINE_integer("shuffle_buffer", t.shuffle_buffer, "Shuffle size.")
    flags.DEFINE_integer("seed", t.seed, "Random seed.")
    flags.DEFINE_integer(
        "checkpoint_every_steps", t.checkpoint_every_steps,
        "Also checkpoint every N steps (0: at epoch ends only).",
    )
    flags.DEFINE_integer(
        "keep_checkpoints", t.keep_checkpoints, "Last N checkpoints kept."
    )
    flags.DEFINE_bool("jit_compile", t.jit_compile, "XLA-compile the step.")
    flags.DEFINE_bool(
        "mixed_precision", t.mixed_precision,
        "bfloat16 compute with float32 variables (for GPUs/TPUs).",
    )
    flags.DEFINE_enum(
        "strategy", t.strategy, ["default", "mirrored", "multi_worker", "tpu"],
        "tf.distribute strategy.",
    )
    flags.DEFINE_integer(
        "steps_per_epoch", None, "Steps per epoch (default: one pass)."
    )
    flags.DEFINE_bool("export", t.export, "Export a SavedModel at the end.")
    flags.DEFINE_integer(
        "export_top_k", t.export_top_k, "K of the exported serving_default."
    )
    flags.DEFINE_enum(
        "export_precision", t.export_precision, ["float32", "bfloat16"],
        "Precision of the exported graph: float32 (the model's scores) or "
        "bfloat16 (faster on CPUs with AMX/AVX512-BF16, approximate).",
    )
    flags.DEFINE_integer("verbose", t.verbose, "0: quiet, 1: progress bars.")
    flags.DEFINE_bool(
        "deterministic", t.deterministic,
        "Deterministic TensorFlow ops: the same flags and --seed give the "
        "same numbers (tf.config.experimental.enable_op_determinism).",
    )
    flags.DEFINE_enum(
        "input_sharding", t.input_sharding, ["files", "batches"],
        "Multi-worker input: 'files' (each worker reads its own files) or "
        "'batches' (each reads everything, keeps its part of every global "
        "batch: the same examples per step as on one device).",
    )
    flags.DEFINE_integer(
        "summary_images", t.summary_images,
        "Validation images whose GPA maps TensorBoard shows each epoch "
        "(0: none).",
    )
    flags.DEFINE_integer(
        "pr_curve_labels", t.pr_curve_labels,
        "Unseen labels with a TensorBoard PR curve on the test split "
        "(0: none).",
    )
    flags.DEFINE_integer(
        "cpu_replicas", 0,
        "Split the CPU into this many logical devices (replicas for "
        "--strategy=mirrored on a machine without GPUs; 0: leave as is).",
    )
    flags.DEFINE_bool(
        "baseline", True, "Also fit and report the ESZSL baseline."
    )
    # Model.
    flags.DEFINE_enum(
        "model", m.model, ["epsilon", "lesa", "biam"],
        "Model to train: Epsilon or the LESA (CVPR 2020) or BiAM (ICCV "
        "2021) baseline (BUILD_NOTES.md, 'Baselines: LESA and BiAM').",
    )
    flags.DEFINE_integer(
        "lesa_attentions", m.lesa_attentions, "LESA: shared attentions T."
    )
    flags.DEFINE_bool(
        "lesa_conv", m.lesa_conv,
        "LESA: 2x2 convolution + batch norm over the region grid first.",
    )
    flags.DEFINE_integer(
        "biam_channels", m.biam_channels, "BiAM: channel width."
    )
    flags.DEFINE_integer(
        "biam_heads", m.biam_heads, "BiAM: region-attention heads."
    )
    flags.DEFINE_integer(
        "biam_top_k", m.biam_top_k,
        "BiAM: a label's score is the mean of its top-k region scores.",
    )
    flags.DEFINE_integer("hidden_dim", m.hidden_dim, "Token width D.")
    flags.DEFINE_integer("num_prompts", m.num_prompts, "GPA prompts G.")
    flags.DEFINE_integer("gpa_layers", m.gpa_layers, "GPA encoder blocks L.")
    flags.DEFINE_integer("gpa_heads", m.gpa_heads, "GPA attention heads.")
    flags.DEFINE_enum(
        "grouping", m.grouping, ["tokens", "groups"],
        "GPA grouping softmax over tokens or over groups (GroupViT).",
    )
    flags.DEFINE_integer("num_global", m.num_global, "GFP vectors M.")
    flags.DEFINE_integer("gfp_blocks", m.gfp_blocks, "GFP residual blocks.")
    flags.DEFINE_enum(
        "token_norm", m.token_norm, list(TOKEN_NORMS),
        "How region tokens are normalized before the projection.",
    )
    flags.DEFINE_enum(
        "gfp_input", m.gfp_input, ["tokens", "features"],
        "What GFP pools: the projected tokens or the input features.",
    )
    flags.DEFINE_bool(
        "gfp_pooled_norm", m.gfp_pooled_norm,
        "Standardize GFP's pooled vector with training statistics "
        "(needs --gfp_input=features).",
    )
    flags.DEFINE_enum(
        "branches", m.branches, ["both", "gpa", "gfp"],
        "Ablation: both branches, GPA only or GFP only.",
    )
    flags.DEFINE_enum(
        "fusion", m.fusion, ["learned", "fixed"], "Fusion weight mode."
    )
    flags.DEFINE_float("fusion_init", m.fusion_init, "Initial fusion a.")
    flags.DEFINE_bool(
        "fusion_temperature", m.fusion_temperature,
        "Learn a per-branch temperature in the fusion.",
    )
    flags.DEFINE_float("token_dropout", m.token_dropout, "Token dropout.")
    flags.DEFINE_float("dropout", m.dropout, "Dropout in GPA/GFP.")
    flags.DEFINE_bool(
        "normalize_semantic", m.normalize_semantic,
        "L2-normalize semantic vectors before scoring.",
    )
    flags.DEFINE_float("score_scale", m.score_scale, "Score multiplier.")
    # Loss.
    flags.DEFINE_enum("loss", lo.form, ["hinge", "smooth"], "Ranking loss.")
    flags.DEFINE_float("margin", lo.margin, "Hinge margin.")
    flags.DEFINE_float(
        "diversity_weight", lo.diversity_weight,
        "lambda of the prompt-diversity regularizer (0: off).",
    )
    flags.DEFINE_float(
        "lesa_dist_weight", lo.lesa_dist_weight,
        "LESA: weight of its attention-distribution regularizer (0: off).",
    )
    flags.DEFINE_float(
        "lesa_global_weight", lo.lesa_global_weight,
        "LESA: weight of its global-attention regularizer, per image "
        "(0: off).",
    )
    flags.DEFINE_float(
        "lesa_span_weight", lo.lesa_span_weight,
        "LESA: weight of its attention-span (orthogonality) regularizer, "
        "per image (0: off).",
    )
    flags.DEFINE_float(
        "lesa_global_margin", lo.lesa_global_margin,
        "LESA: margin of the global-attention regularizer.",
    )
    flags.DEFINE_float(
        "label_weight", lo.label_weight,
        "Weight of the per-label image ranking added to the ranking loss "
        "(the batch's images ranked for each label, as mAP ranks them; "
        "hinge loss only; 0: off).",
    )
    flags.DEFINE_float(
        "branch_weight", lo.branch_weight,
        "Epsilon with both branches: weight of the same ranking loss on "
        "each branch's scores alone, before the fusion (deep supervision; "
        "0: off).",
    )
    define_cli_flags()
    define_progress_flags()


# Defaults for the built-in synthetic benchmark, applied to the flags the
# user did not set: its features are 7x7x64 (not 14x14x512), and the demo
# must train, evaluate and export in minutes on two CPU cores.
SYNTHETIC_PRESET = {
    "hidden_dim": 128,
    "gpa_heads": 4,
    "batch_size": 64,
    "epochs": 10,
    "learning_rate": 1e-3,
}


def dataset_preset(dataset):
    """The preset applied to unset flags for `dataset`."""
    return SYNTHETIC_PRESET if dataset == "synthetic" else RELEASE_PRESET


# The baselines' own training settings (LESA's global_setting.py and
# BiAM's scripts/train_nus.sh: batch 32, learning rate 1e-3, their ranking
# loss without Epsilon's per-label term), for the flags the user did not
# set; they take precedence over the dataset's preset.
MODEL_PRESETS = {
    "lesa": {"batch_size": 32, "learning_rate": 1e-3, "label_weight": 0.0},
    "biam": {"batch_size": 32, "learning_rate": 1e-3, "label_weight": 0.0},
}


def _value(name, preset):
    if name in preset and not FLAGS[name].present:
        return preset[name]
    return getattr(FLAGS, name)


def train_configs():
    """(ModelConfig, LossConfig, TrainConfig, DataConfig) from the flags.

    Flags left at their defaults take the values of the dataset's preset:
    `SYNTHETIC_PRESET` for `--dataset=synthetic`, `RELEASE_PRESET` (the
    settings validated on release-shaped data) for every other dataset;
    with `--model=lesa|biam`, `MODEL_PRESETS` take precedence.
    """
    data = data_config()
    preset = dict(dataset_preset(data.dataset))
    preset.update(MODEL_PRESETS.get(FLAGS.model, {}))
    model_fields = [
        "hidden_dim", "num_prompts", "gpa_layers", "gpa_heads", "grouping",
        "num_global", "gfp_blocks", "token_norm", "gfp_input",
        "gfp_pooled_norm", "branches", "fusion", "fusion_init",
        "fusion_temperature", "token_dropout", "dropout",
        "normalize_semantic", "score_scale", "lesa_attentions", "lesa_conv",
        "biam_channels", "biam_heads", "biam_top_k",
    ]
    model_kw = {n: _value(n, preset) for n in model_fields}
    if model_kw["branches"] == "gpa" and not FLAGS["gfp_input"].present:
        # GPA alone has no GFP to configure.
        model_kw["gfp_input"] = ModelConfig.gfp_input
        model_kw["gfp_pooled_norm"] = False
    model = ModelConfig(
        model=FLAGS.model, feature_shape=data.feature_shape, **model_kw
    )
    loss = LossConfig(
        form=FLAGS.loss,
        margin=FLAGS.margin,
        diversity_weight=FLAGS.diversity_weight,
        lesa_dist_weight=FLAGS.lesa_dist_weight,
        lesa_global_weight=FLAGS.lesa_global_weight,
        lesa_span_weight=FLAGS.lesa_span_weight,
        lesa_global_margin=FLAGS.lesa_global_margin,
        # The preset's per-label term is a hinge; --loss=smooth drops it
        # unless --label_weight is given (then the loss says it needs the
        # hinge).
        label_weight=(
            _value("label_weight", preset)
            if FLAGS.loss == "hinge" or FLAGS["label_weight"].present
            else 0.0
        ),
        branch_weight=_value("branch_weight", preset),
    )
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    train = TrainConfig(**{n: _value(n, preset) for n in names})
    train.select_metric = selected_metric()
    return model, loss, train, data


def _command_line_error(message):
    return CommandLineError(message)


def _numbers(name, cast):
    text = getattr(FLAGS, name)
    try:
        values = tuple(cast(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values:
        raise _command_line_error(
            f"--{name} must be comma-separated numbers. Received: {text!r}"
        )
    return values


# --quick's Figure 3 sweeps unless set: each point but G = 1 reuses a main
# or ablation run, so the smoke run stays within minutes.
QUICK_SWEEPS = {"prompts": (1, 7), "regularizer_weights": (0.0, 0.1)}


def define_experiment_flags():
    """Flags of `python -m epsilon_tf.experiments` (plus the data flags)."""
    define_data_flags()
    define_eval_flags()
    flags.DEFINE_string(
        "output_dir", None, "Where runs, results and figures are written."
    )
    flags.DEFINE_string("seeds", "0,1,2", "Seeds of every trained method.")
    flags.DEFINE_integer(
        "epochs", None,
        "Epochs of every method (default: 4, --quick: 1).",
    )
    flags.DEFINE_integer(
        "batch_size", None, "Batch size of every method (default: 64)."
    )
    flags.DEFINE_integer(
        "steps_per_epoch", None,
        "Steps per epoch of every method (default: one pass; --quick: 3).",
    )
    flags.DEFINE_string(
        "prompts", "1,3,5,7,9", "Figure 3: numbers of group prompts."
    )
    flags.DEFINE_string(
        "regularizer_weights", "0,0.01,0.1,1",
        "Figure 3: prompt-diversity regularizer weights.",
    )
    flags.DEFINE_integer(
        "figure_images", 4, "Figure 1: fixed test images shown."
    )
    flags.DEFINE_bool(
        "quick", False,
        "A tiny budget, tiny models and short Figure 3 sweeps (G = 1, 7; "
        "lambda = 0, 0.1): a smoke run for CI, minutes.",
    )
    flags.DEFINE_integer(
        "jobs", 0,
        "Runs trained at the same time, each in its own process with an "
        "equal share of the CPU cores (0: one per core, at most 4; 1: one "
        "at a time in this process).",
    )
    flags.DEFINE_integer("verbose", 1, "0: quiet, 1: a line per run.")


def experiment_options():
    """The experiment flags as a dict of plain values."""
    if not FLAGS.output_dir:
        raise _command_line_error("--output_dir is required")
    for name in ("epochs", "batch_size", "steps_per_epoch", "figure_images"):
        value = getattr(FLAGS, name)
        if value is not None and value < 1:
            raise _command_line_error(
                f"--{name} must be a positive integer. Received: {value}"
            )
    if FLAGS.jobs < 0:
        raise _command_line_error(
            f"--jobs must be 0 (one per core) or a positive integer. "
            f"Received: {FLAGS.jobs}"
        )
    return {
        "data": data_config(),
        "ks": ks_value(),
        "variant": FLAGS.ap_variant,
        "output_dir": FLAGS.output_dir,
        "seeds": _numbers("seeds", int),
        "epochs": FLAGS.epochs,
        "batch_size": FLAGS.batch_size,
        "steps_per_epoch": FLAGS.steps_per_epoch,
        "prompts": (
            QUICK_SWEEPS["prompts"]
            if FLAGS.quick and not FLAGS["prompts"].present
            else _numbers("prompts", int)
        ),
        "regularizer_weights": (
            QUICK_SWEEPS["regularizer_weights"]
            if FLAGS.quick and not FLAGS["regularizer_weights"].present
            else _numbers("regularizer_weights", float)
        ),
        "figure_images": FLAGS.figure_images,
        "quick": FLAGS.quick,
        "jobs": FLAGS.jobs,
        "verbose": FLAGS.verbose,
    }


# ---------------------------------------------------------------------------
# Command-line plumbing shared by train.py and eval.py (issue 11): --debug,
# progress cadence, and the up-front checks of every flag value.


def define_cli_flags():
    """`--debug` (tracebacks and TensorFlow logs back on)."""
    flags.DEFINE_bool(
        "debug", False,
        "Show the Python traceback of an error and TensorFlow's C++ logs "
        "(same as EPSILON_TRACEBACK=1 EPSILON_TF_LOGS=1).",
    )


def define_progress_flags():
    flags.DEFINE_float(
        "progress_every_seconds", TrainConfig().progress_every_seconds,
        "When stdout is not a terminal (a log file, CI, a cluster job), "
        "print a progress line (step/total, examples/s, ETA) this often.",
    )


def _fail(name, value, requirement):
    raise CommandLineError(
        f"--{name} must be {requirement}. Received: --{name}={value}"
    )


def _int_at_least(name, low):
    value = getattr(FLAGS, name)
    if value is not None and value < low:
        word = "a positive integer" if low == 1 else f"an integer >= {low}"
        _fail(name, value, word)


def _float_check(name, ok, requirement):
    import math

    value = getattr(FLAGS, name)
    if value is None or not math.isfinite(value) or not ok(value):
        _fail(name, value, requirement)


def _shape_flag():
    try:
        return _shape(FLAGS.feature_shape, "feature_shape")
    except flags.ValidationError as e:
        raise CommandLineError(str(e)) from None


def _existing(name, kind):
    """--name, when given, must be an existing file or directory."""
    import os

    value = getattr(FLAGS, name)
    if not value:
        return
    if kind == "dir":
        if not os.path.exists(value):
            raise CommandLineError(f"--{name}: directory not found: {value}")
        if not os.path.isdir(value):
            raise CommandLineError(
                f"--{name}: {value} is a file, not a directory"
            )
    else:
        if "{split}" in value:
            return  # checked per split by the reader
        if not os.path.exists(value):
            raise CommandLineError(f"--{name}: file not found: {value}")
        if os.path.isdir(value):
            raise CommandLineError(
                f"--{name}: {value} is a directory, not a file"
            )


def check_writable_dir(name, path):
    """--name=path must be a directory, or creatable as one, and writable."""
    import os

    if not path:
        raise CommandLineError(f"--{name} must not be empty")
    if os.path.exists(path) and not os.path.isdir(path):
        raise CommandLineError(
            f"--{name}={path} is a file, not a directory"
        )
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise CommandLineError(
            f"--{name}={path} cannot be created: {probe} is a file"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CommandLineError(
            f"--{name}={path} cannot be written (no write permission on "
            f"{probe})"
        )


def check_data_flags():
    """Checks the data flags' values before anything is read or written."""
    _shape_flag()
    ks_value_checked()
    _existing("data_dir", "dir")
    _existing("label_dir", "dir")
    _existing("word_vectors", "file")
    _existing("names_file", "file")
    if FLAGS.cache_dir and FLAGS.dataset == "synthetic" and not FLAGS.data_dir:
        import os

        if os.path.exists(FLAGS.cache_dir) and not os.path.isdir(
            FLAGS.cache_dir
        ):
            raise CommandLineError(
                f"--cache_dir={FLAGS.cache_dir} is a file, not a directory"
            )
    # The release files themselves (globs, empty files, label files, the
    # word-vector pickle), still before TensorFlow is imported.
    from epsilon_tf.data.precheck import check_data_config

    check_data_config(data_config())


def ks_value_checked():
    """`ks_value()` with its error as a `CommandLineError`."""
    try:
        return ks_value()
    except flags.ValidationError as e:
        raise CommandLineError(str(e)) from None


_RATE = "a number in [0, 1)"


def check_train_flags():
    """Checks every train.py flag value, naming the flag and the value.

    Runs before any side effect (no data built, no directory written, no
    TensorFlow imported).
    """
    check_data_flags()
    for name in ("epochs", "batch_size", "shuffle_buffer", "keep_checkpoints",
                 "export_top_k", "hidden_dim", "num_prompts", "gpa_heads",
                 "num_global", "gpa_layers", "steps_per_epoch"):
        _int_at_least(name, 1)
    for name in ("warmup_steps", "checkpoint_every_steps", "verbose",
                 "summary_images", "pr_curve_labels", "cpu_replicas",
                 "gfp_blocks", "seed"):
        _int_at_least(name, 0)
    _float_check("learning_rate", lambda v: v > 0, "a positive number")
    _float_check("weight_decay", lambda v: v >= 0, "a number >= 0")
    _float_check("clip_norm", lambda v: v >= 0, "a number >= 0 (0: off)")
    _float_check("validation_fraction", lambda v: 0 < v < 1,
                 "a number in (0, 1)")
    _float_check("fusion_init", lambda v: 0 < v < 1, "a number in (0, 1)")
    _float_check("token_dropout", lambda v: 0 <= v < 1, _RATE)
    _float_check("dropout", lambda v: 0 <= v < 1, _RATE)
    _float_check("score_scale", lambda v: v > 0, "a positive number")
    _float_check("margin", lambda v: v >= 0, "a number >= 0")
    _float_check("diversity_weight", lambda v: v >= 0, "a number >= 0")
    _float_check("label_weight", lambda v: v >= 0, "a number >= 0 (0: off)")
    _float_check("branch_weight", lambda v: v >= 0, "a number >= 0 (0: off)")
    if FLAGS["label_weight"].present and FLAGS.label_weight and (
            FLAGS.loss != "hinge"):
        raise CommandLineError(
            "--label_weight is a hinge term; it needs --loss=hinge. "
            f"Received: --loss={FLAGS.loss}"
        )
    _float_check("progress_every_seconds", lambda v: v > 0,
                 "a positive number of seconds")
    preset = dataset_preset(FLAGS.dataset)
    hidden = _value("hidden_dim", preset)
    heads = _value("gpa_heads", preset)
    if hidden % heads:
        raise CommandLineError(
            f"--hidden_dim ({hidden}) must be divisible by --gpa_heads "
            f"({heads})"
        )
    batch = _value("batch_size", preset)
    if FLAGS.cpu_replicas and batch % FLAGS.cpu_replicas:
        raise CommandLineError(
            f"--batch_size ({batch}) must be divisible by --cpu_replicas "
            f"({FLAGS.cpu_replicas}), the number of replicas"
        )
    _check_select_metric()
    check_writable_dir("model_dir", FLAGS.model_dir)
    if FLAGS.data_format in ("lesa", "biam") and FLAGS.dataset == "synthetic":
        raise CommandLineError(
            f"--data_format={FLAGS.data_format} reads the release files of "
            "--dataset=nus_wide or open_images. Received: --dataset=synthetic"
        )
    if FLAGS.data_format in ("lesa", "biam"):
        missing = [f"--{n}" for n in ("train_files", "test_files")
                   if not getattr(FLAGS, n)]
        if missing:
            raise CommandLineError(
                f"--data_format={FLAGS.data_format} needs "
                f"{' and '.join(missing)} (glob patterns of the release's "
                "feature files)"
            )


def _eval_ks():
    return ks_value_checked() or (
        (10, 20) if FLAGS.dataset == "open_images" else (3, 5)
    )


def selected_metric():
    """--select_metric; left at its default, F1 at the benchmark's first K
    (f1@3 for NUS-WIDE, f1@10 for Open Images)."""
    if FLAGS["select_metric"].present:
        return FLAGS.select_metric
    return f"f1@{_eval_ks()[0]}"


def _check_select_metric():
    ks = _eval_ks()
    choices = ["map"] + [f"{m}@{k}" for k in ks for m in ("p", "r", "f1")]
    if selected_metric() not in choices:
        raise CommandLineError(
            f"--select_metric must be one of {', '.join(choices)} (the "
            "validation metrics for --k). Received: "
            f"--select_metric={FLAGS.select_metric}"
        )
