"""Runs the experiments and writes tables and figures.

    python -m epsilon_tf.experiments --output_dir=runs/experiments
    python -m epsilon_tf.experiments --output_dir=DIR --quick   # minutes
    python -m epsilon_tf.experiments --output_dir=DIR --dataset=nus_wide \\
        --data_format=lesa --train_files=... --test_files=... \\
        --label_dir=... --word_vectors=...

The data flags are train.py's. A rerun with the same --output_dir skips
the finished runs and resumes an interrupted one from its checkpoints.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, logging  # noqa: E402

from epsilon_tf import flags as epsilon_flags  # noqa: E402

epsilon_flags.define_experiment_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import dataclasses

    logging.set_verbosity(logging.WARNING)
    options = epsilon_flags.experiment_options()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("error: the experiments draw their figures with matplotlib; "
              "install it (pip install -e .)", file=sys.stderr)
        sys.exit(1)
    from epsilon_tf.data.sources import make_source
    from epsilon_tf.experiments.runner import Experiments
    from epsilon_tf.training.guards import clean_exit

    with clean_exit("experiments"):
        source = make_source(options["data"], progress=bool(
            options["verbose"]))
        if options["ks"]:
            source = dataclasses.replace(source, eval_ks=options["ks"])
        os.makedirs(options["output_dir"], exist_ok=True)
        log = print if options["verbose"] else (lambda *a: None)
        experiments = Experiments(options, source, log=lambda *a: log(
            *a, flush=True))
        result = experiments.run_all()
        log(f"Wrote {os.path.join(options['output_dir'], 'results.md')} "
            f"({result['timings_seconds']})", flush=True)


if __name__ == "__main__":
    app.run(main)
