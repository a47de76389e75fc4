"""Runs the experiments and writes tables and figures.

    python -m epsilon_tf.experiments --output_dir=runs/experiments
    python -m epsilon_tf.experiments --output_dir=DIR --quick   # minutes
    python -m epsilon_tf.experiments --output_dir=DIR --dataset=nus_wide \\
        --data_format=lesa --train_files=... --test_files=... \\
        --label_dir=... --word_vectors=...

The data flags are train.py's (`--dataset` names any member of the
family of worlds). A rerun with the same --output_dir skips the finished
runs and resumes an interrupted one from its checkpoints. The summary
(Epsilon / best other method per column) is printed at the end and
written to summary.md / summary.json; `python -m
epsilon_tf.experiments.summary DIR [DIR ...]` combines several.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402

from epsilon_tf.cli import common  # noqa: E402
from epsilon_tf.experiments import cli  # noqa: E402
from epsilon_tf.experiments.summary import summary_markdown  # noqa: E402
from epsilon_tf.training.run_lock import RunLock  # noqa: E402

PROGRAM = "python -m epsilon_tf.experiments"
cli.define_flags()


def main(argv):
    with common.clean_exit(PROGRAM):
        common.refuse_arguments(argv)
        options = cli.options()
        # TensorFlow's C++ start-up lines stay hidden (as in train.py).
        common.prepare(["--debug"] if cli.FLAGS.debug else [])
        _run(options)


def _run(options):
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise common.CommandLineError(
            "the experiments draw their figures with matplotlib; install "
            "it (pip install -e .)") from None
    from epsilon_tf.experiments.runner import Experiments, experiment_source

    source = experiment_source(options, progress=bool(options["verbose"]))
    os.makedirs(options["output_dir"], exist_ok=True)
    log = print if options["verbose"] else (lambda *a: None)
    experiments = Experiments(options, source, log=lambda *a: log(
        *a, flush=True))
    # (issue 24) One experiments job per --output_dir.
    with RunLock(options["output_dir"], "running the experiments"):
        result = experiments.run_all()
    log(f"Wrote {os.path.join(options['output_dir'], 'results.md')} "
        f"({result['timings_seconds']})", flush=True)
    # The summary: Epsilon against its best peer, per column.
    log(summary_markdown(experiments.summary), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=common.absl_flags_parser(PROGRAM))
