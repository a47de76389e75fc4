"""Trained runs in parallel worker processes (`--jobs`).

One small model's train step keeps about 1.2 of two CPU cores busy
(TensorFlow's intra-op parallelism has little to split in 64 x 56 x 128
products), so two single-threaded runs side by side finish about 1.45x
sooner than the same runs one after the other (BUILD_NOTES, "Experiments
command"). Each worker is a fresh *spawned* process (TensorFlow must not
be forked) that builds the data source and the sweep's jobs once
(`sweep.SweepJobs`), then trains the runs it is handed with `threads_per_job`
threads (`sweep.train_run`, as the runner does in its own process). The
runner imports this module, never the other way round.

A worker ignores Ctrl-C: the parent stops the workers and reports; a run
cut short resumes from its checkpoints on the next invocation.
"""

import os
import signal

from epsilon_tf.cli import common

# At most this many parallel runs by default (each worker holds its own
# TensorFlow runtime, input pipeline and model).
MAX_AUTO_JOBS = 4

_SOURCE = _SWEEP = _TRAIN_RUN = None


def usable_cores():
    """CPU cores this process may run on (its affinity mask, where known)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def job_layout(jobs, cores=None):
    """`(jobs, threads_per_job)` for `--jobs` (0: one per core, at most
    `MAX_AUTO_JOBS`)."""
    cores = cores or usable_cores()
    if jobs == 0:
        jobs = max(1, min(cores, MAX_AUTO_JOBS))
    return jobs, max(1, cores // jobs)


def set_threads(threads):
    """TensorFlow's op thread pools (before its runtime starts)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def init(options, threads):
    """Worker initializer: quiet TensorFlow, its threads, the source and
    the sweep."""
    global _SOURCE, _SWEEP, _TRAIN_RUN
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    common.import_tensorflow_quietly()
    set_threads(threads)
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    # Imports TensorFlow: only after the quiet import above.
    from epsilon_tf.experiments import sweep

    _SOURCE = sweep.experiment_source(options)
    _SWEEP = sweep.SweepJobs(options, _SOURCE)
    _TRAIN_RUN = sweep.train_run


def train(key, seed):
    """Trains run `key` with `seed` in this worker; returns its result."""
    return _TRAIN_RUN(_SWEEP.job(key, seed), _SOURCE)
