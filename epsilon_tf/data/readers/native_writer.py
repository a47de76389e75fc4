"""Writes splits in the native sharded TFRecord format (`native_format`).

Every example is validated before it is written; shards are renamed into
place when complete and the JSON sidecar is written last, so a split
without its sidecar is an incomplete write.
"""

import json
import logging
import math
import os
import re

import numpy as np
import tensorflow as tf

from epsilon_tf.data.base import LABEL_SETS, first_invalid_label
from epsilon_tf.data.readers.native_format import (
    FEATURE_DTYPES,
    FORMAT,
    check_split_name,
    shard_name,
    sidecar_path,
)
from epsilon_tf.data.records.checks import check_feature_shape
from epsilon_tf.data.records.compression import compression_option
from epsilon_tf.data.records.framing import RECORD_OVERHEAD

FLOAT16_MAX = float(np.finfo(np.float16).max)

logger = logging.getLogger(__name__)


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
        check_split_name(split)
        self.directory = os.fspath(directory)
        self.split = split
        self.feature_shape = check_feature_shape(feature_shape)
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
        self.compression = compression_option(compression)
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
            self.directory, shard_name(self.split, index) + ".tmp"
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
        name = shard_name(self.split, len(self._shards))
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
