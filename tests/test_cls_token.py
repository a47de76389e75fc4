"""LESA and BiAM on ViT-shaped tokens: a CLS token plus a square grid."""

import dataclasses

import numpy as np
import pytest
from helpers import tiny

from epsilon_tf.config import LossConfig, ModelConfig, TrainConfig
from epsilon_tf.data.base import DatasetSource
from epsilon_tf.data.readers.in_memory import array_split
from epsilon_tf.data.worlds.synthetic import synthetic_label_space
from epsilon_tf.layers.grid import SplitClsToken, token_layout
from epsilon_tf.models import build_model, with_labels

CHANNELS, EMBED = 16, 12
SHAPE = (197, CHANNELS)  # 1 + 14 x 14, like ViT-B/16 at 224 px
CONFIGS = {
    "lesa": ModelConfig(model="lesa", feature_shape=SHAPE, lesa_attentions=3),
    "biam": ModelConfig(
        model="biam", feature_shape=SHAPE, biam_channels=8, biam_heads=2,
        biam_top_k=3,
    ),
}


def test_token_layout():
    assert token_layout(196) == (False, 14)
    assert token_layout(197) == (True, 14)
    assert token_layout(49) == (False, 7)
    assert token_layout(50) == (True, 7)
    for bad in (48, 198, 12):
        with pytest.raises(ValueError, match=f"Received: {bad} regions"):
            token_layout(bad, "BiAM")


def test_split_cls_token():
    x = np.arange(2 * 5 * 3, dtype="float32").reshape(2, 5, 3)
    cls, patches = SplitClsToken()(x)
    np.testing.assert_array_equal(cls, x[:, 0])
    np.testing.assert_array_equal(patches, x[:, 1:])
    cls, _ = SplitClsToken(keepdims=True)(x)
    assert tuple(cls.shape) == (2, 1, 3)


@pytest.mark.parametrize("kind", ["lesa", "biam"])
def test_a_shape_without_a_grid_is_one_clear_error(kind):
    config = dataclasses.replace(CONFIGS[kind], feature_shape=(48, 8))
    name = {"lesa": "LESA", "biam": "BiAM"}[kind]
    with pytest.raises(ValueError, match=f"{name} needs region tokens on"):
        build_model(config, np.ones((5, EMBED), "float32"))


def _features(seed, n=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *SHAPE)).astype("float32")


@pytest.mark.parametrize("kind", ["lesa", "biam"])
def test_the_cls_token_changes_the_scores(kind):
    vectors = np.random.default_rng(0).normal(size=(5, EMBED))
    model = build_model(CONFIGS[kind], vectors)
    x = _features(1)
    out = model(x, training=False)
    assert tuple(out["scores"].shape) == (4, 5)
    if kind == "lesa":
        # The CLS token is one more attended region, at index 0.
        assert tuple(out["attention"].shape) == (4, 3, 197)
        assert float(np.min(out["attention"][:, :, 0])) > 0
    else:
        # The region branch runs on the 14 x 14 patches; the CLS token
        # joins the scene branch's global feature.
        assert tuple(out["region_attention"].shape) == (4, 2, 196, 196)
        key = model.get_layer("scene_context").scene_key.kernel
        assert tuple(key.shape) == (2 * CHANNELS, 8)
    moved = x.copy()
    moved[:, 0] += 3.0 * np.random.default_rng(2).normal(size=(4, CHANNELS))
    changed = np.abs(np.asarray(model(moved, training=False)["scores"])
                     - np.asarray(out["scores"]))
    assert changed.min() > 1e-6, changed
    # A relabelled model keeps the CLS path.
    other = with_labels(model, vectors[:3])
    np.testing.assert_allclose(other(x, training=False)["scores"],
                               np.asarray(out["scores"])[:, :3], rtol=1e-5,
                               atol=1e-6)


def _vit_source():
    """The tiny world's labels on random ViT-shaped features."""
    config = tiny.world()
    splits = {}
    for split, label_set in (("train", "seen"), ("test", "all")):
        ids, _, labels = tiny.arrays(split)
        feats = _features(3 if split == "train" else 4, n=len(ids))
        splits[split] = array_split(split, feats, labels, label_set, ids)
    return DatasetSource(
        "synthetic", synthetic_label_space(config), SHAPE, splits
    )


@pytest.mark.parametrize("kind", ["lesa", "biam"])
def test_a_train_step_trains_the_cls_path(kind, tmp_path):
    from epsilon_tf.training.run import build_trainer

    train = TrainConfig(model_dir=str(tmp_path), epochs=1, batch_size=16,
                        warmup_steps=2, verbose=0, summary_images=0,
                        pr_curve_labels=0, steps_per_epoch=2)
    trainer = build_trainer(CONFIGS[kind], LossConfig(), train,
                            _vit_source())
    if kind == "lesa":
        cls_weight = trainer.model.get_layer("lesa_cls_conv").conv.kernel
    else:
        key = trainer.model.get_layer("scene_context").scene_key.kernel
        cls_weight = key[CHANNELS:]  # the rows that read the CLS token
    before = np.array(cls_weight)
    it = iter(trainer._train_dataset(0, 0))
    for _ in range(2):  # the warmup's first step has a learning rate of 0
        step = trainer._distributed_step(it)
        terms = {k: float(v) for k, v in step.items()}
        assert np.isfinite(terms["total"]) and terms["total"] > 0
    if kind == "lesa":
        after = np.array(trainer.model.get_layer("lesa_cls_conv").conv.kernel)
    else:
        key = trainer.model.get_layer("scene_context").scene_key.kernel
        after = np.array(key[CHANNELS:])
    assert np.abs(after - before).max() > 0
