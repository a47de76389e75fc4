"""Tests for the BiAM HDF5 readers, on files in the release layout."""

import pickle

import h5py
import numpy as np
import pytest
import tensorflow as tf

from epsilon_tf.data.readers import biam_hdf5 as bh
from epsilon_tf.labels import LabelSpace

NAMES = ["actor_0001_2124494179", "beach_0002_3021", "sky_0003_77"]


def _nus_space(num_seen=4, num_unseen=2):
    k = num_seen + num_unseen
    return LabelSpace.from_arrays(
        [f"l{i}" for i in range(k)], np.eye(k), seen=np.arange(num_seen)
    )


def _write_nus(tmp_path, split, names, shape=(4, 8), num_seen=4, seed=0):
    """`nus_wide_{split}.h5` + names pickle, as BiAM's extractor writes."""
    rng = np.random.default_rng(seed)
    path = tmp_path / f"nus_wide_{split}.h5"
    truth = {}
    num_labels = num_seen if split == "train" else num_seen + 2
    with h5py.File(path, "w") as h5:
        for name in names:
            features = rng.normal(size=shape).astype(np.float32)
            labels = rng.integers(-1, 2, size=num_labels).astype(np.int8)
            h5.create_dataset(
                f"{name}-features", data=features.T, compression="gzip"
            )
            h5.create_dataset(f"{name}-labels", data=labels)
            if split == "test":
                h5.create_dataset(f"{name}-labels_81", data=labels[num_seen:])
            truth[name] = (features, labels)
    names_path = tmp_path / f"{split}_img_names.pkl"
    with open(names_path, "wb") as f:
        pickle.dump({"img_names": list(names)}, f)
    return path, names_path, truth


def _read(reader, **kwargs):
    return list(reader.dataset(**kwargs).as_numpy_iterator())


@pytest.mark.parametrize("split", ["train", "test"])
def test_nus_wide_record_by_record(tmp_path, split):
    path, names_path, truth = _write_nus(tmp_path, split, NAMES)
    reader = bh.biam_nus_wide_split(
        path, names_path, split, _nus_space(), feature_shape=(4, 8)
    )
    assert reader.num_examples == 3
    assert reader.label_set == ("all" if split == "test" else "seen")
    got = _read(reader)
    assert [g["image_id"].decode() for g in got] == NAMES
    for g in got:
        features, labels = truth[g["image_id"].decode()]
        np.testing.assert_array_equal(g["features"], features)
        np.testing.assert_array_equal(g["labels"], labels)


def test_nus_wide_real_shape_two_records(tmp_path):
    path, names_path, truth = _write_nus(
        tmp_path, "test", NAMES[:2], shape=(196, 512), num_seen=925
    )
    space = _nus_space(925, 2)
    got = _read(bh.biam_nus_wide_split(path, names_path, "test", space))
    assert len(got) == 2
    for g in got:
        features, labels = truth[g["image_id"].decode()]
        assert g["features"].shape == (196, 512)
        np.testing.assert_array_equal(g["features"], features)
        np.testing.assert_array_equal(g["labels"], labels)


def test_nus_wide_unseen_first_space(tmp_path):
    path, names_path, truth = _write_nus(tmp_path, "test", NAMES[:1])
    space = LabelSpace(
        tuple("abcdef"), np.eye(6), np.arange(2, 6), np.arange(2)
    )
    (g,) = _read(
        bh.biam_nus_wide_split(path, names_path, "test", space, (4, 8))
    )
    labels = truth[NAMES[0]][1]
    np.testing.assert_array_equal(g["labels"], np.r_[labels[4:], labels[:4]])


def test_nus_wide_seed_and_sharding(tmp_path):
    names = [f"img_{i}" for i in range(6)]
    path, names_path, _ = _write_nus(tmp_path, "train", names)
    reader = bh.biam_nus_wide_split(
        path, names_path, "train", _nus_space(), (4, 8)
    )
    shuffled = [g["image_id"].decode() for g in _read(reader, files_seed=1)]
    assert sorted(shuffled) == names and shuffled != names
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
    part = [g["image_id"].decode() for g in _read(reader, input_context=ctx)]
    assert part == names[1::2]


def test_nus_wide_missing_dataset_names_file_and_key(tmp_path):
    path, names_path, _ = _write_nus(tmp_path, "train", NAMES)
    with h5py.File(path, "a") as h5:
        del h5[f"{NAMES[1]}-labels"]
    reader = bh.biam_nus_wide_split(
        path, names_path, "train", _nus_space(), (4, 8)
    )
    with pytest.raises(tf.errors.OpError) as info:
        _read(reader)
    message = str(info.value)
    assert str(path) in message
    assert f"'{NAMES[1]}-labels'" in message


def test_nus_wide_name_missing_from_file(tmp_path):
    path, names_path, _ = _write_nus(tmp_path, "train", NAMES)
    with open(names_path, "wb") as f:
        pickle.dump({"img_names": NAMES + ["ghost_0009_1"]}, f)
    reader = bh.biam_nus_wide_split(
        path, names_path, "train", _nus_space(), (4, 8)
    )
    with pytest.raises(
        tf.errors.OpError, match=r"image 'ghost_0009_1' \(entry 3 of"
    ):
        _read(reader)


def test_nus_wide_wrong_label_length_and_shape(tmp_path):
    path, names_path, _ = _write_nus(tmp_path, "train", NAMES)
    reader = bh.biam_nus_wide_split(
        path, names_path, "train", _nus_space(num_seen=5), (4, 8)
    )
    with pytest.raises(
        tf.errors.OpError, match=r"-labels' has 4 labels; expected 5"
    ):
        _read(reader)
    reader = bh.biam_nus_wide_split(
        path, names_path, "train", _nus_space(), (8, 4)
    )
    with pytest.raises(tf.errors.OpError, match=r"shape \(8, 4\); expected"):
        _read(reader)


def test_names_pickle_must_be_a_dict(tmp_path):
    path, _, _ = _write_nus(tmp_path, "train", NAMES)
    bad = tmp_path / "names.pkl"
    with open(bad, "wb") as f:
        pickle.dump(NAMES, f)
    with pytest.raises(ValueError, match=r"names\.pkl must hold a dict"):
        bh.biam_nus_wide_split(path, bad, "train", _nus_space(), (4, 8))


def _write_oi_chunk(path, ids, split, num_seen=6, num_unseen=5, seed=0):
    rng = np.random.default_rng(seed)
    truth = {}
    with h5py.File(path, "w") as h5:
        for image_id in ids:
            features = rng.normal(size=(4, 8)).astype(np.float32)
            seen = rng.integers(-1, 2, size=num_seen).astype(np.int8)
            unseen = rng.integers(-1, 2, size=num_unseen).astype(np.int8)
            key = f"{image_id}.jpg"
            h5.create_dataset(f"{key}-features", data=features.T)
            h5.create_dataset(f"{key}-seenlabels", data=seen)
            if split == "test":
                h5.create_dataset(f"{key}-unseenlabels", data=unseen)
            truth[image_id] = (features, seen, unseen)
    return truth


def _oi_space():
    return LabelSpace.from_arrays(
        [f"s{i}" for i in range(6)] + ["u4", "u1"], np.eye(8), seen=np.arange(6)
    )


@pytest.mark.parametrize("split", ["train", "test"])
def test_open_images_chunks(tmp_path, split):
    truth = _write_oi_chunk(tmp_path / "chunk_0.h5", ["ffa1", "0b2c"], split)
    truth.update(
        _write_oi_chunk(tmp_path / "chunk_1.h5", ["77de"], split, seed=1)
    )
    top = [4, 1]
    reader = bh.biam_open_images_split(
        str(tmp_path / "chunk_*.h5"),
        split,
        _oi_space(),
        top,
        (4, 8),
        num_unseen_total=5,
    )
    got = _read(reader)
    # Round-robin over the chunks; names sorted within a chunk.
    assert [g["image_id"].decode() for g in got] == ["0b2c", "77de", "ffa1"]
    for g in got:
        features, seen, unseen = truth[g["image_id"].decode()]
        np.testing.assert_array_equal(g["features"], features)
        want = seen if split == "train" else np.r_[seen, unseen[top]]
        np.testing.assert_array_equal(g["labels"], want)


def test_open_images_test_needs_unseen_labels(tmp_path):
    _write_oi_chunk(tmp_path / "c.h5", ["ab12"], "train")
    reader = bh.biam_open_images_split(
        tmp_path / "c.h5", "test", _oi_space(), [4, 1], (4, 8), 5
    )
    with pytest.raises(
        tf.errors.OpError,
        match=r"c\.h5 \(record index 0\): dataset 'ab12\.jpg-unseenlabels'",
    ):
        _read(reader)


def test_bad_label_value_names_the_dataset_and_position(tmp_path):
    path, names_path, _ = _write_nus(tmp_path, "train", NAMES)
    with h5py.File(path, "a") as h5:
        labels = h5[f"{NAMES[1]}-labels"][...]
        labels[2] = 3
        h5[f"{NAMES[1]}-labels"][...] = labels
    reader = bh.biam_nus_wide_split(
        path, names_path, "train", _nus_space(), (4, 8)
    )
    with pytest.raises(
        tf.errors.OpError,
        match=rf"dataset '{NAMES[1]}-labels' holds 3 at position 2; "
        r"labels must be -1, 0 or \+1",
    ):
        _read(reader)
