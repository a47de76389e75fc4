"""The project's own sharded, self-describing TFRecord format.

A split `name` in `directory` is:

- shards `name-00000.tfrecord`, `name-00001.tfrecord`, ... each a TFRecord
  file (optionally ZLIB/GZIP compressed) of `tf.train.Example`s with three
  bytes features: `image_id` (UTF-8), `features` (the [N, C] feature map as
  raw little-endian float16 or float32) and `labels` (raw int8 values in
  {-1, 0, +1});
- a JSON sidecar `name.json`, written last, describing them:

      {"format": "epsilon_tf.native/1", "split": "train",
       "feature_shape": [196, 512], "feature_dtype": "float16",
       "label_set": "seen", "num_labels": 925, "label_names": [...],
       "num_examples": 161789, "compression": "ZLIB",
       "shards": [{"file": "train-00000.tfrecord", "num_examples": 1024,
                   "record_bytes": ..., "file_bytes": ...}, ...]}

`record_bytes` is the length of the uncompressed record stream (every
record plus its 16 framing bytes) and `file_bytes` the size on disk, so a
reader detects a truncated or corrupt shard and names it.

The reader is built on `record_stream` (the machinery it shares with
`lesa_tfrecord`): framing errors and bad records name their file and
record index.
"""

import json
import logging
import math
import os
import re

import numpy as np
import tensorflow as tf

from epsilon_tf.data.base import (
    LABEL_SETS,
    DatasetSource,
    SplitReader,
    first_invalid_label,
    shard_files,
)
from epsilon_tf.data.pipeline import checked_map
from epsilon_tf.data.record_stream import (
    RECORD_OVERHEAD,
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

FORMAT = "epsilon_tf.native/1"
FEATURE_DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
COMPRESSIONS = ("ZLIB", "GZIP")
FLOAT16_MAX = float(np.finfo(np.float16).max)
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Writer


def _check_split_name(split):
    if not isinstance(split, str) or not _SPLIT_RE.match(split):
        raise ValueError(
            "`split` must be a non-empty name of letters, digits, '_', '.' "
            f"or '-' (it prefixes the file names). Received: split={split!r}"
        )


def _normalize_compression(compression):
    if compression in (None, "", "NONE", "none"):
        return None
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"`compression` must be one of {COMPRESSIONS} or None. "
            f"Received: compression={compression!r}"
        )
    return compression


def sidecar_path(directory, split):
    """Path of the JSON sidecar of `split` in `directory`."""
    return os.path.join(os.fspath(directory), f"{split}.json")


def _shard_name(split, index):
    return f"{split}-{index:05d}.tfrecord"


def _stray_shards(directory, split):
    pattern = re.compile(re.escape(split) + r"-\d{5}\.tfrecord(\.tmp)?$")
    if not tf.io.gfile.isdir(directory):
        return []
    return sorted(
        os.path.join(directory, f)
        for f in tf.io.gfile.listdir(directory)
        if pattern.match(f)
    )


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


class NativeWriter:
    """Writes one split in the native sharded format.

    Shards are written under a temporary name and renamed when complete;
    the JSON sidecar is written (atomically) by `close()`, after every
    shard, so a split without a sidecar is an incomplete write. Every
    example is validated before it is written.

    Args:
        directory: str. Output folder (created if needed).
        split: str. Split name ("train", "test", ...).
        feature_shape: tuple (num_regions, channels).
        label_names: sequence of str or None. Name of every label column
            (for `label_set="seen"`: the seen labels in `label_space.seen`
            order; for "all": every label of the space). None stores no
            names (then `num_labels` is required).
        feature_dtype: str. "float16" (half the disk space) or "float32".
            Defaults to "float16".
        examples_per_shard: int. Examples per shard file. Defaults to 1024.
        compression: str or None. "ZLIB", "GZIP" or None. Defaults to
            "ZLIB".
        label_set: str. "seen" or "all" (see `epsilon_tf.data.base`).
            Defaults to "seen".
        num_labels: int or None. Length of the label vectors; defaults to
            `len(label_names)`.
        overwrite: bool. Replace an existing split of the same name
            (its sidecar is removed first, then its shards). Defaults to
            False (an existing split raises `FileExistsError`).

    Example:

    >>> with NativeWriter("/tmp/feats", "train", (196, 512),
    ...                   label_names=names) as writer:
    ...     writer.write("img_0", features, labels)
    """

    def __init__(
        self,
        directory,
        split,
        feature_shape,
        label_names=None,
        feature_dtype="float16",
        examples_per_shard=1024,
        compression="ZLIB",
        label_set="seen",
        num_labels=None,
        overwrite=False,
    ):
        _check_split_name(split)
        self.directory = os.fspath(directory)
        self.split = split
        self.feature_shape = tuple(int(d) for d in feature_shape)
        if len(self.feature_shape) != 2 or min(self.feature_shape) < 1:
            raise ValueError(
                "`feature_shape` must be (num_regions, channels) with "
                f"positive sizes. Received: feature_shape={feature_shape!r}"
            )
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(
                f"`feature_dtype` must be one of {sorted(FEATURE_DTYPES)}. "
                f"Received: feature_dtype={feature_dtype!r}"
            )
        self.feature_dtype = feature_dtype
        if (
            not isinstance(examples_per_shard, (int, np.integer))
            or examples_per_shard < 1
        ):
            raise ValueError(
                "`examples_per_shard` must be a positive integer. "
                f"Received: examples_per_shard={examples_per_shard!r}"
            )
        self.examples_per_shard = int(examples_per_shard)
        self.compression = _normalize_compression(compression)
        if label_set not in LABEL_SETS:
            raise ValueError(
                f"`label_set` must be one of {LABEL_SETS}. "
                f"Received: label_set={label_set!r}"
            )
        self.label_set = label_set
        if label_names is not None:
            label_names = [str(n) for n in label_names]
            if num_labels is not None and num_labels != len(label_names):
                raise ValueError(
                    "`num_labels` must equal len(label_names). Received: "
                    f"num_labels={num_labels}, {len(label_names)} names"
                )
            num_labels = len(label_names)
        if num_labels is None or int(num_labels) < 1:
            raise ValueError(
                "Pass `label_names` or a positive `num_labels`. Received: "
                f"label_names=None, num_labels={num_labels!r}"
            )
        self.label_names = label_names
        self.num_labels = int(num_labels)
        self.overwrite = overwrite

        self._np_dtype = FEATURE_DTYPES[feature_dtype]
        self._feature_bytes = (
            math.prod(self.feature_shape) * self._np_dtype.itemsize
        )
        self._shards = []
        self._writer = None
        self._tmp_path = None
        self._shard_count = 0
        self._shard_record_bytes = 0
        self._num_examples = 0
        self._closed = False
        self._prepare_directory()

    # -- setup ---------------------------------------------------------------

    def _prepare_directory(self):
        tf.io.gfile.makedirs(self.directory)
        meta_path = sidecar_path(self.directory, self.split)
        if tf.io.gfile.exists(meta_path):
            if not self.overwrite:
                raise FileExistsError(
                    f"Split {self.split!r} already exists: {meta_path}. "
                    "Replace it with --overwrite (overwrite=True in Python)."
                )
            # Remove the sidecar first: from here on the old split is
            # (correctly) unreadable until the new one is complete.
            tf.io.gfile.remove(meta_path)
        for path in _stray_shards(self.directory, self.split):
            logger.info("Removing old shard %s", path)
            tf.io.gfile.remove(path)

    # -- writing -------------------------------------------------------------

    def _validate(self, image_id, features, labels):
        if isinstance(image_id, tf.Tensor):
            image_id = image_id.numpy()
        if isinstance(image_id, np.ndarray) and image_id.ndim == 0:
            image_id = image_id.item()
        if isinstance(image_id, str):
            image_id = image_id.encode("utf-8")
        if not isinstance(image_id, bytes) or not image_id:
            raise ValueError(
                "`image_id` must be a non-empty str or bytes. Received: "
                f"image_id={image_id!r} (example {self._num_examples})"
            )
        name = image_id.decode("utf-8", "replace")
        features = np.asarray(features)
        if features.shape != self.feature_shape:
            raise ValueError(
                f"Example {name!r}: `features` must have shape "
                f"{self.feature_shape}. Received: shape={features.shape}"
            )
        if not np.issubdtype(features.dtype, np.number):
            raise ValueError(
                f"Example {name!r}: `features` must be numeric. Received: "
                f"dtype={features.dtype}"
            )
        if not np.all(np.isfinite(features)):
            raise ValueError(
                f"Example {name!r}: `features` must be finite. Received "
                f"{int(np.sum(~np.isfinite(features)))} NaN/Inf values"
            )
        if self.feature_dtype == "float16":
            peak = float(np.max(np.abs(features))) if features.size else 0.0
            if peak > FLOAT16_MAX:
                raise ValueError(
                    f"Example {name!r}: a feature value ({peak:g}) exceeds "
                    f"the float16 range (+-{FLOAT16_MAX:g}); write with "
                    "feature_dtype='float32'"
                )
        labels = np.asarray(labels)
        if labels.shape != (self.num_labels,):
            raise ValueError(
                f"Example {name!r}: `labels` must have shape "
                f"({self.num_labels},) ({self.label_set} labels). "
                f"Received: shape={labels.shape}"
            )
        invalid = first_invalid_label(labels)
        if invalid is not None:
            i, bad = invalid
            raise ValueError(
                f"Example {name!r}: labels must be -1, 0 or +1. Received "
                f"{bad!r} at position {i}"
            )
        return image_id, features, labels

    def _open_shard(self):
        index = len(self._shards)
        self._tmp_path = os.path.join(
            self.directory, _shard_name(self.split, index) + ".tmp"
        )
        options = tf.io.TFRecordOptions(compression_type=self.compression or "")
        self._writer = tf.io.TFRecordWriter(self._tmp_path, options=options)
        self._shard_count = 0
        self._shard_record_bytes = 0

    def _close_shard(self):
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        name = _shard_name(self.split, len(self._shards))
        final = os.path.join(self.directory, name)
        tf.io.gfile.rename(self._tmp_path, final, overwrite=True)
        self._shards.append(
            {
                "file": name,
                "num_examples": self._shard_count,
                "record_bytes": self._shard_record_bytes,
                "file_bytes": int(tf.io.gfile.stat(final).length),
            }
        )
        self._tmp_path = None

    def write(self, image_id, features, labels):
        """Validates and writes one example.

        Args:
            image_id: str or bytes. The image's identifier.
            features: array [num_regions, channels], finite.
            labels: array [num_labels] with values in {-1, 0, +1}.
        """
        if self._closed:
            raise ValueError(f"NativeWriter for split {self.split!r} is closed")
        image_id, features, labels = self._validate(image_id, features, labels)
        example = tf.train.Example(
            features=tf.train.Features(
                feature={
                    "image_id": _bytes_feature(image_id),
                    "features": _bytes_feature(
                        features.astype(self._np_dtype).tobytes()
                    ),
                    "labels": _bytes_feature(labels.astype(np.int8).tobytes()),
                }
            )
        )
        data = example.SerializeToString()
        if self._writer is None:
            self._open_shard()
        self._writer.write(data)
        self._shard_count += 1
        self._shard_record_bytes += len(data) + RECORD_OVERHEAD
        self._num_examples += 1
        if self._shard_count >= self.examples_per_shard:
            self._close_shard()

    def metadata(self):
        """The sidecar contents for what has been written so far."""
        return {
            "format": FORMAT,
            "split": self.split,
            "feature_shape": list(self.feature_shape),
            "feature_dtype": self.feature_dtype,
            "label_set": self.label_set,
            "num_labels": self.num_labels,
            "label_names": self.label_names,
            "num_examples": self._num_examples,
            "compression": self.compression,
            "shards": list(self._shards),
        }

    def close(self):
        """Finishes the last shard and writes the sidecar (atomically).

        Returns:
            dict, the sidecar contents.
        """
        if self._closed:
            return self.metadata()
        self._close_shard()
        meta = self.metadata()
        path = sidecar_path(self.directory, self.split)
        tmp = path + ".tmp"
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(json.dumps(meta, indent=1))
        tf.io.gfile.rename(tmp, path, overwrite=True)
        self._closed = True
        return meta

    def abort(self):
        """Stops writing without a sidecar (the split stays unreadable)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            if self._tmp_path and tf.io.gfile.exists(self._tmp_path):
                tf.io.gfile.remove(self._tmp_path)
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def _example_parts(example):
    if isinstance(example, dict):
        return example["image_id"], example["features"], example["labels"]
    image_id, features, labels = example
    return image_id, features, labels


def write_native_split(
    directory,
    split,
    examples,
    feature_shape,
    label_names=None,
    feature_dtype="float16",
    examples_per_shard=1024,
    compression="ZLIB",
    label_set="seen",
    num_labels=None,
    overwrite=False,
):
    """Writes an iterable of examples as one native split.

    Args:
        directory: str. Output folder.
        split: str. Split name.
        examples: iterable of dicts `{"image_id", "features", "labels"}`
            (numpy values or eager tensors) or `(image_id, features,
            labels)` tuples.
        feature_shape, label_names, feature_dtype, examples_per_shard,
        compression, label_set, num_labels, overwrite: see `NativeWriter`.

    Returns:
        dict, the sidecar contents.

    Example:

    >>> write_native_split("/tmp/feats", "train", examples, (196, 512),
    ...                    label_names=names, examples_per_shard=2048)
    """
    with NativeWriter(
        directory,
        split,
        feature_shape,
        label_names=label_names,
        feature_dtype=feature_dtype,
        examples_per_shard=examples_per_shard,
        compression=compression,
        label_set=label_set,
        num_labels=num_labels,
        overwrite=overwrite,
    ) as writer:
        for example in examples:
            writer.write(*_example_parts(example))
    return writer.metadata()


# ---------------------------------------------------------------------------
# Reader


def read_native_metadata(directory, split):
    """Reads and validates the sidecar of `split` in `directory`.

    Args:
        directory: str. The folder written by `NativeWriter`.
        split: str. Split name.

    Returns:
        dict, the sidecar contents.
    """
    path = sidecar_path(directory, split)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"No native split {split!r} in {directory}: {path} not found "
            "(a split without its sidecar is missing or was not finished)"
        )
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(
            f"{path}: `format` must be {FORMAT!r}. Received: {got!r}"
        )
    required = (
        "feature_shape",
        "feature_dtype",
        "label_set",
        "num_labels",
        "num_examples",
        "compression",
        "shards",
    )
    missing = [k for k in required if k not in meta]
    if missing:
        raise ValueError(f"{path}: missing fields {missing}")
    if meta["feature_dtype"] not in FEATURE_DTYPES:
        raise ValueError(
            f"{path}: feature_dtype must be one of {sorted(FEATURE_DTYPES)}. "
            f"Received: {meta['feature_dtype']!r}"
        )
    if meta["label_set"] not in LABEL_SETS:
        raise ValueError(
            f"{path}: label_set must be one of {LABEL_SETS}. Received: "
            f"{meta['label_set']!r}"
        )
    names = meta.get("label_names")
    if names is not None and len(names) != meta["num_labels"]:
        raise ValueError(
            f"{path}: {len(names)} label_names but num_labels="
            f"{meta['num_labels']}"
        )
    counted = sum(int(s["num_examples"]) for s in meta["shards"])
    if counted != meta["num_examples"]:
        raise ValueError(
            f"{path}: num_examples={meta['num_examples']} but the shards "
            f"list {counted} examples"
        )
    _normalize_compression(meta["compression"])
    return meta


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

    reader = SplitReader(
        name=split,
        label_set=meta["label_set"],
        make_dataset=make_dataset,
        num_examples=int(meta["num_examples"]),
        files=tuple(files),
    )
    reader.skip_report = report
    reader.metadata = meta
    return reader


def find_native_splits(directory):
    """Names of the native splits (sidecars) found in `directory`."""
    directory = os.fspath(directory)
    if not tf.io.gfile.isdir(directory):
        raise FileNotFoundError(f"Native data folder not found: {directory}")
    splits = []
    for name in sorted(tf.io.gfile.listdir(directory)):
        if not name.endswith(".json"):
            continue
        try:
            with tf.io.gfile.GFile(os.path.join(directory, name), "r") as f:
                meta = json.loads(f.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(meta, dict) and meta.get("format") == FORMAT:
            splits.append(name[: -len(".json")])
    return splits


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
