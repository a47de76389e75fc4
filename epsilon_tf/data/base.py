"""The contract every dataset reader follows.

A reader turns files into a `tf.data.Dataset` of *examples*, one per image:

    {"image_id": tf.string [],
     "features": tf.float32 [num_regions, channels],
     "labels":   tf.float32 [num_labels]}     # values +1, -1 or 0

For a training split `labels` cover the seen labels of the `LabelSpace`
(`label_space.seen` order); for a test split they cover every label of the
space (seen and unseen, in `label_space` order), so the same example serves
ZSL (unseen columns) and GZSL (all columns).

A `DatasetSource` bundles the label space with one `SplitReader` per split
("train" and "test"; the validation split is carved out of "train" by
`epsilon_tf.data.pipeline`).
"""

import dataclasses
import errno
from typing import Any, Callable, Optional

import numpy as np
import tensorflow as tf

from epsilon_tf.labels import LabelSpace

LABEL_SETS = ("seen", "all")


def stream_options():
    """The `tf.data.Options` every split's stream carries: no autotune
    model thread.

    TensorFlow 2.21's autotuner runs a model thread per iterator that
    sleeps between optimizations for a period that grows (to at most a
    minute in the TensorFlow sources read), and an iterator's destructor
    waits for that thread without waking it (gdb, during a stall:
    `RootDataset::Iterator::~Iterator` waiting while `Model::OptimizeLoop`
    sits in its timed wait). Every exhausted epoch or validation pass then
    stalls, doing nothing, for up to the current period: about 7 s of a
    24 s epoch on the built-in world (measured side by side, BUILD_NOTES
    and docs/history.md, "Session 7"). Without autotune, `AUTOTUNE`
    parallelism is fixed at min(16, cores) and `prefetch(AUTOTUNE)` sizes
    its buffer with its own tuner; the elements and their order are the
    same (every map is deterministic).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


@dataclasses.dataclass
class SplitReader:
    """One split of a dataset, read lazily.

    Args:
        name: str. Split name ("train", "test", ...).
        label_set: str. "seen" (labels over `label_space.seen`) or "all".
        make_dataset: callable. `make_dataset(files_seed, input_context)`
            returns an unbatched `tf.data.Dataset` of examples.
            `files_seed` (int or None) shuffles the file order when not
            None; `input_context` (a `tf.distribute.InputContext` or None)
            shards the files across input pipelines.
        num_examples: int or None. Number of examples, if known.
        files: tuple of str. The files the split reads (for messages).
        counter: callable or None. Counts the examples when `num_examples`
            is not known up front (a cheap pass over the files, cached;
            see `epsilon_tf.data.records.record_count`); used by
            `example_count`.
        skip_report: `records.stream.SkipReport` or None. What a reader
            built with `skip_corrupt=True` skipped (the file readers always
            attach one; None for in-memory splits).
        compressions: dict str -> str. Each file's detected compression
            ("", "ZLIB" or "GZIP"), for readers that detect it per file
            (LESA); empty otherwise.
        metadata: dict or None. The split's stored description (the
            native format's sidecar), when it has one.
        memory: object or None. The in-memory copy that serves the split
            (`memory_cache.cached_split`), when it is served from memory.
    """

    name: str
    label_set: str
    make_dataset: Callable
    num_examples: Optional[int] = None
    files: tuple = ()
    counter: Optional[Callable] = None
    skip_report: Optional[Any] = None
    compressions: dict = dataclasses.field(default_factory=dict)
    metadata: Optional[dict] = None
    memory: Optional[Any] = None

    def __post_init__(self):
        if self.label_set not in LABEL_SETS:
            raise ValueError(
                f"`label_set` must be one of {LABEL_SETS}. "
                f"Received: label_set={self.label_set!r}"
            )

    def dataset(self, files_seed=None, input_context=None):
        """The split as an unbatched `tf.data.Dataset` of examples (with
        `stream_options`, inherited by every pipeline built on it)."""
        return self.make_dataset(files_seed, input_context).with_options(
            stream_options())

    def example_count(self):
        """`num_examples`, counted once with `counter` when not known.

        Returns:
            int or None (unknown: no counter, or it could not count).
        """
        if self.num_examples is None and self.counter is not None:
            count = self.counter()
            self.num_examples = None if count is None else int(count)
        return self.num_examples


@dataclasses.dataclass
class DatasetSource:
    """A label space plus its splits.

    Args:
        name: str. Dataset name (e.g. "synthetic", "nus_wide").
        label_space: `LabelSpace`.
        feature_shape: tuple (num_regions, channels).
        splits: dict str -> `SplitReader`; must hold "train" and "test".
        eval_ks: tuple of int. The K of P/R/F1@K for this benchmark.
    """

    name: str
    label_space: LabelSpace
    feature_shape: tuple
    splits: dict
    eval_ks: tuple = (3, 5)

    def split(self, name):
        if name not in self.splits:
            raise KeyError(
                f"Dataset {self.name!r} has no split {name!r}; it has "
                f"{sorted(self.splits)}"
            )
        return self.splits[name]


def first_invalid_label(labels):
    """`(position, value)` of the first label not -1, 0 or +1, else None.

    The host-side check of the label values (`records.stream.
    label_values_check` is the in-graph one); `position` indexes the
    flattened array.
    """
    flat = np.asarray(labels).reshape(-1)
    bad = np.flatnonzero(~np.isin(flat, (-1, 0, 1)))
    if bad.size == 0:
        return None
    return int(bad[0]), flat[bad[0]].item()


def example_signature(feature_shape, num_labels):
    """The `tf.TensorSpec`s of one example."""
    return {
        "image_id": tf.TensorSpec([], tf.string),
        "features": tf.TensorSpec(tuple(feature_shape), tf.float32),
        "labels": tf.TensorSpec([num_labels], tf.float32),
    }


def shard_files(files, files_seed, input_context):
    """A dataset of file names, sharded per input pipeline and shuffled.

    Sharding happens before shuffling so every pipeline sees a fixed,
    disjoint subset of the files. Raises `FileNotFoundError` for a file
    that is gone since the split was listed (TensorFlow's reader would
    retry opening it forever behind the record stream's `ignore_errors`).
    """
    for path in files:
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(
                errno.ENOENT,
                "the data file is gone (it existed when the split was "
                "listed)", path,
            )
    ds = tf.data.Dataset.from_tensor_slices(list(files))
    if input_context is not None and input_context.num_input_pipelines > 1:
        if len(files) < input_context.num_input_pipelines:
            raise ValueError(
                f"Cannot shard {len(files)} files across "
                f"{input_context.num_input_pipelines} input pipelines; "
                "write more shards or use fewer workers"
            )
        ds = ds.shard(
            input_context.num_input_pipelines,
            input_context.input_pipeline_id,
        )
    if files_seed is not None:
        ds = ds.shuffle(len(files), seed=files_seed)
    return ds
