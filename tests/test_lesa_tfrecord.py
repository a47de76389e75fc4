"""Tests for the LESA TFRecord readers, on files in the release layout."""

import logging

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny

from epsilon_tf.data.readers import lesa_tfrecord as lt
from epsilon_tf.data.records.compression import compression_from_name
from epsilon_tf.labels import LabelSpace

# A tiny NUS-WIDE: TagList ["t0", "c1", "t2", "t3", "c0"], concepts
# ["c0", "c1", "c2"] -> seen tags t0, t2, t3 (TagList positions 0, 2, 3).
NUM_TAGS = 5
SEEN_TAG_INDEX = np.array([0, 2, 3])
CONCEPT_TAGS = [4, 1]  # positions of c0, c1 in the tag list (zeroed)


def _nus_space():
    return LabelSpace(
        ("t0", "t2", "t3", "c0", "c1", "c2"),
        np.random.default_rng(0).normal(size=(6, 4)),
        np.arange(3),
        np.arange(3, 6),
    )


def _nus_records(n, shape=(4, 8), num_tags=NUM_TAGS, num_unseen=3, seed=0):
    """LESA NUS-WIDE records (as extract_*_2_TFRecord.py writes them)."""
    rng = np.random.default_rng(seed)
    records, truth = [], []
    for i in range(n):
        feature = rng.normal(size=shape).astype(np.float32)
        label_1k = rng.choice([-1.0, 1.0], size=num_tags).astype(np.float32)
        label_1k[[c for c in CONCEPT_TAGS if c < num_tags]] = 0
        label_81 = rng.choice([-1.0, 1.0], size=num_unseen).astype(np.float32)
        img_id = f"Flickr/actor/{i:04d}_{i * 7}.jpg"
        records.append(
            tiny.bytes_example(
                {
                    "img_id": img_id.encode(),
                    "feature": feature.tobytes(),
                    "label_1k": label_1k.tobytes(),
                    "label_81": label_81.tobytes(),
                }
            )
        )
        truth.append((img_id, feature, label_1k, label_81))
    return records, truth


def _write(path, records, compression=None):
    with tf.io.TFRecordWriter(str(path), options=compression or "") as w:
        for r in records:
            w.write(r)
    return path


def _read(reader, **kwargs):
    return list(reader.dataset(**kwargs).as_numpy_iterator())


@pytest.mark.parametrize(
    "name,compression",
    [
        ("NUS_WIDE_Train_full_feature_ZLIB.tfrecords", "ZLIB"),
        ("nus_train_GZIP.tfrecords", "GZIP"),
        ("nus_train.tfrecords", None),
    ],
)
def test_nus_wide_train_record_by_record(tmp_path, name, compression):
    assert compression_from_name(name) == (compression or "")
    records, truth = _nus_records(5)
    path = _write(tmp_path / name, records, compression)
    reader = lt.lesa_nus_wide_split(
        str(path),
        "train",
        _nus_space(),
        SEEN_TAG_INDEX,
        feature_shape=(4, 8),
        num_tags=NUM_TAGS,
    )
    assert reader.label_set == "seen"
    got = _read(reader)
    assert len(got) == 5
    for g, (img_id, feature, label_1k, _) in zip(got, truth, strict=True):
        assert g["image_id"].decode() == img_id
        np.testing.assert_array_equal(g["features"], feature)
        np.testing.assert_array_equal(g["labels"], label_1k[SEEN_TAG_INDEX])


def test_nus_wide_test_labels_cover_seen_then_unseen(tmp_path):
    records, truth = _nus_records(4, seed=1)
    path = _write(tmp_path / "NUS_WIDE_Test_ZLIB.tfrecords", records, "ZLIB")
    reader = lt.lesa_nus_wide_split(
        path,
        "test",
        _nus_space(),
        SEEN_TAG_INDEX,
        feature_shape=(4, 8),
        num_tags=NUM_TAGS,
    )
    assert reader.label_set == "all"
    got = _read(reader)
    for g, (_, feature, label_1k, label_81) in zip(got, truth, strict=True):
        np.testing.assert_array_equal(g["features"], feature)
        want = np.concatenate([label_1k[SEEN_TAG_INDEX], label_81])
        np.testing.assert_array_equal(g["labels"], want)


def test_nus_wide_unseen_first_label_space(tmp_path):
    """Labels land in label-space order whatever the seen/unseen layout."""
    records, truth = _nus_records(2, seed=2)
    path = _write(tmp_path / "t.tfrecords", records)
    space = LabelSpace(
        ("c0", "c1", "c2", "t0", "t2", "t3"),
        np.eye(6),
        np.arange(3, 6),
        np.arange(3),
    )
    got = _read(
        lt.lesa_nus_wide_split(
            path, "test", space, SEEN_TAG_INDEX, (4, 8), num_tags=NUM_TAGS
        )
    )
    for g, (_, _, label_1k, label_81) in zip(got, truth, strict=True):
        want = np.concatenate([label_81, label_1k[SEEN_TAG_INDEX]])
        np.testing.assert_array_equal(g["labels"], want)


def test_nus_wide_real_shape_two_records(tmp_path):
    records, truth = _nus_records(
        2, shape=(196, 512), num_tags=1000, num_unseen=81, seed=3
    )
    path = _write(tmp_path / "NUS_WIDE_Test_ZLIB.tfrecords", records, "ZLIB")
    seen_index = np.array([i for i in range(1000) if i not in (1, 4)][:925])
    names = [f"tag{i}" for i in range(925)] + [f"concept{i}" for i in range(81)]
    space = LabelSpace.from_arrays(
        names, np.ones((1006, 3)), seen=np.arange(925)
    )
    got = _read(lt.lesa_nus_wide_split(path, "test", space, seen_index))
    assert len(got) == 2
    for g, (_, feature, label_1k, label_81) in zip(got, truth, strict=True):
        assert g["features"].shape == (196, 512)
        np.testing.assert_array_equal(g["features"], feature)
        want = np.concatenate([label_1k[seen_index], label_81])
        np.testing.assert_array_equal(g["labels"], want)


def test_nus_wide_with_the_real_vocabulary(shared_data, tmp_path):
    from epsilon_tf.data.readers.label_files import (
        nus_wide_label_space,
        nus_wide_seen_tag_indices,
    )

    d = shared_data / "nus_wide"
    space = nus_wide_label_space(
        d / "TagList1k.txt",
        d / "Concepts81.txt",
        d / "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300",
    )
    index = nus_wide_seen_tag_indices(d / "TagList1k.txt", d / "Concepts81.txt")
    tags = (d / "TagList1k.txt").read_text().splitlines()
    label_1k = np.zeros(1000, np.float32) - 1
    label_1k[tags.index("nature")] = 1  # seen tag 0
    label_1k[tags.index("sky")] = 0  # a concept: zeroed by LESA
    label_81 = np.zeros(81, np.float32) - 1
    label_81[space.names[925:].index("sky")] = 1
    record = tiny.bytes_example(
        {
            "img_id": b"x.jpg",
            "feature": np.ones((4, 8), np.float32).tobytes(),
            "label_1k": label_1k.tobytes(),
            "label_81": label_81.tobytes(),
        }
    )
    path = _write(tmp_path / "NUS_ZLIB.tfrecords", [record], "ZLIB")
    (g,) = _read(lt.lesa_nus_wide_split(path, "test", space, index, (4, 8)))
    assert g["labels"].shape == (1006,)
    positives = [space.names[i] for i in np.flatnonzero(g["labels"] == 1)]
    assert positives == ["nature", "sky"]
    assert np.count_nonzero(g["labels"] == 0) == 0


def _oi_records(n, split, num_seen=6, num_unseen=5, shape=(4, 8), seed=0):
    rng = np.random.default_rng(seed)
    records, truth = [], []
    for i in range(n):
        feature = rng.normal(size=shape).astype(np.float32)
        seen = rng.integers(-1, 2, size=num_seen).astype(np.int32)
        unseen = rng.integers(-1, 2, size=num_unseen).astype(np.int32)
        values = {"img_id": f"{i:016x}".encode(), "feature": feature.tobytes()}
        if split == "test":
            values["seen_label"] = seen.tobytes()
            values["unseen_label"] = unseen.tobytes()
        else:
            values["label"] = seen.tobytes()
        records.append(tiny.bytes_example(values))
        truth.append((feature, seen, unseen))
    return records, truth


def _oi_space():
    return LabelSpace.from_arrays(
        [f"s{i}" for i in range(6)] + ["u3", "u0"],
        np.eye(8),
        seen=np.arange(6),
    )


def test_open_images_train_and_test(tmp_path):
    top = np.array([3, 0])
    train, train_truth = _oi_records(3, "train")
    files = [
        _write(tmp_path / "OI_train_0_ZLIB.tfrecords", train[:2], "ZLIB"),
        _write(tmp_path / "OI_train_1_ZLIB.tfrecords", train[2:], "ZLIB"),
    ]
    reader = lt.lesa_open_images_split(
        str(tmp_path / "OI_train_*_ZLIB.tfrecords"),
        "train",
        _oi_space(),
        top,
        (4, 8),
        num_unseen_total=5,
    )
    assert reader.files == tuple(str(f) for f in files)
    got = {g["image_id"]: g for g in _read(reader)}
    for i, (feature, seen, _) in enumerate(train_truth):
        g = got[f"{i:016x}".encode()]
        np.testing.assert_array_equal(g["features"], feature)
        np.testing.assert_array_equal(g["labels"], seen)

    test, test_truth = _oi_records(3, "test", seed=5)
    path = _write(tmp_path / "OI_seen_unseen_test_ZLIB.tfrecords", test, "ZLIB")
    reader = lt.lesa_open_images_split(
        path, "test", _oi_space(), top, (4, 8), num_unseen_total=5
    )
    for g, (feature, seen, unseen) in zip(
        _read(reader), test_truth, strict=True
    ):
        np.testing.assert_array_equal(g["features"], feature)
        np.testing.assert_array_equal(
            g["labels"], np.concatenate([seen, unseen[top]])
        )


def test_open_images_missing_unseen_key(tmp_path):
    record = tiny.bytes_example(
        {
            "img_id": b"a",
            "feature": np.zeros(32, np.float32).tobytes(),
            "seen_label": np.zeros(6, np.int32).tobytes(),
        }
    )
    path = _write(tmp_path / "oi_test.tfrecords", [record])
    reader = lt.lesa_open_images_split(
        path, "test", _oi_space(), [3, 0], (4, 8), num_unseen_total=5
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"oi_test\.tfrecords \(record index 0\): key `unseen_label` "
        r"is missing \(or empty\), expected 20 bytes",
    ):
        _read(reader)


def _nus_reader(path, **kwargs):
    return lt.lesa_nus_wide_split(
        path,
        "test",
        _nus_space(),
        SEEN_TAG_INDEX,
        feature_shape=(4, 8),
        num_tags=NUM_TAGS,
        **kwargs,
    )


def test_wrong_feature_byte_length(tmp_path):
    records, _ = _nus_records(3)
    records[2] = _nus_records(1, shape=(4, 7))[0][0]
    path = _write(tmp_path / "bad_ZLIB.tfrecords", records, "ZLIB")
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _read(_nus_reader(path))
    message = str(info.value)
    assert f"Bad record in {path} (record index 2)" in message
    assert "key `feature` has 112 bytes, expected 128 bytes" in message


def test_bad_label_value(tmp_path):
    records, _ = _nus_records(1)
    label_81 = np.array([1, 0.5, -1], np.float32)
    records.append(
        tiny.bytes_example(
            {
                "img_id": b"x",
                "feature": np.zeros(32, np.float32).tobytes(),
                "label_1k": np.zeros(NUM_TAGS, np.float32).tobytes(),
                "label_81": label_81.tobytes(),
            }
        )
    )
    path = _write(tmp_path / "labels.tfrecords", records)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"record index 1\): key `label_81` holds 0\.5.* position 1",
    ):
        _read(_nus_reader(path))


@pytest.mark.parametrize("compression", ["ZLIB", "GZIP", None])
def test_truncated_file_names_the_file(tmp_path, compression):
    records, _ = _nus_records(6)
    suffix = compression or "RAW"
    full = _write(tmp_path / f"full_{suffix}.tfrecords", records, compression)
    data = full.read_bytes()
    cut = tmp_path / f"cut_{suffix}.tfrecords"
    # Not at a record boundary: an uncompressed file cut exactly between
    # two records is a valid, shorter file (TFRecord has no trailer).
    cut.write_bytes(data[: len(data) * 2 // 3 + 7])
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _read(_nus_reader(cut))
    message = str(info.value)
    assert f"Corrupt or truncated record file {cut}" in message
    assert "record index" in message


def test_corrupt_uncompressed_record_names_the_file(tmp_path):
    records, _ = _nus_records(4)
    path = _write(tmp_path / "raw.tfrecords", records)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55  # same size: a CRC mismatch
    path.write_bytes(bytes(data))
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"raw\.tfrecords: only [0-9] records could be read",
    ):
        _read(_nus_reader(path))


def test_skip_corrupt_reports_the_count(tmp_path, caplog):
    records, truth = _nus_records(6)
    good = _write(tmp_path / "good_ZLIB.tfrecords", records[:3], "ZLIB")
    bad_records = records[3:5] + [_nus_records(1, shape=(2, 8))[0][0]]
    bad = _write(tmp_path / "bad_ZLIB.tfrecords", bad_records, "ZLIB")
    full = _write(tmp_path / "cut_ZLIB.tfrecords", records, "ZLIB")
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])
    reader = _nus_reader([good, bad, full], skip_corrupt=True)
    with caplog.at_level(logging.WARNING):
        got = _read(reader)
    report = reader.skip_report
    assert report.bad_records == 1
    assert report.corrupt_files == 1
    ids = [g["image_id"].decode() for g in got]
    # 3 good + 2 good of "bad" + the readable head of the truncated file.
    assert ids[:2] == [truth[0][0], truth[3][0]]
    assert 5 <= len(got) < 11
    assert "1 bad records skipped, 1 corrupt/truncated files" in caplog.text
    assert str(tmp_path / "cut_ZLIB.tfrecords") in caplog.text


def test_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        _nus_reader(tmp_path / "nothing_here.tfrecords")
    with pytest.raises(FileNotFoundError, match=r"No files match"):
        _nus_reader(str(tmp_path / "*.tfrecords"))
    path = _write(tmp_path / "a.tfrecords", _nus_records(1)[0])
    with pytest.raises(ValueError, match="one entry per seen label"):
        lt.lesa_nus_wide_split(path, "train", _nus_space(), [0, 2])
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        lt.lesa_nus_wide_split(
            path, "train", _nus_space(), [0, 2, 9], num_tags=5
        )
    with pytest.raises(ValueError, match="top_unseen_indices"):
        lt.lesa_open_images_split(
            path, "test", _oi_space(), [0, 9], (4, 8), num_unseen_total=5
        )
