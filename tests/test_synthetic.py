"""Tests of the built-in synthetic benchmark."""

import dataclasses
import os

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from epsilon_tf.data.worlds.synthetic import (
    SyntheticConfig,
    generate_split,
    synthetic_label_space,
    synthetic_source,
    synthetic_world,
)
from epsilon_tf.labels import LabelSpace

SMALL = SyntheticConfig(
    num_themes=6,
    num_seen=60,
    num_unseen=12,
    embedding_dim=32,
    grid_shape=(5, 5),
    channels=32,
    num_train=900,
    num_test=600,
    seed=11,
)
TINY = dataclasses.replace(SMALL, num_train=40, num_test=30)


def _collect(config, split):
    ids, feats, labels, present = zip(
        *generate_split(config, split, return_present=True), strict=True
    )
    return list(ids), np.stack(feats), np.stack(labels), np.stack(present)


@pytest.fixture(scope="module")
def small_train():
    return _collect(SMALL, "train")


@pytest.fixture(scope="module")
def small_test():
    return _collect(SMALL, "test")


def test_defaults_and_shapes(small_train, small_test):
    default = SyntheticConfig()
    assert default.feature_shape == (49, 64)
    assert 200 <= default.num_seen <= 300 and 30 <= default.num_unseen <= 50
    ids, feats, labels, present = small_train
    assert ids[0] == "train_000000" and len(set(ids)) == SMALL.num_train
    assert feats.dtype == np.float32
    assert feats.shape == (SMALL.num_train, *SMALL.feature_shape)
    assert labels.dtype == np.int8 and labels.shape[1] == SMALL.num_seen
    assert present.shape[1] == SMALL.num_labels
    assert feats.min() >= 0.0 and np.isfinite(feats).all()  # ReLU maps
    _, tfeats, tlabels, _ = small_test
    assert tlabels.shape == (SMALL.num_test, SMALL.num_labels)
    assert set(np.unique(tlabels)) <= {-1, 0, 1}


def test_label_space():
    space = synthetic_label_space(SMALL)
    assert space.num_labels == 72 and space.embedding_dim == 32
    np.testing.assert_array_equal(space.seen, np.arange(60))
    np.testing.assert_array_equal(space.unseen, np.arange(60, 72))
    assert space.names[0].startswith("t0") and "_label000" in space.names[0]
    themes = synthetic_world(SMALL).themes
    assert all(
        n.startswith(f"t{t:02d}_")
        for n, t in zip(space.names, themes, strict=True)
    )
    # Every theme has unseen labels; word vectors cluster by theme.
    assert set(themes[space.unseen]) == set(range(SMALL.num_themes))
    w = space.normalized_vectors()
    cos = w @ w.T
    same = themes[:, None] == themes[None, :]
    off_diag = ~np.eye(len(themes), dtype=bool)
    assert cos[same & off_diag].mean() > cos[~same].mean() + 0.3


def test_determinism():
    a = list(generate_split(TINY, "train"))
    b = list(generate_split(TINY, "train"))
    assert [x[0] for x in a] == [x[0] for x in b]
    for (_, fa, la), (_, fb, lb) in zip(a, b, strict=True):
        assert fa.tobytes() == fb.tobytes() and la.tobytes() == lb.tobytes()
    other = list(generate_split(dataclasses.replace(TINY, seed=12), "train"))
    assert not np.array_equal(
        np.stack([x[1] for x in a]), np.stack([x[1] for x in other])
    )
    test = list(generate_split(TINY, "test"))
    assert not np.array_equal(a[0][1], test[0][1])
    space_a = synthetic_label_space(TINY)
    space_b = synthetic_label_space(dataclasses.replace(TINY, seed=12))
    assert not np.array_equal(space_a.vectors, space_b.vectors)


def test_label_statistics(small_train, small_test):
    _, _, labels, present = small_train
    per_image = present.sum(1)
    assert per_image.min() >= 1 and per_image.max() <= 5
    assert 2.5 <= per_image.mean() <= 3.5

    # Theme co-occurrence is far above the across-theme rate.
    themes = synthetic_world(SMALL).themes
    same, pairs = 0, 0
    for row in present:
        idx = np.flatnonzero(row)
        for i in range(len(idx)):
            for j in range(i + 1, len(idx)):
                pairs += 1
                same += themes[idx[i]] == themes[idx[j]]
    assert same / pairs > 3.0 / SMALL.num_themes

    # Flickr-like noise on the seen labels.
    seen_present = present[:, : SMALL.num_seen]
    known = labels != 0
    missing = (labels[seen_present & known] == -1).mean()
    false = (labels[~seen_present & known] == 1).mean()
    unknown = (labels == 0).mean()
    assert abs(missing - SMALL.missing_tag_prob) < 0.04
    assert 0.3 * SMALL.false_tag_prob < false < 2.5 * SMALL.false_tag_prob
    assert abs(unknown - SMALL.unknown_prob) < 0.01

    # Test: seen part noisy the same way, unseen part clean.
    _, _, tlabels, tpresent = small_test
    unseen = tlabels[:, SMALL.num_seen :]
    assert not (unseen == 0).any()
    np.testing.assert_array_equal(unseen == 1, tpresent[:, SMALL.num_seen :])
    tseen = tlabels[:, : SMALL.num_seen]
    tmiss = (tseen[tpresent[:, : SMALL.num_seen] & (tseen != 0)] == -1).mean()
    assert abs(tmiss - SMALL.missing_tag_prob) < 0.05
    assert (tseen == 0).any()
    no_unseen = (unseen != 1).all(axis=1).mean()
    assert 0.0 < no_unseen < 0.25


def test_unseen_labels_recognizable_by_oracle(small_test):
    """Cosine to the linear map of the word vectors ranks unseen labels."""
    _, feats, labels, present = small_test
    world = synthetic_world(SMALL)
    mapped = world.word_vectors @ world.visual_map.T
    mapped /= np.linalg.norm(mapped, axis=1, keepdims=True)
    pooled = feats.max(axis=1)
    pooled = pooled - pooled.mean(axis=0)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    scores = pooled @ mapped.T
    aps = []
    for k in range(SMALL.num_seen, SMALL.num_labels):
        truth = labels[:, k] == 1
        aps.append(
            average_precision_score(truth, scores[:, k]) if truth.any() else 0
        )
    chance = (labels[:, SMALL.num_seen :] == 1).mean()
    assert np.mean(aps) > 5 * chance, (np.mean(aps), chance)
    # ... but not perfectly: the word vectors do not explain everything.
    assert np.mean(aps) < 0.95


def test_config_errors():
    with pytest.raises(ValueError, match="num_seen"):
        SyntheticConfig(num_seen=0)
    with pytest.raises(ValueError, match="missing_tag_prob"):
        SyntheticConfig(missing_tag_prob=1.5)
    with pytest.raises(ValueError, match="split"):
        next(generate_split(TINY, "validation"))
    assert SyntheticConfig().cache_key() == SyntheticConfig().cache_key()
    assert TINY.cache_key() != SMALL.cache_key()


def _mtimes(directory):
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            out[path] = os.stat(path).st_mtime_ns
    return out


def _read_split(source, split):
    ds = source.split(split).dataset()
    rows = list(ds.as_numpy_iterator())
    return (
        [r["image_id"].decode() for r in rows],
        np.stack([r["features"] for r in rows]),
        np.stack([r["labels"] for r in rows]),
    )


def test_source_writes_once_and_reads_back(tmp_path, capsys):
    cache = str(tmp_path / "cache")
    source = synthetic_source(cache, TINY)
    assert "synthetic" in capsys.readouterr().out
    directory = os.path.join(cache, TINY.cache_key())
    assert os.path.isdir(directory)
    assert source.feature_shape == TINY.feature_shape
    assert source.eval_ks == (3, 5)
    assert source.split("train").label_set == "seen"
    assert source.split("test").label_set == "all"
    assert source.split("train").num_examples == TINY.num_train
    loaded = LabelSpace.load(directory)
    assert loaded.names == source.label_space.names
    np.testing.assert_array_equal(loaded.vectors, source.label_space.vectors)

    for split in ("train", "test"):
        ids, feats, labels = _read_split(source, split)
        exp_ids, exp_feats, exp_labels, _ = _collect(TINY, split)
        assert ids == exp_ids
        np.testing.assert_allclose(feats, exp_feats, rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(labels, exp_labels.astype(np.float32))

    before = _mtimes(directory)
    again = synthetic_source(cache, TINY, progress=False)
    assert _mtimes(directory) == before
    assert again.label_space.names == source.label_space.names


def test_partial_cache_is_rebuilt(tmp_path):
    cache = str(tmp_path / "cache")
    synthetic_source(cache, TINY, progress=False)
    directory = os.path.join(cache, TINY.cache_key())
    sidecars = [p for p in _mtimes(directory) if p.endswith(".json")]
    victim = [p for p in sidecars if "test" in os.path.basename(p)]
    assert victim, sidecars
    os.remove(victim[0])
    source = synthetic_source(cache, TINY, progress=False)
    assert os.path.exists(victim[0])
    _, _, labels = _read_split(source, "test")
    assert labels.shape == (TINY.num_test, TINY.num_labels)
