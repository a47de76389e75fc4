"""The experiments' trained runs in one process, with or without the
in-memory splits (`epsilon_tf.data.memory_cache`).

Trains the named runs of `python -m epsilon_tf.experiments` one after the
other in this process, as one worker does (seed `--seed`, the default
budget on the built-in world, `--threads` TensorFlow threads), and prints
each run's wall time, the CPU time it used and its test mAPs. The first
run pays the reads that later runs are served from memory. Start two of
these at once, one with `--no_cache`, for the side-by-side figures of
BUILD_NOTES.md ("Experiments"); the mAPs must agree to the last digit.
Not a test.

    python -m benchmarks.bench_experiment_runs --output_dir=runs/cache_on &
    python -m benchmarks.bench_experiment_runs --output_dir=runs/cache_off \\
        --no_cache

Other arguments go to the experiments' own flags (the data flags of
train.py, e.g. `--data_format=native --data_dir=...`).
"""

import argparse
import os
import shutil
import time

from benchmarks.common import machine_line, quiet_tensorflow


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="lesa,epsilon_gfp,epsilon,biam",
                        help="Run keys of the experiments' plan.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output_dir", required=True,
                        help="Emptied first.")
    parser.add_argument("--no_cache", action="store_true",
                        help="Read every split from its files each time.")
    parser.add_argument("--steps_per_epoch", type=int, default=None,
                        help="Fewer steps (smoke runs).")
    args, experiment_flags = parser.parse_known_args(argv)
    quiet_tensorflow()

    from absl import flags as absl_flags

    from epsilon_tf.data import memory_cache
    from epsilon_tf.experiments import cli, workers
    from epsilon_tf.experiments.runner import Experiments, experiment_source

    workers.set_threads(args.threads)
    cli.define_flags()
    extra = ([f"--steps_per_epoch={args.steps_per_epoch}"]
             if args.steps_per_epoch else [])
    absl_flags.FLAGS(["bench", f"--output_dir={args.output_dir}",
                      f"--seeds={args.seed}", *extra, *experiment_flags])
    options = cli.options()
    if args.no_cache:
        memory_cache.cache_in_memory = lambda source, max_bytes=0: source
    shutil.rmtree(args.output_dir, ignore_errors=True)
    os.makedirs(args.output_dir)
    experiments = Experiments(options, experiment_source(options),
                              log=lambda *a: None)
    import tensorflow as tf

    print(machine_line(tf))
    print(f"cache: {'off' if args.no_cache else 'on'}, "
          f"{args.threads} thread(s), seed {args.seed}", flush=True)
    plan = {run.key: run for run in experiments.runs}
    for key in args.runs.split(","):
        start, cpu = time.time(), time.process_time()
        result = experiments.train(plan[key], args.seed)
        print(f"{key:24s} {time.time() - start:7.1f} s (CPU "
              f"{time.process_time() - cpu:6.1f} s)  ZSL mAP "
              f"{result['zsl']['map']!r}  GZSL mAP {result['gzsl']['map']!r}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
