"""`tf.distribute` strategies by name.

See docs/training.md for the global-batch semantics, input sharding and
how to launch several workers with `TF_CONFIG`.
"""

import json
import os

import tensorflow as tf

from epsilon_tf import _validation as check

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(name, tpu_address=None):
    """Returns the `tf.distribute.Strategy` called `name`.

    Args:
        name: str. "default" (one device), "mirrored" (all local GPUs, or
            all logical CPU devices when no GPU is present),
            "multi_worker" (`MultiWorkerMirroredStrategy`, configured by
            the `TF_CONFIG` environment variable) or "tpu".
        tpu_address: str or None. TPU name/address for "tpu".
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {STRATEGIES}. Received: "
            f"strategy={name!r}"
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        return tf.distribute.MirroredStrategy(
            devices=devices,
            cross_device_ops=tf.distribute.ReductionToOneDevice(),
        )
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "strategy=multi_worker needs the TF_CONFIG environment "
                "variable (cluster spec and this worker's task); see README"
            )
        json.loads(os.environ["TF_CONFIG"])  # fail early on bad JSON
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=tpu_address or ""
    )
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def configure_cpu_replicas(count):
    """Splits the first CPU into `count` logical devices.

    `--strategy=mirrored` then has `count` replicas on a machine without
    GPUs (tests, trying the distributed path on a laptop). Must run before
    TensorFlow initializes its devices (before any op runs).

    Args:
        count: int. Logical CPU devices; 0 or 1 leaves the CPU as it is.
    """
    check.non_negative_int("cpu_replicas", count)
    if count <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError as e:
        raise RuntimeError(
            "`cpu_replicas` must be set before TensorFlow initializes its "
            f"devices ({e})"
        ) from e


def is_chief(strategy):
    """True on the worker that writes summaries, metrics and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def worker_id(strategy):
    """This worker's task index (0 without a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return getattr(resolver, "task_id", 0) or 0


def worker_count(strategy):
    """The number of worker processes of `strategy`'s cluster (1 without
    one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 1
    spec = resolver.cluster_spec().as_dict()
    return sum(len(spec.get(kind, ())) for kind in ("chief", "worker")) or 1
