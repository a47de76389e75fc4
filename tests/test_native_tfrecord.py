"""Tests for the native sharded TFRecord format and `convert_split`."""

import json
import logging
import re

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny

from epsilon_tf.data.base import SplitReader, example_signature
from epsilon_tf.data.convert import convert_split
from epsilon_tf.data.readers import native_tfrecord as nt
from epsilon_tf.data.readers import native_writer as nw
from epsilon_tf.labels import LabelSpace

NAMES = ["a", "b", "c", "d", "e"]


def _examples(n, shape=(4, 8), num_labels=5, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "image_id": f"img{i:03d}",
            "features": rng.normal(size=shape).astype(np.float32),
            "labels": rng.integers(-1, 2, size=num_labels).astype(np.int8),
        }
        for i in range(n)
    ]


def _read(reader, **kwargs):
    return list(reader.dataset(**kwargs).as_numpy_iterator())


def _by_id(examples):
    return {e["image_id"].decode(): e for e in examples}


@pytest.mark.parametrize(
    "dtype,compression", [("float32", "ZLIB"), ("float16", None)]
)
def test_round_trip_record_by_record(tmp_path, dtype, compression):
    exs = _examples(10)
    meta = nw.write_native_split(
        tmp_path,
        "train",
        exs,
        (4, 8),
        label_names=NAMES,
        feature_dtype=dtype,
        examples_per_shard=3,
        compression=compression,
    )
    assert [s["file"] for s in meta["shards"]] == [
        f"train-{i:05d}.tfrecord" for i in range(4)
    ]
    assert [s["num_examples"] for s in meta["shards"]] == [3, 3, 3, 1]
    reader = nt.native_split(tmp_path, "train")
    assert reader.num_examples == 10 and reader.label_set == "seen"
    got = _read(reader)
    assert len(got) == 10
    by_id = _by_id(got)
    assert sorted(by_id) == [e["image_id"] for e in exs]
    for e in exs:
        g = by_id[e["image_id"]]
        want = e["features"].astype(dtype).astype(np.float32)
        np.testing.assert_array_equal(g["features"], want)
        assert g["features"].dtype == np.float32
        np.testing.assert_array_equal(g["labels"], e["labels"])
        assert g["labels"].dtype == np.float32


def test_deterministic_interleave_order(tmp_path):
    exs = _examples(7)
    nw.write_native_split(
        tmp_path, "train", exs, (4, 8), NAMES, examples_per_shard=3
    )
    ids = [
        e["image_id"].decode()
        for e in _read(nt.native_split(tmp_path, "train"))
    ]
    # Shards [0,1,2] [3,4,5] [6] read round-robin, one record at a time.
    assert ids == [
        "img000",
        "img003",
        "img006",
        "img001",
        "img004",
        "img002",
        "img005",
    ]
    assert ids == [
        e["image_id"].decode()
        for e in _read(nt.native_split(tmp_path, "train"))
    ]


def test_real_feature_shape_two_records(tmp_path):
    exs = _examples(2, shape=(196, 512), num_labels=1006, seed=3)
    nw.write_native_split(
        tmp_path,
        "test",
        exs,
        (196, 512),
        num_labels=1006,
        label_set="all",
        feature_dtype="float32",
    )
    got = _read(nt.native_split(tmp_path, "test"))
    for e, g in zip(exs, got, strict=True):
        assert g["image_id"].decode() == e["image_id"]
        assert g["features"].shape == (196, 512)
        np.testing.assert_array_equal(g["features"], e["features"])
        np.testing.assert_array_equal(g["labels"], e["labels"])


def test_sidecar_contents(tmp_path):
    nw.write_native_split(
        tmp_path, "val", _examples(3), (4, 8), NAMES, compression="GZIP"
    )
    meta = json.loads((tmp_path / "val.json").read_text())
    assert meta["format"] == "epsilon_tf.native/1"
    assert meta["feature_shape"] == [4, 8]
    assert meta["feature_dtype"] == "float16"
    assert meta["label_names"] == NAMES
    assert meta["label_set"] == "seen"
    assert meta["num_examples"] == 3
    assert meta["compression"] == "GZIP"
    shard = meta["shards"][0]
    assert shard["file_bytes"] == (tmp_path / shard["file"]).stat().st_size
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    "change,pattern",
    [
        ({"features": np.zeros((4, 7))}, r"'img001'.*shape \(4, 8\)"),
        ({"features": np.full((4, 8), np.nan)}, r"'img001'.*finite"),
        ({"features": np.full((4, 8), 1e6)}, r"'img001'.*float16 range"),
        ({"labels": np.zeros(4)}, r"'img001'.*shape \(5,\)"),
        ({"labels": np.array([0, 1, 2, 0, 0])}, r"'img001'.*Received 2"),
        ({"image_id": ""}, r"non-empty"),
    ],
)
def test_writer_validates_examples(tmp_path, change, pattern):
    exs = _examples(2)
    exs[1].update(change)
    with pytest.raises(ValueError, match=pattern):
        nw.write_native_split(tmp_path, "train", exs, (4, 8), NAMES)
    # The failed write leaves no sidecar: the split is not readable.
    assert not (tmp_path / "train.json").exists()
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="train.json"):
        nt.native_split(tmp_path, "train")


def test_writer_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="feature_dtype"):
        nw.NativeWriter(tmp_path, "x", (4, 8), NAMES, feature_dtype="int8")
    with pytest.raises(ValueError, match="compression"):
        nw.NativeWriter(tmp_path, "x", (4, 8), NAMES, compression="LZ4")
    with pytest.raises(ValueError, match="split"):
        nw.NativeWriter(tmp_path, "../x", (4, 8), NAMES)
    with pytest.raises(ValueError, match="num_labels"):
        nw.NativeWriter(tmp_path, "x", (4, 8))


def test_existing_split_needs_overwrite(tmp_path):
    nw.write_native_split(
        tmp_path, "train", _examples(5), (4, 8), NAMES, examples_per_shard=2
    )
    with pytest.raises(FileExistsError, match="overwrite=True"):
        nw.write_native_split(tmp_path, "train", _examples(1), (4, 8), NAMES)
    nw.write_native_split(
        tmp_path, "train", _examples(1), (4, 8), NAMES, overwrite=True
    )
    assert sorted(p.name for p in tmp_path.glob("train-*")) == [
        "train-00000.tfrecord"
    ]
    assert len(_read(nt.native_split(tmp_path, "train"))) == 1


def _write_raw_shard(directory, split, records, compression=None):
    """Writes a shard of hand-made records plus a matching sidecar."""
    name = f"{split}-00000.tfrecord"
    path = directory / name
    with tf.io.TFRecordWriter(str(path), options=compression or "") as w:
        for r in records:
            w.write(r)
    meta = {
        "format": nt.FORMAT,
        "split": split,
        "feature_shape": [4, 8],
        "feature_dtype": "float32",
        "label_set": "seen",
        "num_labels": 5,
        "label_names": NAMES,
        "num_examples": len(records),
        "compression": compression,
        "shards": [
            {
                "file": name,
                "num_examples": len(records),
                "record_bytes": sum(len(r) + 16 for r in records),
                "file_bytes": path.stat().st_size,
            }
        ],
    }
    (directory / f"{split}.json").write_text(json.dumps(meta))
    return path


def _record(features_bytes=128, labels_bytes=5, drop=()):
    values = {
        "image_id": b"x",
        "features": np.zeros(features_bytes // 4, np.float32).tobytes(),
        "labels": np.zeros(labels_bytes, np.int8).tobytes(),
    }
    return tiny.bytes_example(values, drop)


def test_wrong_feature_byte_length_names_file_index_and_bytes(tmp_path):
    path = _write_raw_shard(
        tmp_path, "train", [_record(), _record(features_bytes=124)]
    )
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _read(nt.native_split(tmp_path, "train"))
    message = str(info.value)
    assert str(path) in message
    assert "record index 1" in message
    assert "key `features` has 124 bytes, expected 128 bytes" in message


def test_missing_key_reads_as_zero_bytes(tmp_path):
    _write_raw_shard(tmp_path, "train", [_record(drop=("labels",))])
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"record index 0\): key `labels` is missing \(or empty\), "
        r"expected 5",
    ):
        _read(nt.native_split(tmp_path, "train"))


def test_skip_corrupt_counts_bad_records(tmp_path, caplog):
    _write_raw_shard(
        tmp_path,
        "train",
        [
            _record(),
            _record(labels_bytes=4),
            _record(),
            _record(drop=("features",)),
        ],
    )
    reader = nt.native_split(tmp_path, "train", skip_corrupt=True)
    with caplog.at_level(logging.WARNING):
        got = _read(reader)
    assert len(got) == 2
    assert reader.skip_report.bad_records == 2
    assert reader.skip_report.corrupt_files == 0
    assert "2 bad records skipped" in caplog.text


def test_truncated_shard_is_reported_at_construction(tmp_path):
    nw.write_native_split(
        tmp_path, "train", _examples(4), (4, 8), NAMES, examples_per_shard=2
    )
    shard = tmp_path / "train-00001.tfrecord"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(str(shard)) + ".*truncated"):
        nt.native_split(tmp_path, "train")
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="train-00001.tfrecord"):
        nt.native_split(tmp_path, "train")


@pytest.mark.parametrize("compression", ["ZLIB", None])
def test_corrupt_shard_names_file_and_skip_counts(tmp_path, compression):
    nw.write_native_split(
        tmp_path,
        "train",
        _examples(6),
        (4, 8),
        NAMES,
        examples_per_shard=3,
        compression=compression,
        feature_dtype="float32",
    )
    shard = tmp_path / "train-00001.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, corrupt content
    shard.write_bytes(bytes(data))
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _read(nt.native_split(tmp_path, "train"))
    message = str(info.value)
    assert f"Corrupt or truncated record file {shard}" in message
    assert "of the 3 it holds" in message
    reader = nt.native_split(tmp_path, "train", skip_corrupt=True)
    got = _read(reader)
    assert 3 <= len(got) < 6
    assert reader.skip_report.corrupt_files == 1


def test_sharding_and_file_shuffling(tmp_path):
    nw.write_native_split(
        tmp_path, "train", _examples(8), (4, 8), NAMES, examples_per_shard=2
    )
    reader = nt.native_split(tmp_path, "train")
    parts = [
        {
            e["image_id"]
            for e in _read(
                reader,
                input_context=tf.distribute.InputContext(
                    num_input_pipelines=2, input_pipeline_id=i
                ),
            )
        }
        for i in range(2)
    ]
    assert not parts[0] & parts[1]
    assert len(parts[0] | parts[1]) == 8
    shuffled = [e["image_id"] for e in _read(reader, files_seed=3)]
    assert sorted(shuffled) == sorted(e["image_id"] for e in _read(reader))


def _space():
    return LabelSpace.from_arrays(
        ["a", "b", "c", "d", "e", "u1", "u2"],
        np.eye(7, dtype=np.float32),
        seen=np.arange(5),
    )


def test_native_source_checks_label_names(tmp_path):
    space = _space()
    nw.write_native_split(tmp_path, "train", _examples(3), (4, 8), NAMES)
    nw.write_native_split(
        tmp_path,
        "test",
        _examples(2, num_labels=7),
        (4, 8),
        list(space.names),
        label_set="all",
    )
    source = nt.native_source(tmp_path, space, eval_ks=(3, 5))
    assert sorted(source.splits) == ["test", "train"]
    assert source.feature_shape == (4, 8)
    assert source.split("test").label_set == "all"
    assert len(_read(source.split("test"))[0]["labels"]) == 7

    other = LabelSpace.from_arrays(
        ["a", "b", "X", "d", "e", "u1", "u2"],
        np.eye(7, dtype=np.float32),
        seen=np.arange(5),
    )
    with pytest.raises(ValueError, match=r"column 2 is 'c'.*'X'"):
        nt.native_source(tmp_path, other)


def test_convert_split_from_any_reader(tmp_path):
    exs = _examples(5)

    def make_dataset(files_seed=None, input_context=None):
        def gen():
            for e in exs:
                yield {
                    "image_id": e["image_id"].encode(),
                    "features": e["features"],
                    "labels": e["labels"].astype(np.float32),
                }

        return tf.data.Dataset.from_generator(
            gen, output_signature=example_signature((4, 8), 5)
        )

    reader = SplitReader("train", "seen", make_dataset, num_examples=5)
    space = _space()
    meta = convert_split(
        reader,
        tmp_path / "out",
        "train",
        "float32",
        2,
        progress=False,
        label_space=space,
    )
    assert meta["num_examples"] == 5 and len(meta["shards"]) == 3
    assert meta["label_names"] == NAMES
    got = _by_id(_read(nt.native_split(tmp_path / "out", "train")))
    for e in exs:
        np.testing.assert_array_equal(
            got[e["image_id"]]["features"], e["features"]
        )
        np.testing.assert_array_equal(got[e["image_id"]]["labels"], e["labels"])


def test_bad_label_values_are_refused_with_their_position(tmp_path):
    from epsilon_tf.data.base import first_invalid_label
    from epsilon_tf.data.readers.in_memory import array_split

    assert first_invalid_label(np.array([1, 0, -1, 1.0])) is None
    assert first_invalid_label(np.array([[1, 0], [0.5, 2]])) == (2, 0.5)
    (example,) = _examples(1)
    image_id, features = example["image_id"], example["features"]
    labels = example["labels"].astype(np.float32)
    labels[3] = 2
    with nw.NativeWriter(tmp_path, "train", (4, 8), NAMES) as writer:
        with pytest.raises(
            ValueError,
            match=r"labels must be -1, 0 or \+1. Received 2.0 at position 3",
        ):
            writer.write(image_id, features, labels)
    with pytest.raises(ValueError, match=r"only \+1, -1 and 0"):
        array_split("train", features[None], labels[None], "seen")
