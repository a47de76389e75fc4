"""The random-features probe of the word vectors
(research/label_features_probe.py)."""

import os

import numpy as np
import pytest

from epsilon_tf.labels import LabelSpace
from research import label_features_probe as probe


def _vectors(k=40, e=20, seed=3):
    rng = np.random.default_rng(seed)
    # Label pairs at every distance: a few directions, jittered.
    base = rng.standard_normal((4, e))
    return base[rng.integers(0, 4, k)] + rng.uniform(0.1, 1.5, (k, 1)) \
        * rng.standard_normal((k, e))


def test_feature_products_approximate_the_gaussian_kernel():
    w = _vectors()
    u = w / np.linalg.norm(w, axis=1, keepdims=True)
    out = probe.rff_label_vectors(w, np.arange(len(w)), width=40000,
                                  length=0.5, weight=1.0, seed=1)
    np.testing.assert_allclose(out[:, :20], u, atol=1e-6)
    feats = out[:, 20:].astype(np.float64)
    d2 = ((u[:, None] - u[None]) ** 2).sum(-1)
    m2 = np.median(d2[d2 > 1e-12])
    exact = np.exp(-d2 / (2 * 0.5 ** 2 * m2))
    off = exact[~np.eye(len(w), dtype=bool)]
    assert off.min() < 0.1 and off.max() > 0.5  # a spread of values
    np.testing.assert_allclose(feats @ feats.T, exact, atol=0.03)


def test_weight_scales_only_the_features_and_seed_fixes_them():
    w = _vectors()
    a = probe.rff_label_vectors(w, [0, 1, 2, 3], width=64, weight=1.0)
    b = probe.rff_label_vectors(w, [0, 1, 2, 3], width=64, weight=0.5)
    np.testing.assert_allclose(b[:, :20], a[:, :20])
    np.testing.assert_allclose(b[:, 20:], 0.5 * a[:, 20:], rtol=1e-6)
    c = probe.rff_label_vectors(w, [0, 1, 2, 3], width=64, weight=1.0)
    np.testing.assert_array_equal(a, c)
    d = probe.rff_label_vectors(w, [0, 1, 2, 3], width=64, seed=1)
    assert not np.allclose(a[:, 20:], 2 * d[:, 20:])


def test_copy_reads_as_native_data_with_the_wider_vectors(tmp_path):
    source = tmp_path / "task"
    w = _vectors(k=6)
    LabelSpace.from_arrays([f"t{i}" for i in range(6)], w,
                           seen=np.arange(4)).save(str(source))
    (source / "train-00000.tfrecord").write_bytes(b"records")
    dest = tmp_path / "rff"
    assert probe.main([f"--source={source}", f"--dest={dest}",
                       "--width=8"]) == 0
    space = LabelSpace.load(str(dest))
    assert space.vectors.shape == (6, 28)
    assert list(space.seen) == [0, 1, 2, 3]
    assert os.path.islink(dest / "train-00000.tfrecord")
    np.testing.assert_allclose(
        space.vectors, probe.rff_label_vectors(w, np.arange(4), width=8),
        atol=1e-6)


def test_a_missing_source_is_one_line(tmp_path, capsys):
    assert probe.main([f"--source={tmp_path}/none",
                       f"--dest={tmp_path}/out"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("label_features_probe: error:")
    assert "label_space.json" in err[0]


@pytest.mark.parametrize("seen", [[0, 1], [2, 3, 4]])
def test_the_distance_comes_from_the_seen_labels(seen):
    w = _vectors(k=6)
    scale = probe.median_distance(w[seen])
    u = w / np.linalg.norm(w, axis=1, keepdims=True)
    pairs = [np.sum((u[i] - u[j]) ** 2) for i in seen for j in seen if i < j]
    assert scale == pytest.approx(np.sqrt(np.median(pairs)))
