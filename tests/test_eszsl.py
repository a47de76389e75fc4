"""Tests of the closed-form ESZSL baseline."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import average_precision_score

from epsilon_tf.baselines import (
    ESZSL,
    closed_form,
    normal_equations,
    pool_features,
)
from epsilon_tf.data.worlds.synthetic import (
    SyntheticConfig,
    generate_split,
    synthetic_label_space,
)

TINY = SyntheticConfig(
    num_themes=6,
    num_seen=60,
    num_unseen=12,
    embedding_dim=32,
    grid_shape=(5, 5),
    channels=32,
    num_train=1200,
    num_test=400,
    seed=3,
)


def _examples(features, labels):
    n = features.shape[0]
    return tf.data.Dataset.from_tensor_slices(
        {
            "image_id": [f"img{i}" for i in range(n)],
            "features": features.astype(np.float32),
            "labels": labels.astype(np.float32),
        }
    )


def _split_dataset(config, split, start=0, stop=None):
    ids, feats, labels = zip(*generate_split(config, split), strict=True)
    stop = len(ids) if stop is None else stop
    return tf.data.Dataset.from_tensor_slices(
        {
            "image_id": list(ids[start:stop]),
            "features": np.stack(feats[start:stop]),
            "labels": np.stack(labels[start:stop]).astype(np.float32),
        }
    )


def _map(scores, labels):
    aps = []
    for k in range(scores.shape[1]):
        keep = labels[:, k] != 0
        positive = labels[keep, k] > 0
        if not positive.any():
            aps.append(0.0)
            continue
        aps.append(average_precision_score(positive, scores[keep, k]))
    return float(np.mean(aps))


def test_closed_form_matches_direct_solve():
    x = np.array(
        [[1.0, 0.0, 2.0], [0.5, 1.0, -1.0], [2.0, -1.0, 0.0], [0.0, 3.0, 1.0]]
    )
    y = np.array([[1, -1], [-1, 1], [1, 0], [-1, -1]], dtype=np.float64)
    s_raw = np.array([[3.0, 4.0], [1.0, 0.0]])
    s = s_raw / np.linalg.norm(s_raw, axis=1, keepdims=True)
    gamma, lam = 0.5, 2.0
    expected = (
        np.linalg.inv(x.T @ x + gamma * np.eye(3))
        @ x.T
        @ y
        @ s
        @ np.linalg.inv(s.T @ s + lam * np.eye(2))
    )
    got = closed_form(x.T @ x, x.T @ y, s_raw, gamma, lam)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_streaming_statistics_equal_in_memory():
    rng = np.random.default_rng(0)
    feats = rng.normal(3.0, 2.0, size=(53, 4, 5)).astype(np.float32)
    labels = rng.choice([-1, 0, 1], size=(53, 6)).astype(np.float32)
    x = pool_features(feats).astype(np.float64)
    mean, std = x.mean(0), x.std(0)
    z = (x - mean) / std
    for ds, bs in (
        (_examples(feats, labels), 7),
        (_examples(feats, labels).batch(10), 999),
    ):
        eq = normal_equations(ds, batch_size=bs)
        assert eq.count == 53
        np.testing.assert_allclose(eq.mean, mean, rtol=1e-6)
        np.testing.assert_allclose(eq.std, std, rtol=1e-5)
        np.testing.assert_allclose(eq.gram, z.T @ z, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(eq.xty, z.T @ labels, rtol=1e-5, atol=1e-5)


def test_fit_single_value_equals_formula_and_scores():
    rng = np.random.default_rng(1)
    feats = rng.random((40, 3, 4)).astype(np.float32)
    labels = rng.choice([-1, 1], size=(40, 5)).astype(np.float32)
    vectors = rng.normal(size=(5, 6))
    model = ESZSL(batch_size=8).fit(
        _examples(feats, labels), None, vectors, gammas=[3.0], lambdas=[0.7]
    )
    x = pool_features(feats).astype(np.float64)
    z = (x - x.mean(0)) / x.std(0)
    s = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    v = np.linalg.solve(z.T @ z + 3.0 * np.eye(8), z.T @ labels @ s)
    v = v @ np.linalg.inv(s.T @ s + 0.7 * np.eye(6))
    np.testing.assert_allclose(model.projection, v, rtol=1e-4, atol=1e-5)
    other = rng.normal(size=(2, 6))
    w = other / np.linalg.norm(other, axis=1, keepdims=True)
    np.testing.assert_allclose(
        model.score(feats[:5], other), z[:5] @ v @ w.T, rtol=1e-4, atol=1e-4
    )
    assert model.selected.gamma == 3.0 and model.selected.lam == 0.7


def test_eszsl_transfers_to_unseen_labels(tmp_path):
    space = synthetic_label_space(TINY)
    train = _split_dataset(TINY, "train", 0, 1000)
    val = _split_dataset(TINY, "train", 1000)
    model = ESZSL().fit(train, val, space.subset("seen").vectors)
    g, lam, f1 = model.selected
    assert g in model.grid[0] and lam in model.grid[1]
    assert f1 == pytest.approx(model.grid[2].max())
    test = _split_dataset(TINY, "test")
    scores, labels = model.score_dataset(test, space.vectors)
    assert scores.shape == labels.shape == (400, space.num_labels)
    unseen = space.unseen
    zsl_map = _map(scores[:, unseen], labels[:, unseen])
    chance = float((labels[:, unseen] > 0).mean())
    assert zsl_map > 3 * chance, (zsl_map, chance)

    path = str(tmp_path / "eszsl.npz")
    model.save(path)
    loaded = ESZSL.load(path)
    assert loaded.selected == model.selected
    np.testing.assert_array_equal(
        loaded.score_dataset(test, space.vectors)[0], scores
    )


def test_errors():
    with pytest.raises(ValueError, match="batch_size"):
        ESZSL(batch_size=0)
    model = ESZSL()
    with pytest.raises(RuntimeError, match="not fitted"):
        model.score(np.zeros((1, 2, 3)), np.ones((2, 4)))
    feats = np.ones((4, 2, 3), np.float32)
    labels = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="val_ds"):
        model.fit(_examples(feats, labels), None, np.ones((2, 4)))
    with pytest.raises(ValueError, match="same labels"):
        model.fit(_examples(feats, labels), None, np.ones((3, 4)), [1.0], [1.0])


# ------------------------------------------------------------ recipes
def _pooling_case(kind, n, seed=1, k=48, e=10, c=64, regions=49):
    """Images where max pooling (objects) or mean pooling (scenes) is right.

    "object": each label is one strong region on a uniform [0, 1)
    background: the max carries it, the mean dilutes it 49 times.
    "scene": each label is spread over every region, and two random
    regions per label hold large clutter: the mean carries the label, the
    max mostly the clutter.
    """
    rng = np.random.default_rng(100)
    vectors = rng.normal(size=(k, e))
    proto = vectors @ rng.normal(size=(e, c)) / np.sqrt(e)
    r = np.random.default_rng(seed)
    labels = -np.ones((n, k), np.float32)
    feats = r.random((n, regions, c)).astype(np.float32)
    for i in range(n):
        shown = r.choice(k, 2, replace=False)
        labels[i, shown] = 1
        for label in shown:
            if kind == "object":
                feats[i, r.integers(regions)] += 2.0 * np.maximum(
                    proto[label], 0)
            else:
                feats[i] += 0.3 * proto[label] * r.random((regions, 1))
                feats[i, r.integers(regions, size=2)] += 10 * r.random(
                    (2, c))
    return vectors, feats, labels


@pytest.mark.parametrize("kind, right", [("object", "max"),
                                         ("scene", "mean")])
def test_the_recipe_is_chosen_on_the_validation_images(kind, right):
    vectors, feats, labels = _pooling_case(kind, 400)
    seen = slice(0, 40)
    train = _examples(feats[:100], labels[:100, seen])
    val = _examples(feats[100:], labels[100:, seen])
    model = ESZSL().fit(train, val, vectors[seen])
    assert model.pooling == right, model.recipe_f1
    others = [f1 for p, f1 in model.recipe_f1.items() if p != right]
    assert model.recipe_f1[right] > max(others) + 0.005, model.recipe_f1
    assert model.selected.val_f1 == model.recipe_f1[right]
    # The chosen recipe is what `score` applies: its pooling, its width.
    alone = ESZSL(poolings=(right,)).fit(train, val, vectors[seen])
    np.testing.assert_allclose(model.score(feats[:5], vectors),
                               alone.score(feats[:5], vectors), rtol=1e-5)
    assert model.mean.shape == (64,)


def test_a_chosen_recipe_saves_and_loads(tmp_path):
    vectors, feats, labels = _pooling_case("object", 200)
    model = ESZSL().fit(_examples(feats[:100], labels[:100, :40]),
                        _examples(feats[100:], labels[100:, :40]),
                        vectors[:40])
    path = str(tmp_path / "eszsl.npz")
    model.save(path)
    loaded = ESZSL.load(path)
    assert loaded.pooling == model.pooling == "max"
    assert loaded.poolings == model.poolings
    np.testing.assert_array_equal(loaded.score(feats[:4], vectors),
                                  model.score(feats[:4], vectors))
    np.testing.assert_allclose(pool_features(feats[:2], "max"),
                               feats[:2].max(axis=1))
    with pytest.raises(ValueError, match="pooling"):
        ESZSL(poolings=("median",))


def test_fit_eszsl_never_reads_the_test_split():
    from helpers import tiny

    from epsilon_tf.training.run import fit_eszsl

    def scramble(split, ids, feats, labels):
        if split == "test":
            rng = np.random.default_rng(7)
            feats = rng.permutation(feats[::-1] * 3.0 + 1.0)
            labels = -labels
        return ids, feats, labels

    honest = fit_eszsl(tiny.in_memory_source(), 0.2)
    other = fit_eszsl(tiny.in_memory_source(scramble), 0.2)
    assert honest["selected"] == other["selected"]
    assert honest["selected"]["recipe"] in ("mean_max", "max", "mean")
    assert honest["zsl"]["map"] != other["zsl"]["map"]
