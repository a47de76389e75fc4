"""Reads splits of the native sharded TFRecord format (`native_format`).

The reader is built on `records.stream` (the machinery it shares with
`lesa_tfrecord`): framing errors and bad records name their file and
record index, and a shard shorter than its sidecar says is named at once.
"""

import math
import os

import tensorflow as tf

from epsilon_tf.data.base import DatasetSource, SplitReader, shard_files
from epsilon_tf.data.readers.native_format import (
    FEATURE_DTYPES,
    FORMAT,
    find_native_splits,
    read_native_metadata,
    sidecar_path,
)
from epsilon_tf.data.records.checks import checked_map
from epsilon_tf.data.records.stream import (
    SkipReport,
    apply_record_checks,
    assert_finite_features,
    byte_length_check,
    check_stream_end,
    decode_fixed,
    finish_examples,
    no_autograph,
    present_check,
    record_stream,
)


def native_split(directory, split, skip_corrupt=False, skip_report=None):
    """A `SplitReader` over a split written by `NativeWriter`.

    The sidecar is read and every shard is checked to exist with its
    recorded size, so a missing or truncated shard is reported at once.
    Shards are read with `tf.data.TFRecordDataset`, interleaved
    deterministically, and decoded in a parallel map; a record whose bytes
    do not match the sidecar (wrong length, missing key), or a shard whose
    record stream ends early (corrupt data), raises an error naming the
    file, the record index and what was expected.

    Args:
        directory: str. The folder holding `{split}.json` and its shards.
        split: str. Split name.
        skip_corrupt: bool. Skip (log and count) bad records and the
            unreadable rest of corrupt shards instead of raising. Defaults
            to False.
        skip_report: `SkipReport` or None. Collects the skip counts; a new
            one is made when None (reachable as `reader.skip_report`).

    Returns:
        `SplitReader` whose examples are `{"image_id", "features" float32
        [N, C], "labels" float32 [num_labels]}`.

    Example:

    >>> reader = native_split("/tmp/feats", "train")
    >>> batch = next(iter(reader.dataset(files_seed=0).batch(32)))
    """
    directory = os.fspath(directory)
    meta = read_native_metadata(directory, split)
    shape = tuple(int(d) for d in meta["feature_shape"])
    np_dtype = FEATURE_DTYPES[meta["feature_dtype"]]
    tf_dtype = tf.float16 if meta["feature_dtype"] == "float16" else tf.float32
    feature_bytes = math.prod(shape) * np_dtype.itemsize
    num_labels = int(meta["num_labels"])
    compression = meta["compression"] or ""
    path = sidecar_path(directory, split)

    files = []
    expected = {}
    for shard in meta["shards"]:
        file = os.path.join(directory, shard["file"])
        if not tf.io.gfile.exists(file):
            raise FileNotFoundError(f"Shard {file} listed in {path} is missing")
        size = int(tf.io.gfile.stat(file).length)
        if "file_bytes" in shard and size != int(shard["file_bytes"]):
            raise ValueError(
                f"Shard {file} has {size} bytes but {path} records "
                f"{shard['file_bytes']} bytes: the file is truncated or "
                "was changed after it was written"
            )
        files.append(file)
        expected[file] = (
            int(shard.get("record_bytes", -1)),
            int(shard["num_examples"]),
        )

    def expectation(file, comp):
        exp_bytes, exp_records = expected.get(file, (-1, -1))
        return exp_bytes, exp_records, ""

    report = skip_report if skip_report is not None else SkipReport()
    spec = {
        k: tf.io.FixedLenFeature([], tf.string, default_value="")
        for k in ("image_id", "features", "labels")
    }
    dtype_name = meta["feature_dtype"]

    @no_autograph
    def parse(elem):
        parsed = tf.io.parse_single_example(elem["record"], spec)
        checks = [
            present_check(elem, parsed["image_id"], "image_id", "an image id"),
            byte_length_check(
                elem,
                parsed["features"],
                "features",
                feature_bytes,
                f"{shape[0]}x{shape[1]} {dtype_name}",
            ),
            byte_length_check(
                elem,
                parsed["labels"],
                "labels",
                num_labels,
                f"{num_labels} int8 labels",
            ),
        ]
        keep, deps = apply_record_checks(elem, checks, skip_corrupt, report)
        with tf.control_dependencies(deps):
            features = decode_fixed(
                parsed["features"], tf_dtype, feature_bytes, shape
            )
            labels = decode_fixed(
                parsed["labels"], tf.int8, num_labels, [num_labels]
            )
            example = {
                "image_id": tf.identity(parsed["image_id"]),
                "features": assert_finite_features(
                    elem, tf.cast(features, tf.float32), parsed["image_id"],
                    keep,
                ),
                "labels": tf.cast(labels, tf.float32),
            }
        return (example, keep) if skip_corrupt else example

    hint = (
        "Rewrite the split, or read it with skip_corrupt=True."
        if not skip_corrupt
        else ""
    )

    def make_dataset(files_seed=None, input_context=None):
        files_ds = shard_files(files, files_seed, input_context)
        stream = record_stream(files_ds, compression, len(files))
        stream = check_stream_end(
            stream, expectation, skip_corrupt, report, hint, compression
        )
        ds = checked_map(stream, parse)
        return finish_examples(ds, skip_corrupt)

    return SplitReader(
        name=split,
        label_set=meta["label_set"],
        make_dataset=make_dataset,
        num_examples=int(meta["num_examples"]),
        files=tuple(files),
        skip_report=report,
        metadata=meta,
    )


def _check_label_names(path, meta, label_space):
    if meta["label_set"] == "seen":
        want = [label_space.names[i] for i in label_space.seen]
    else:
        want = list(label_space.names)
    if meta["num_labels"] != len(want):
        raise ValueError(
            f"{path}: the split stores {meta['num_labels']} "
            f"{meta['label_set']} labels but the label space has "
            f"{len(want)}"
        )
    names = meta.get("label_names")
    if names is not None and list(names) != want:
        i = next(
            k
            for k, (a, b) in enumerate(zip(names, want, strict=True))
            if a != b
        )
        raise ValueError(
            f"{path}: label column {i} is {names[i]!r} but the label space "
            f"has {want[i]!r} there ({meta['label_set']} labels); the split "
            "was written for a different label space or order"
        )


def native_source(directory, label_space, eval_ks=(3, 5), name="native"):
    """A `DatasetSource` over every native split in `directory`.

    Args:
        directory: str. Folder holding `{split}.json` sidecars and shards.
        label_space: `LabelSpace`. Checked against the stored label names
            (per split: its seen labels for `label_set="seen"`, all labels
            for "all").
        eval_ks: tuple of int. K values of P/R/F1@K. Defaults to (3, 5).
        name: str. Dataset name. Defaults to "native".

    Returns:
        `DatasetSource`.

    Example:

    >>> source = native_source("/tmp/feats", space, eval_ks=(3, 5))
    >>> source.split("test").label_set
    'all'
    """
    directory = os.fspath(directory)
    split_names = find_native_splits(directory)
    if not split_names:
        raise FileNotFoundError(
            f"No native splits (*.json sidecars with format {FORMAT!r}) "
            f"in {directory}"
        )
    splits = {}
    shapes = {}
    for split in split_names:
        reader = native_split(directory, split)
        _check_label_names(
            sidecar_path(directory, split), reader.metadata, label_space
        )
        splits[split] = reader
        shapes[split] = tuple(reader.metadata["feature_shape"])
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"Native splits in {directory} have different feature shapes: "
            f"{shapes}"
        )
    return DatasetSource(
        name=name,
        label_space=label_space,
        feature_shape=next(iter(shapes.values())),
        splits=splits,
        eval_ks=tuple(eval_ks),
    )
