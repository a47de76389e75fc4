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

This module holds what the writer (`native_writer`) and the reader
(`native_tfrecord`) share: the names of the files, and the sidecar, read
and checked.
"""

import json
import os
import re

import numpy as np
import tensorflow as tf

from epsilon_tf.data.base import LABEL_SETS
from epsilon_tf.data.records.compression import compression_option

FORMAT = "epsilon_tf.native/1"
FEATURE_DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")


def check_split_name(split):
    """Fails unless `split` can prefix the file names of a split."""
    if not isinstance(split, str) or not _SPLIT_RE.match(split):
        raise ValueError(
            "`split` must be a non-empty name of letters, digits, '_', '.' "
            f"or '-' (it prefixes the file names). Received: split={split!r}"
        )


def sidecar_path(directory, split):
    """Path of the JSON sidecar of `split` in `directory`."""
    return os.path.join(os.fspath(directory), f"{split}.json")


def shard_name(split, index):
    """File name of shard `index` of `split`."""
    return f"{split}-{index:05d}.tfrecord"


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
    compression_option(meta["compression"])
    return meta


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
