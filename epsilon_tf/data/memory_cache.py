"""Small splits held in memory after their first read, in the same order.

The experiments train about forty runs on one dataset in each worker
process, and every run reads the training split once per epoch (plus the
validation carve, the test split and the data checks). On the built-in
world a read costs more CPU than it seems: the reader's per-record parse
and checks take about 30 ms of CPU for each batch of 64, on a core that the
other worker's train step needs. `cache_in_memory` holds the decoded
examples of a small split instead, and serves every later read from
memory, **element for element the same stream as the reader's**:

- the element values are the reader's (decoded once);
- the order is the reader's for that `files_seed` and file order. Every
  reader of the package orders a split by its `files_seed` alone (BiAM's
  NUS-WIDE file: a NumPy permutation of its images) or by its file order
  (`shard_files`: the files shuffled with `files_seed` under the global
  seed at the time of the call), deterministically within it. The cache
  computes that file order the same way (a few names, no records) and
  reads the split through the reader once for each (`files_seed`, file
  order) it has not seen, recording which image comes where.

So a run trains on the very batches it would have read from the files, and
its results are bit for bit the same (`tests/test_memory_cache.py`). A
split is held only when its image ids are unique (they key the rows) and
its decoded size fits `max_bytes`; other splits are read from the files as
before, as are the per-pipeline shards of a multi-worker input.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from epsilon_tf.data.base import shard_files
from epsilon_tf.data.pipeline import input_errors

# Decoded bytes (float32 features and labels) a source may hold in memory
# in all: a worker keeps the rows, plus one reordered copy per live read.
DEFAULT_MAX_BYTES = 512 * 2**20
_READ_BATCH = 512


def decoded_bytes(reader, source):
    """The float32 size of a split's examples in `source`, or None when
    the number of examples is not known up front."""
    if reader.num_examples is None:
        return None
    regions, channels = source.feature_shape
    space = source.label_space
    labels = len(space.seen) if reader.label_set == "seen" else len(
        space.names)
    # An image id of a few dozen bytes beside the features and labels.
    return int(reader.num_examples) * (4 * (regions * channels + labels) + 64)


class _NotCacheable(Exception):
    """The split cannot be served from memory (duplicate image ids)."""


class _SplitMemory:
    """The rows of one split and, per `order_key`, the order of its rows."""

    def __init__(self, reader):
        self.reader = reader
        self.rows = None  # {"image_id", "features", "labels"} arrays
        self.row_of = None  # image id (bytes) -> row
        self.orders = {}  # `order_key` -> int array of rows
        self.disabled = False

    def order_key(self, files_seed):
        """What the reader's order depends on: `files_seed` and the file
        order it gives under the current global seed."""
        files = shard_files(self.reader.files, files_seed, None)
        return files_seed, tuple(files.as_numpy_iterator())

    def _read(self, files_seed):
        """One pass of the reader; returns the rows in its order."""
        parts = {"image_id": [], "features": [], "labels": []}
        with input_errors():
            batches = self.reader.dataset(files_seed).batch(_READ_BATCH)
            for batch in batches.as_numpy_iterator():
                for key, values in parts.items():
                    values.append(batch[key])
        stream = {k: (np.concatenate(v) if v else None)
                  for k, v in parts.items()}
        ids = stream["image_id"]
        if ids is None:
            raise _NotCacheable("the split is empty")
        if self.rows is None:
            row_of = {image_id: i for i, image_id in enumerate(ids)}
            if len(row_of) != len(ids):
                raise _NotCacheable("the image ids are not unique")
            self.rows, self.row_of = stream, row_of
            return np.arange(len(ids))
        try:
            order = np.fromiter((self.row_of[i] for i in ids), np.int64,
                                len(ids))
        except KeyError:
            raise _NotCacheable("the reads differ") from None
        if len(ids) != len(self.row_of) or not all(
            np.array_equal(self.rows[k][order], stream[k])
            for k in ("features", "labels")
        ):
            raise _NotCacheable("the reads differ")
        return order

    def dataset(self, files_seed=None, input_context=None):
        """The reader's stream for `files_seed`, from memory."""
        sharded = (input_context is not None
                   and input_context.num_input_pipelines > 1)
        if self.disabled or sharded:
            return self.reader.dataset(files_seed, input_context)
        key = self.order_key(files_seed)
        order = self.orders.get(key)
        if order is None:
            try:
                order = self._read(files_seed)
            except _NotCacheable:
                self.disabled, self.rows, self.orders = True, None, {}
                return self.reader.dataset(files_seed, input_context)
            self.orders[key] = order
        return tf.data.Dataset.from_tensor_slices(
            {k: v[order] for k, v in self.rows.items()}
        )


def cached_split(reader):
    """A `SplitReader` that serves `reader`'s stream from memory after the
    first read of each (`files_seed`, file order) (see the module
    docstring)."""
    memory = _SplitMemory(reader)
    return dataclasses.replace(
        reader, make_dataset=memory.dataset, memory=memory
    )


def cache_in_memory(source, max_bytes=DEFAULT_MAX_BYTES):
    """`source` with its splits held in memory when they fit `max_bytes`
    together (decoded float32); otherwise `source` unchanged.

    Only splits read from files are wrapped (in-memory arrays already are).
    """
    splits = source.splits
    sizes = [decoded_bytes(r, source) for r in splits.values()]
    if any(s is None for s in sizes) or sum(sizes) > max_bytes:
        return source
    if not all(r.files for r in splits.values()):
        return source
    return dataclasses.replace(
        source,
        splits={name: cached_split(r) for name, r in splits.items()},
    )
