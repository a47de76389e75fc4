"""Evaluates a trained model, a SavedModel or a saved score matrix.

    python eval.py --model_dir=runs/epsilon_synthetic
    python eval.py --saved_model=runs/epsilon_synthetic/export/1
    python eval.py --predictions=scores.npz --k=3,5 --metrics_out=m.json

The dataset flags (`--dataset`, `--data_format`, ...) are those of
train.py. Metrics follow DESIGN §4 (LESA semantics) unless
`--ap_variant=biam_openimages` is given.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from epsilon_tf import flags as epsilon_flags  # noqa: E402

epsilon_flags.define_data_flags()
epsilon_flags.define_eval_flags()
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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from epsilon_tf.cli.evaluate import run_evaluation

    modes = [
        m for m in ("model_dir", "saved_model", "predictions")
        if getattr(FLAGS, m)
    ]
    if len(modes) != 1:
        raise app.UsageError(
            "Give exactly one of --model_dir, --saved_model, --predictions. "
            f"Received: {modes or 'none'}"
        )
    if FLAGS.examples < 0:
        raise app.UsageError(
            f"--examples must be >= 0. Received: {FLAGS.examples}"
        )
    if FLAGS.examples and modes[0] != "model_dir":
        raise app.UsageError(
            "--examples needs --model_dir: the group-assignment maps come "
            f"from the Keras model, and --{modes[0]} has none"
        )
    from epsilon_tf.training.guards import clean_exit

    mode = modes[0]
    # NaN/Inf features: one clear message naming the record, exit status 1.
    with clean_exit("eval.py"):
        run_evaluation(
            mode=mode,
            path=getattr(FLAGS, mode),
            data_config=(
                None if mode == "predictions"
                else epsilon_flags.data_config()
            ),
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
    app.run(main)


if __name__ == "__main__":
    run_main()
