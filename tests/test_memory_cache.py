"""Splits served from memory give the reader's stream, element for element.

The reference is the reader itself: the same split read from its files,
for several file orders (files_seed) and global seeds, through the whole
input pipeline (carve, shuffle, batch), and through training.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny

from epsilon_tf.data import memory_cache
from epsilon_tf.data.base import SplitReader
from epsilon_tf.data.pipeline import make_dataset
from epsilon_tf.data.readers.native_tfrecord import native_source
from epsilon_tf.data.readers.native_writer import write_native_split


def _write_sharded(directory, per_shard=64, ids=None):
    """The tiny world as native TFRecords in several shards per split."""
    from epsilon_tf.data.worlds.synthetic import synthetic_label_space

    space = synthetic_label_space(tiny.world())
    space.save(directory)
    for split, names, label_set in (
        ("train", space.subset("seen").names, "seen"),
        ("test", space.names, "all"),
    ):
        split_ids, feats, labels = tiny.arrays(split)
        if ids is not None:
            split_ids = ids(split_ids)
        write_native_split(
            directory, split, zip(split_ids, feats, labels, strict=True),
            tiny.world().feature_shape, label_names=names,
            feature_dtype="float16", label_set=label_set,
            examples_per_shard=per_shard,
        )
    return native_source(directory, space)


def _stream(reader, **kwargs):
    (whole,) = reader.dataset(**kwargs).batch(10_000).as_numpy_iterator()
    return whole


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture
def sharded(tmp_path):
    return _write_sharded(tmp_path)


def test_same_stream_for_every_file_order(sharded):
    cached = memory_cache.cache_in_memory(sharded)
    train, cached_train = sharded.split("train"), cached.split("train")
    assert len(train.files) == 7 and cached_train.files == train.files
    seen_orders = set()
    for global_seed in (0, 5):
        tf.random.set_seed(global_seed)
        for files_seed in (None, 3):
            # Twice each: the first read fills the memory, the second is
            # served from it.
            for _ in range(2):
                want = _stream(train, files_seed=files_seed)
                got = _stream(cached_train, files_seed=files_seed)
                _assert_same(got, want)
            seen_orders.add(tuple(want["image_id"]))
    # The seeds did change the order (the test would pass trivially
    # otherwise); the memory keeps one order per (files_seed, file order).
    assert len(seen_orders) == 3
    assert len(cached_train.memory.orders) == 3
    _assert_same(_stream(cached.split("test")), _stream(sharded.split("test")))


def test_reads_each_file_order_once(sharded):
    cached = memory_cache.cache_in_memory(sharded)
    reader = cached.split("train").memory.reader
    calls = []
    original = reader.make_dataset

    def counting(files_seed=None, input_context=None):
        calls.append(files_seed)
        return original(files_seed, input_context)

    reader.make_dataset = counting
    tf.random.set_seed(1)
    for _ in range(3):
        for files_seed in (None, 7):
            _stream(cached.split("train"), files_seed=files_seed)
    assert calls == [None, 7]


def test_same_batches_through_the_pipeline(sharded):
    cached = memory_cache.cache_in_memory(sharded)
    tf.random.set_seed(2)
    for subset in ("train", "validation"):
        for seed in (None, 11):
            kwargs = dict(subset=subset, shuffle_seed=seed,
                          shuffle_buffer=100)
            want = list(make_dataset(sharded.split("train"), 32, **kwargs)
                        .as_numpy_iterator())
            got = list(make_dataset(cached.split("train"), 32, **kwargs)
                       .as_numpy_iterator())
            assert len(got) == len(want) > 0
            for a, b in zip(got, want, strict=True):
                _assert_same(a, b)


def test_an_order_set_by_files_seed_alone(tmp_path):
    # BiAM's NUS-WIDE reader: one file, its images permuted by files_seed
    # (the file order is the same for every seed).
    path = tmp_path / "one.h5"
    path.write_bytes(b"")
    ids = np.array([f"img{i}".encode() for i in range(20)])
    features = np.arange(20 * 6, dtype=np.float32).reshape(20, 2, 3)

    def make(files_seed=None, input_context=None):
        order = np.arange(20)
        if files_seed is not None:
            order = np.random.default_rng(files_seed).permutation(order)
        return tf.data.Dataset.from_tensor_slices({
            "image_id": ids[order], "features": features[order],
            "labels": np.ones((20, 1), np.float32)})

    reader = SplitReader("train", "seen", make, 20, files=(str(path),))
    cached = memory_cache.cached_split(reader)
    for files_seed in (None, 1, 2, 1, None):
        got = _stream(cached, files_seed=files_seed)
        _assert_same(got, _stream(reader, files_seed=files_seed))
    assert len(cached.memory.orders) == 3


def test_the_reader_fields_come_along(sharded):
    """The cached split is the reader's `SplitReader` with `make_dataset`
    and `memory` replaced: every other declared field is the reader's."""
    reader = sharded.split("train")
    cached = memory_cache.cached_split(reader)
    assert cached.metadata is reader.metadata
    assert cached.metadata["num_examples"] == reader.num_examples
    assert cached.skip_report is reader.skip_report
    assert cached.files == reader.files and len(cached.files) > 1
    assert cached.memory.reader is reader and reader.memory is None
    assert cached.make_dataset != reader.make_dataset
    # Nothing rides on the instance outside the declared fields.
    declared = {f.name for f in dataclasses.fields(SplitReader)}
    assert set(vars(cached)) == declared == set(vars(reader))


def test_sharded_input_reads_the_files():
    class Context:
        num_input_pipelines = 2
        input_pipeline_id = 1

    calls = []

    class Reader:
        files = ("a",)

        def dataset(self, files_seed=None, input_context=None):
            calls.append(input_context)
            return "from the files"

    memory = memory_cache._SplitMemory(Reader())
    assert memory.dataset(None, Context()) == "from the files"
    assert calls and not memory.orders


def test_duplicate_image_ids_are_read_from_the_files(tmp_path):
    source = _write_sharded(tmp_path, ids=lambda ids: [
        "same" if i < 2 else image_id for i, image_id in enumerate(ids)
    ])
    cached = memory_cache.cache_in_memory(source)
    train = cached.split("train")
    tf.random.set_seed(0)
    _assert_same(_stream(train, files_seed=3),
                 _stream(source.split("train"), files_seed=3))
    assert train.memory.disabled and train.memory.rows is None


def test_only_small_file_splits_are_held(sharded):
    # 400 + 120 images of 16 x 16 float32 features and 30 / 38 labels.
    size = sum(memory_cache.decoded_bytes(r, sharded)
               for r in sharded.splits.values())
    assert size == 400 * (4 * (256 + 30) + 64) + 120 * (4 * (256 + 38) + 64)
    assert memory_cache.cache_in_memory(sharded, max_bytes=size - 1) is sharded
    assert memory_cache.cache_in_memory(sharded, max_bytes=size) is not sharded
    arrays = tiny.in_memory_source()
    assert memory_cache.cache_in_memory(arrays) is arrays
    unknown = dataclasses.replace(sharded, splits={
        **sharded.splits,
        "train": dataclasses.replace(sharded.split("train"),
                                     num_examples=None),
    })
    assert memory_cache.cache_in_memory(unknown) is unknown


@pytest.mark.slow  # 11 s; the batches themselves are compared above
def test_training_is_bit_for_bit_the_same(sharded, tmp_path):
    tiny.assert_same_run(
        tiny.train_one_epoch(sharded, tmp_path / "files", model="lesa"),
        tiny.train_one_epoch(memory_cache.cache_in_memory(sharded),
                             tmp_path / "memory", model="lesa"),
    )
