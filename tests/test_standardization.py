"""FeatureStandardization, the statistics the trainer fits, and the
release-shaped model options (token_norm, gfp_input, gfp_pooled_norm)."""

import numpy as np
import pytest

from epsilon_tf.config import (
    RELEASE_PRESET,
    LossConfig,
    ModelConfig,
    TrainConfig,
    preset_configs,
)
from epsilon_tf.layers import FeatureStandardization, GlobalForwardPropagation
from epsilon_tf.models import build_epsilon, with_labels
from epsilon_tf.training.standardization import fit_standardization


def test_layer_against_numpy_and_reload(tmp_path):
    import keras

    rng = np.random.default_rng(0)
    x = rng.gamma(1.0, 2.0, size=(3, 5, 4)).astype("float32")
    mean, std = rng.normal(size=4), rng.uniform(0.5, 2.0, size=4)
    layer = FeatureStandardization()
    layer.build((None, 5, 4))
    layer.set_statistics(mean, std)
    np.testing.assert_allclose(layer(x), (x - mean) / std, rtol=1e-5)
    assert all(not w.trainable for w in layer.weights)
    inputs = keras.Input((5, 4))
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again(x), (x - mean) / std, rtol=1e-5)
    layer.set_statistics(mean, np.zeros(4))  # floored, never divides by 0
    assert np.all(np.isfinite(layer(x)))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        layer.set_statistics(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="epsilon"):
        FeatureStandardization(epsilon=0)


def test_gfp_pooled_norm_needs_features():
    with pytest.raises(ValueError, match="input_source='features'"):
        GlobalForwardPropagation(pooled_norm=True)
    with pytest.raises(ValueError, match="gfp_input='features'"):
        ModelConfig(gfp_pooled_norm=True)
    with pytest.raises(ValueError, match="token_norm"):
        ModelConfig(token_norm="batch")


def _release_model(feature_shape=(6, 5), **overrides):
    config = ModelConfig(
        feature_shape=feature_shape, hidden_dim=8, gpa_heads=2,
        num_prompts=2, token_norm="standardize", gfp_input="features",
        gfp_pooled_norm=True, gfp_blocks=0, num_global=1, **overrides,
    )
    vectors = np.random.default_rng(1).normal(size=(7, 4)).astype("float32")
    return build_epsilon(config, vectors), vectors


def test_fitted_statistics_equal_numpy():
    model, _ = _release_model()
    rng = np.random.default_rng(2)
    feats = np.maximum(rng.normal(size=(30, 6, 5)), 0).astype("float32")
    used = fit_standardization(
        model, (feats[i : i + 8] for i in range(0, 30, 8)), max_images=20
    )
    assert used == 20
    sample = feats[:20]
    tokens = model.get_layer("token_norm")
    np.testing.assert_allclose(tokens.mean, sample.reshape(-1, 5).mean(0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tokens.std, sample.reshape(-1, 5).std(0),
                               rtol=1e-5, atol=1e-6)
    pooled = np.concatenate([sample.mean(1), sample.max(1)], axis=1)
    norm = model.get_layer("gfp").pooled_normalization
    np.testing.assert_allclose(norm.mean, pooled.mean(0), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(norm.std, pooled.std(0), rtol=1e-5, atol=1e-6)


def test_gfp_reads_the_input_features():
    """GFP's global vector is a function of the raw features only."""
    model, vectors = _release_model()
    rng = np.random.default_rng(3)
    feats = np.maximum(rng.normal(size=(4, 6, 5)), 0).astype("float32")
    fit_standardization(model, [feats])
    gfp = model.get_layer("gfp")
    out = model(feats)
    np.testing.assert_allclose(out["global_vectors"].numpy(),
                               _unit(gfp(feats).numpy()), rtol=1e-5,
                               atol=1e-6)
    # A new vocabulary keeps the wiring and the fitted statistics.
    other = with_labels(model, vectors[:3])
    np.testing.assert_allclose(other(feats)["scores"],
                               out["scores"].numpy()[:, :3], rtol=1e-5,
                               atol=1e-6)
    # GFP alone on the features builds no token projection at all.
    gfp_only, _ = _release_model(branches="gfp")
    assert "token_projection" not in {layer.name for layer in
                                      gfp_only.layers}


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_release_preset_configs():
    model, loss, train = preset_configs(RELEASE_PRESET, (196, 512))
    assert model.token_norm == "standardize" and model.gfp_pooled_norm
    assert train.learning_rate == RELEASE_PRESET["learning_rate"]
    assert isinstance(loss, LossConfig) and isinstance(train, TrainConfig)
    gpa, _, _ = preset_configs(RELEASE_PRESET, (196, 512),
                               {"branches": "gpa"})
    assert gpa.branches == "gpa" and not gpa.gfp_pooled_norm


def test_resume_keeps_fitted_statistics(tmp_path):
    """A fresh run fits the statistics; a resumed run restores them."""
    from epsilon_tf.training.run import build_trainer
    from tests.helpers import tiny

    source = tiny.in_memory_source()
    config = tiny.model_config(
        feature_shape=source.feature_shape, token_norm="standardize",
        gfp_input="features", gfp_pooled_norm=True,
    )
    train = TrainConfig(model_dir=str(tmp_path), epochs=1, batch_size=32,
                        verbose=0, export=False, summary_images=0,
                        pr_curve_labels=0)
    first = build_trainer(config, LossConfig(), train, source)
    first.train()
    fitted = first.model.get_layer("token_norm").mean.numpy()
    assert np.abs(fitted).max() > 0  # not the zeros it was built with
    second = build_trainer(config, LossConfig(), train, source)
    second.restore()
    np.testing.assert_array_equal(
        second.model.get_layer("token_norm").mean.numpy(), fitted
    )
