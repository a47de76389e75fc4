"""The `tf.data` input pipeline: split carving, shuffle, batch, prefetch."""

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
_HASH_BUCKETS = 10_000


def in_validation(image_id, validation_fraction):
    """True for the images held out for validation (a hash of the id).

    The same image always lands on the same side, whatever the file order,
    sharding or number of epochs.
    """
    bucket = tf.strings.to_hash_bucket_fast(image_id, _HASH_BUCKETS)
    return bucket < int(round(validation_fraction * _HASH_BUCKETS))


def check_features(example, index=None):
    """Fails with a clear message when an example's features are not finite.

    The message names the image id (and the record index when given).
    """
    finite = tf.reduce_all(tf.math.is_finite(example["features"]))
    where = (
        tf.strings.format("record {} (image_id {})", (index, example["image_id"]))
        if index is not None
        else tf.strings.format("image_id {}", example["image_id"])
    )
    message = tf.strings.join(
        ["NaN or Inf in the features of ", where,
         "; the features must be finite"]
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
    shuffle_buffer=4096,
    input_context=None,
    drop_remainder=False,
    check_finite=True,
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
        input_context: `tf.distribute.InputContext` or None.
        drop_remainder: bool. Drop the last partial batch.
        check_finite: bool. Fail on NaN/Inf features, naming the record.

    Returns:
        A `tf.data.Dataset` of dicts with `image_id` [b], `features`
        [b, N, C] and `labels` [b, K].
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            "`batch_size` must be a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    ds = split_reader.dataset(
        files_seed=shuffle_seed, input_context=input_context
    )
    if subset is not None:
        ds = carve(ds, subset, validation_fraction)
    if check_finite:
        ds = ds.enumerate().map(
            lambda i, ex: check_features(ex, i), num_parallel_calls=AUTOTUNE
        )
    if shuffle_seed is not None:
        ds = ds.shuffle(
            shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False
        )
    ds = ds.batch(
        batch_size, drop_remainder=drop_remainder,
        num_parallel_calls=AUTOTUNE,
    )
    return ds.prefetch(AUTOTUNE)
