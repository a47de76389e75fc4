"""Trains Epsilon, selects the best epoch, evaluates ZSL/GZSL and exports.

With no flags it runs on the built-in synthetic benchmark:

    python train.py                       # -> runs/epsilon_synthetic/
    python train.py --flagfile=my.flags   # any flag from a file

See `python train.py --helpfull` and README.md for the real benchmarks.
A mistake in the flags or the data stops the run with one `error:` line
(`--debug` or EPSILON_TRACEBACK=1 shows the traceback; EPSILON_TF_LOGS=1
shows TensorFlow's own logs).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402

from epsilon_tf import flags as epsilon_flags  # noqa: E402
from epsilon_tf.cli import common  # noqa: E402

PROGRAM = "train.py"
epsilon_flags.define_train_flags()
FLAGS = epsilon_flags.FLAGS


def main(argv):
    with common.clean_exit(PROGRAM):
        common.refuse_arguments(argv)
        if epsilon_flags.print_config():  # --print_config: no training
            return
        # Every flag value, before anything is read, written or imported.
        epsilon_flags.check_train_flags()
        common.prepare(["--debug"] if FLAGS.debug else [])
        run()


def run():
    import dataclasses

    from absl import logging

    # TensorFlow logs an INFO line at every checkpoint save through absl.
    logging.set_verbosity(logging.WARNING)

    from epsilon_tf.training.strategy import configure_cpu_replicas

    # Before anything runs a TensorFlow op (device setup is fixed after).
    configure_cpu_replicas(FLAGS.cpu_replicas)

    from epsilon_tf.data.sources import make_source
    from epsilon_tf.data.training_checks import check_before_training
    from epsilon_tf.export import export_saved_model
    from epsilon_tf.training.run import train_and_evaluate

    model_cfg, loss_cfg, train_cfg, data_cfg = epsilon_flags.train_configs()
    source = make_source(data_cfg, progress=bool(train_cfg.verbose))
    ks = epsilon_flags.ks_value()
    if ks:
        source = dataclasses.replace(source, eval_ks=ks)
    # K against each evaluated block, the training split's labels: now,
    # not after training (issue 23).
    check_before_training(source, bool(ks), data_cfg.data_dir)

    def export(trainer):
        return export_saved_model(
            trainer.model,
            source.label_space,
            trainer.run_dir.export,
            top_k=train_cfg.export_top_k,
            precision=train_cfg.export_precision,
        )

    train_and_evaluate(
        model_cfg,
        loss_cfg,
        train_cfg,
        source,
        variant=FLAGS.ap_variant,
        baseline=FLAGS.baseline,
        export_fn=export,
        data_config=data_cfg,
    )


def run_main():
    app.run(main, flags_parser=common.absl_flags_parser(PROGRAM))


if __name__ == "__main__":
    run_main()
