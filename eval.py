"""Evaluates a trained model, a SavedModel or a saved score matrix.

    python eval.py --model_dir=runs/epsilon_synthetic
    python eval.py --saved_model=runs/epsilon_synthetic/export/1
    python eval.py --predictions=scores.npz --k=3,5 --metrics_out=m.json

With `--model_dir` (or a `--saved_model` inside a training directory) the
test data is the run's own, from its `config.json`: dataset, format, files,
label files, word vectors and feature shape; any data flag given on the
command line (`--dataset`, `--data_format`, `--test_files`, ...; those of
train.py) overrides that field. The output says what was evaluated.
Metrics follow docs/design.md §4 (LESA semantics) unless
`--ap_variant=biam_openimages` is given. A mistake in the flags or the data
stops with one `error:` line (`--debug` shows the traceback).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

from epsilon_tf import flags as epsilon_flags  # noqa: E402
from epsilon_tf.cli import common  # noqa: E402
from epsilon_tf.training import run_lock  # noqa: E402
from epsilon_tf.training.run_dir import RunDir  # noqa: E402

PROGRAM = "eval.py"
epsilon_flags.define_data_flags()
epsilon_flags.define_eval_flags()
epsilon_flags.define_cli_flags()
flags.DEFINE_string(
    "model_dir", None, "Training directory (model.keras, label_space/)."
)
flags.DEFINE_string("saved_model", None, "SavedModel version directory.")
flags.DEFINE_string(
    "predictions", None,
    "An .npz with `scores` [images, labels], `labels` (+1/-1/0) and "
    "optionally `unseen_mask` [labels] (bool).",
)
flags.DEFINE_string("metrics_out", None, "Write the metrics JSON here.")
flags.DEFINE_integer("batch_size", 256, "Images per forward pass.")
flags.DEFINE_integer(
    "memory_budget_mb", 2048,
    "Scores beyond this many MB spill to a memory-mapped file.",
)
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_integer(
    "examples", 0,
    "Also draw this many test images like the paper's Figures 4-5 (top-10 "
    "labels, unseen marked *, correct ones green, beside the GPA maps); "
    "needs --model_dir.",
)
flags.DEFINE_string(
    "examples_out", None,
    "Folder of the --examples PNGs (default: MODEL_DIR/examples).",
)
FLAGS = flags.FLAGS
MODES = ("model_dir", "saved_model", "predictions")


def _check_flags():
    """Every flag value, before anything is read or TensorFlow imported."""
    modes = [m for m in MODES if getattr(FLAGS, m)]
    if len(modes) != 1:
        raise common.CommandLineError(
            "Give exactly one of --model_dir, --saved_model, --predictions. "
            f"Received: {', '.join('--' + m for m in modes) or 'none'}"
        )
    mode = modes[0]
    common.check(FLAGS.batch_size >= 1, "batch_size", FLAGS.batch_size,
                 "a positive integer")
    common.check(FLAGS.memory_budget_mb >= 1, "memory_budget_mb",
                 FLAGS.memory_budget_mb, "a positive integer")
    common.check(FLAGS.examples >= 0, "examples", FLAGS.examples,
                 "an integer >= 0")
    if FLAGS.examples and mode != "model_dir":
        raise common.CommandLineError(
            "--examples needs --model_dir: the group-assignment maps come "
            f"from the Keras model, and --{mode} has none"
        )
    path = getattr(FLAGS, mode)
    if mode == "predictions":
        if not os.path.exists(path):
            raise common.CommandLineError(
                f"--predictions: file not found: {path}"
            )
        if os.path.isdir(path):
            raise common.CommandLineError(
                f"--predictions: {path} is a directory, not an .npz file"
            )
    elif not os.path.isdir(path):
        raise common.CommandLineError(
            f"--{mode}: {path} is not a directory"
            + (" (it is a file)" if os.path.exists(path) else " (not found)")
        )
    elif mode == "model_dir" and not os.path.exists(
        RunDir(path).keras_model
    ):
        # Says so when a trainer still works there (issue 24).
        raise common.CommandLineError(run_lock.missing_model_message(path))
    elif mode == "saved_model" and not os.path.exists(
        os.path.join(path, "saved_model.pb")
    ):
        raise common.CommandLineError(
            f"No SavedModel at {path} (expected saved_model.pb; give the "
            "numbered version directory)"
        )
    epsilon_flags.check_data_flags()
    return mode, path


def main(argv):
    with common.clean_exit(PROGRAM):
        common.refuse_arguments(argv)
        mode, path = _check_flags()
        if FLAGS.debug:
            common.prepare(["--debug"])
        if mode != "predictions":  # a score matrix needs no TensorFlow
            common.prepare()
        from epsilon_tf.cli.evaluate import run_data_config, run_evaluation
        from epsilon_tf.cli.own_data import check_word_vectors_flag

        data_config = None
        if mode != "predictions":
            given = epsilon_flags.given_data_fields()
            data_config = run_data_config(
                mode, path, epsilon_flags.data_config(), given
            )
            # Not silently ignored (issue 23): refused when unused.
            check_word_vectors_flag(data_config, given)
        run_evaluation(
            mode=mode,
            path=path,
            data_config=data_config,
            ks=epsilon_flags.ks_value(),
            variant=FLAGS.ap_variant,
            metrics_out=FLAGS.metrics_out,
            batch_size=FLAGS.batch_size,
            memory_budget_bytes=FLAGS.memory_budget_mb * 2**20,
            progress=FLAGS.progress,
            examples=FLAGS.examples,
            examples_out=FLAGS.examples_out,
        )


def run_main():
    app.run(main, flags_parser=common.absl_flags_parser(PROGRAM))


if __name__ == "__main__":
    run_main()
