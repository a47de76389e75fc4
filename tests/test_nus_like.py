"""Tests of the realistic built-in benchmark (real NUS-WIDE labels, GloVe)."""

import dataclasses
import os

import numpy as np
import pytest

from tests.conftest import shared_data_dir

_SHARED = shared_data_dir()
LABEL_DIR = _SHARED / "nus_wide" if _SHARED else None
pytestmark = pytest.mark.skipif(
    LABEL_DIR is None or not LABEL_DIR.is_dir(),
    reason="../shared/data/nus_wide is not present",
)

from epsilon_tf.data.readers import label_files  # noqa: E402
from epsilon_tf.data.worlds.nus_like import (  # noqa: E402
    NusLikeConfig,
    generate_split,
    nus_like_source,
    nus_like_world,
)


def _small(**kw):
    base = dict(
        label_dir=str(LABEL_DIR), num_train=300, num_test=300,
        grid_shape=(6, 6), channels=48,
    )
    base.update(kw)
    return NusLikeConfig(**base)


def _collect(config, split):
    ids, feats, labels, visible = zip(
        *generate_split(config, split, return_visible=True), strict=True
    )
    return list(ids), np.stack(feats), np.stack(labels), np.stack(visible)


@pytest.fixture(scope="module")
def test_split():
    return _collect(_small(), "test")


def test_real_vocabulary_and_release_shape():
    default = NusLikeConfig(label_dir=str(LABEL_DIR))
    assert default.feature_shape == (196, 512)
    assert default.num_train >= 8000 and default.num_test >= 2000
    space = nus_like_world(_small()).label_space
    want = label_files.nus_wide_label_space(
        str(LABEL_DIR / "TagList1k.txt"), str(LABEL_DIR / "Concepts81.txt"),
        str(LABEL_DIR / "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300"),
    )
    assert space.names == want.names
    assert len(space.seen) == 925 and len(space.unseen) == 81
    np.testing.assert_array_equal(space.vectors, want.vectors)


def test_features_are_sparse_relu_maps(test_split):
    ids, feats, labels, visible = test_split
    assert feats.shape == (300, 36, 48) and feats.dtype == np.float32
    assert feats.min() >= 0.0 and np.isfinite(feats).all()
    zero = (feats == 0).mean()
    assert 0.5 < zero < 0.98, zero  # sparse, like VGG conv5 after ReLU
    assert feats.max() > 20 * feats[feats > 0].mean() / 4  # heavy tail
    assert len(set(ids)) == 300


def test_concepts_clean_tags_noisy(test_split):
    _, _, labels, visible = test_split
    assert set(np.unique(labels)) <= {-1, 1}
    # The 81 unseen concepts are exactly what the image shows.
    np.testing.assert_array_equal(labels[:, 925:] == 1, visible[:, 925:])
    assert 1.0 < visible[:, 925:].sum(1).mean() < 3.0
    tags, shown = labels[:, :925] == 1, visible[:, :925]
    missing = (shown & ~tags).sum() / shown.sum()
    spurious = (tags & ~shown).sum() / tags.sum()
    assert 0.3 < missing < 0.7, missing  # a visible thing is often untagged
    assert 0.2 < spurious < 0.7, spurious  # non-visual and spurious tags


def test_cooccurrence_follows_word_similarity(test_split):
    _, _, _, visible = test_split
    unit = nus_like_world(_small()).unit_vectors
    sims = []
    for row in visible:
        idx = np.flatnonzero(row)
        s = unit[idx] @ unit[idx].T
        sims.extend(s[np.triu_indices(len(idx), 1)])
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(unit), (2, 5000))
    random_pairs = np.einsum("ij,ij->i", unit[a], unit[b])
    assert np.mean(sims) > np.mean(random_pairs) + 0.15


def test_deterministic_and_chunked():
    config = _small(num_train=200, num_test=10)
    a = _collect(config, "train")
    b = _collect(config, "train")
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert a[2].shape == (200, 925)
    other = _collect(dataclasses.replace(config, seed=1), "train")
    assert not np.array_equal(a[1], other[1])


def test_written_once_and_reused(tmp_path, capsys):
    config = _small(num_train=40, num_test=20)
    source = nus_like_source(str(tmp_path), config)
    assert "writing the world" in capsys.readouterr().out
    assert source.split("train").num_examples == 40
    assert source.split("test").num_examples == 20
    assert source.feature_shape == (36, 48)
    (entry,) = os.listdir(tmp_path)
    assert entry == config.cache_key()
    again = nus_like_source(str(tmp_path), config)
    assert "writing" not in capsys.readouterr().out
    assert again.label_space.names == source.label_space.names
    first = next(iter(again.split("test").dataset()))
    _, feats, labels = next(generate_split(config, "test"))
    # float16 storage.
    np.testing.assert_allclose(first["features"].numpy(), feats, rtol=1e-3,
                               atol=1e-3)
    np.testing.assert_array_equal(first["labels"].numpy(), labels)


def test_missing_label_dir_is_named(tmp_path):
    config = NusLikeConfig(label_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="TagList1k.txt"):
        config.cache_key()


def test_release_preset_learns_unseen_concepts(tmp_path):
    """A brief run on a small world: unseen-concept mAP well above chance."""
    from epsilon_tf.config import RELEASE_PRESET, preset_configs
    from epsilon_tf.training.run import train_and_evaluate

    config = _small(num_train=2400, num_test=400, grid_shape=(6, 6),
                    channels=96)
    source = nus_like_source(str(tmp_path / "cache"), config, progress=False)
    model_cfg, loss_cfg, train_cfg = preset_configs(
        RELEASE_PRESET, source.feature_shape,
        {"hidden_dim": 32, "gpa_heads": 2},
    )
    train_cfg = dataclasses.replace(
        train_cfg, model_dir=str(tmp_path / "run"), epochs=4, min_steps=0,
        verbose=0,
        export=False, summary_images=0, pr_curve_labels=0,
    )
    result = train_and_evaluate(model_cfg, loss_cfg, train_cfg, source,
                                baseline=False)
    assert result["n_labels"] == {"zsl": 81, "gzsl": 1006}
    assert result["zsl"]["map"] > 2.5 * result["chance"]["zsl"]["map"]
    assert result["gzsl"]["map"] > 1.6 * result["chance"]["gzsl"]["map"]
