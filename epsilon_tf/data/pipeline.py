"""The `tf.data` input pipeline: split carving, shuffle, batch, prefetch.

The top of `epsilon_tf.data`: it consumes the readers' `SplitReader`s
(`base`) and turns the errors of their checks into `InputDataError`s
(`input_errors`); the machinery those checks share with it
(`records.checks`) lies below the readers, so no reader imports this
module.
"""

import contextlib
import re

import tensorflow as tf

from epsilon_tf import _validation as check
from epsilon_tf.data.records.checks import (
    NON_FINITE_MESSAGE,
    checked_map,
    take_data_error,
)
from epsilon_tf.errors import InputDataError

AUTOTUNE = tf.data.AUTOTUNE
_HASH_BUCKETS = 10_000
INPUT_SHARDING = ("files", "batches")
# How the readers' in-graph checks start their messages (`tf.debugging.
# Assert` wraps them as "assertion failed: [<message>]").
DATA_MESSAGE_STARTS = (
    NON_FINITE_MESSAGE,
    "Bad record in ",
    "Corrupt or truncated record file ",
    "Record file ",
)
_ASSERT_RE = re.compile(r"assertion failed: \[(.*?)\](?=\s*(?:\n|\[\[|$))",
                        re.S)
_NON_FINITE_RE = re.compile(
    re.escape(NON_FINITE_MESSAGE) + r"[^\]\n]*must be finite"
)


def input_data_error(error):
    """The `InputDataError` hidden in a TensorFlow error, or None.

    The readers' checks fail inside the `tf.data` graph, so the error
    reaches Python as a `tf.errors.OpError` whose message is buried in
    graph details; this pulls out the one line that matters.
    """
    text = getattr(error, "message", None) or str(error)
    remembered = take_data_error()
    # Only when this error carries it (a stale one from an error caught
    # elsewhere is dropped).
    if remembered is not None and remembered[:200] in " ".join(text.split()):
        return InputDataError(remembered)
    for match in _ASSERT_RE.finditer(text):
        candidate = " ".join(match.group(1).split())
        if candidate.startswith(DATA_MESSAGE_STARTS):
            return InputDataError(candidate)
    match = _NON_FINITE_RE.search(text)
    return InputDataError(match.group(0)) if match else None


@contextlib.contextmanager
def input_errors():
    """Re-raises a failed reader check as a plain `InputDataError`.

    Example:

    >>> with input_errors():
    ...     for batch in make_dataset(split, 32):
    ...         ...
    """
    try:
        yield
    except tf.errors.OpError as e:
        clear = input_data_error(e)
        if clear is None:
            raise
        raise clear from None


def in_validation(image_id, validation_fraction):
    """True for the images held out for validation (a hash of the id).

    The same image always lands on the same side, whatever the file order,
    sharding or number of epochs.
    """
    bucket = tf.strings.to_hash_bucket_fast(image_id, _HASH_BUCKETS)
    return bucket < int(round(validation_fraction * _HASH_BUCKETS))


def check_features(example, index=None):
    """Fails with a clear message when an example's features are not finite.

    The message names the image id (and the record's position in the
    split's input stream when `index` is given). It reaches Python as a
    `tf.errors.InvalidArgumentError`; `input_errors()` turns it into an
    `InputDataError` carrying just that message.
    """
    finite = tf.reduce_all(tf.math.is_finite(example["features"]))
    image_id = example["image_id"]
    where = (
        tf.strings.join(
            ["record ", tf.strings.as_string(index), " (image_id ",
             image_id, ")"]
        )
        if index is not None
        else tf.strings.join(["image_id ", image_id])
    )
    message = tf.strings.join(
        [
            NON_FINITE_MESSAGE + " ",
            where,
            "; the features must be finite",
        ]
    )
    with tf.control_dependencies(
        [tf.debugging.Assert(finite, [message], summarize=1)]
    ):
        return {k: tf.identity(v) for k, v in example.items()}


def carve(dataset, subset, validation_fraction):
    """Keeps the "train" or "validation" part of a training split."""
    if subset not in ("train", "validation"):
        raise ValueError(
            "`subset` must be 'train' or 'validation'. "
            f"Received: subset={subset!r}"
        )
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            "`validation_fraction` must be in (0, 1). "
            f"Received: validation_fraction={validation_fraction}"
        )
    keep_validation = subset == "validation"
    return dataset.filter(
        lambda ex: tf.equal(
            in_validation(ex["image_id"], validation_fraction),
            keep_validation,
        )
    )


def make_dataset(
    split_reader,
    batch_size,
    subset=None,
    validation_fraction=0.1,
    shuffle_seed=None,
    shuffle_buffer=1024,
    input_context=None,
    drop_remainder=False,
    check_finite=True,
    input_sharding="files",
):
    """A batched dataset of `(features, labels)` pairs plus image ids.

    Args:
        split_reader: `SplitReader`.
        batch_size: int. Per-pipeline batch size.
        subset: None (the whole split), "train" or "validation" (carved
            from a training split by image-id hash).
        validation_fraction: float. Share of the training split held out.
        shuffle_seed: int or None. Shuffles files and examples when given.
            Pass a different seed each epoch for a new order; the same seed
            gives the same order (what exact resume relies on).
        shuffle_buffer: int. Examples in the shuffle buffer.
        input_context: `tf.distribute.InputContext` or None. With several
            input pipelines (workers), each gets its share of the data, as
            `input_sharding` says.
        drop_remainder: bool. Drop the last partial batch.
        check_finite: bool. Fail on NaN/Inf features, naming the record.
        input_sharding: str. How several input pipelines share the data.
            "files" (default): each reads a disjoint part of the split
            (its files; for in-memory arrays, every n-th example) and
            shuffles it, so nobody reads anything twice. "batches": every
            pipeline reads and shuffles the whole split in the same order,
            cuts it into per-replica batches of `batch_size` and keeps the
            ones of its own replicas, so the examples of one global step
            are exactly those of a single-device run (costs one full read
            of the split per pipeline; needs `drop_remainder=True`).

    Returns:
        A `tf.data.Dataset` of dicts with `image_id` [b], `features`
        [b, N, C] and `labels` [b, K].
    """
    check.positive_int("batch_size", batch_size)
    if input_sharding not in INPUT_SHARDING:
        raise ValueError(
            f"`input_sharding` must be one of {INPUT_SHARDING}. "
            f"Received: input_sharding={input_sharding!r}"
        )
    by_batch = (
        input_sharding == "batches"
        and input_context is not None
        and input_context.num_input_pipelines > 1
    )
    if by_batch and not drop_remainder:
        raise ValueError(
            "input_sharding='batches' needs `drop_remainder=True` (every "
            "pipeline must cut the same batches)"
        )
    ds = split_reader.dataset(
        files_seed=shuffle_seed,
        input_context=None if by_batch else input_context,
    )
    if check_finite:
        # Before carving, so the index is the position in the split's stream.
        ds = checked_map(ds.enumerate(), lambda i, ex: check_features(ex, i))
    if subset is not None:
        ds = carve(ds, subset, validation_fraction)
    if shuffle_seed is not None:
        ds = ds.shuffle(
            shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False
        )
    ds = ds.batch(
        batch_size,
        drop_remainder=drop_remainder,
        num_parallel_calls=AUTOTUNE,
    )
    if by_batch:
        ds = _keep_own_batches(ds, input_context)
    return ds.prefetch(AUTOTUNE)


def _keep_own_batches(ds, input_context):
    """Keeps the per-replica batches of this pipeline's replicas.

    Batch i of the common stream belongs to replica `i % R` (R replicas in
    sync); pipeline p owns replicas `p * R / P ... (p + 1) * R / P - 1`.
    """
    replicas = input_context.num_replicas_in_sync
    pipelines = input_context.num_input_pipelines
    if replicas % pipelines:
        raise ValueError(
            f"input_sharding='batches' needs the replicas ({replicas}) to "
            f"be divisible by the input pipelines ({pipelines})"
        )
    per_pipeline = replicas // pipelines
    own = input_context.input_pipeline_id
    return (
        ds.enumerate()
        .filter(lambda i, _: (i % replicas) // per_pipeline == own)
        .map(lambda _, batch: batch)
    )
