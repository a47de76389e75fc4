"""The command line of `python -m epsilon_tf.experiments`.

Its data flags (`--dataset`, `--data_format`, the files, `--k`,
`--ap_variant`) are train.py's, generated from the same config fields
(`epsilon_tf.flags`); the options here are the sweep's own.
"""

from epsilon_tf import flags as epsilon_flags
from epsilon_tf.config import presets
from epsilon_tf.errors import CommandLineError

FLAGS = epsilon_flags.FLAGS

_OPTIONS = [
    (str, "output_dir", None, "Where runs, results and figures are written."),
    (str, "seeds", "0,1,2", "Seeds of every trained method."),
    (int, "epochs", None,
     f"Epochs of every method (default: {presets.EXPERIMENT_EPOCHS}, "
     "or more where the dataset's preset sets a minimum of optimizer "
     f"steps; --quick: {presets.QUICK_EPOCHS})."),
    (int, "batch_size", None, "Batch size of every method (default: 64)."),
    (int, "steps_per_epoch", None,
     "Steps per epoch of every method (default: one pass; --quick: "
     f"{presets.QUICK_STEPS})."),
    (str, "prompts", "1,3,5,7,9", "Figure 3: numbers of group prompts."),
    (str, "regularizer_weights", "0,0.01,0.1,1",
     "Figure 3: prompt-diversity regularizer weights."),
    (int, "figure_images", 4, "Figure 1: fixed test images shown."),
    (bool, "quick", False,
     "A tiny budget, tiny models and short Figure 3 sweeps (G = 1, 7; "
     "lambda = 0, 0.1): a smoke run for CI, minutes."),
    (int, "jobs", 0,
     "Runs trained at the same time, each in its own process with an "
     "equal share of the CPU cores (0: one per core, at most 4; 1: one "
     "at a time in this process)."),
    (int, "verbose", 1, "0: quiet, 1: a line per run."),
]


def define_flags():
    """Flags of `python -m epsilon_tf.experiments` (plus the data flags)."""
    epsilon_flags.define_data_flags()
    epsilon_flags.define_eval_flags()
    epsilon_flags.define_options(_OPTIONS)
    epsilon_flags.define_cli_flags()


def _numbers(name, cast):
    text = getattr(FLAGS, name)
    try:
        values = tuple(cast(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values:
        raise CommandLineError(
            f"--{name} must be comma-separated numbers. Received: {text!r}"
        )
    return values


def _sweep(name, cast):
    """--name, or under --quick (unless given) the quick preset's."""
    if FLAGS.quick and not FLAGS[name].present:
        return presets.QUICK_SWEEPS[name]
    return _numbers(name, cast)


def options():
    """The experiment flags as a dict of plain values."""
    if not FLAGS.output_dir:
        raise CommandLineError("--output_dir is required")
    for name in ("epochs", "batch_size", "steps_per_epoch", "figure_images"):
        value = getattr(FLAGS, name)
        if value is not None and value < 1:
            raise CommandLineError(
                f"--{name} must be a positive integer. Received: {value}"
            )
    if FLAGS.jobs < 0:
        raise CommandLineError(
            f"--jobs must be 0 (one per core) or a positive integer. "
            f"Received: {FLAGS.jobs}"
        )
    return {
        "data": epsilon_flags.data_config(),
        "ks": epsilon_flags.ks_value(),
        "variant": FLAGS.ap_variant,
        "output_dir": FLAGS.output_dir,
        "seeds": _numbers("seeds", int),
        "epochs": FLAGS.epochs,
        "batch_size": FLAGS.batch_size,
        "steps_per_epoch": FLAGS.steps_per_epoch,
        "prompts": _sweep("prompts", int),
        "regularizer_weights": _sweep("regularizer_weights", float),
        "figure_images": FLAGS.figure_images,
        "quick": FLAGS.quick,
        "jobs": FLAGS.jobs,
        "verbose": FLAGS.verbose,
    }
