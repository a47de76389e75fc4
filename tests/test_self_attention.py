"""`SelfAttention`: Keras' MultiHeadAttention math and variables, fused.

A NumPy recomputation written from the weights, equality of outputs,
scores and gradients with `keras.layers.MultiHeadAttention` holding the
same weights, dropout in training only, the config round trip, the
fallback to Keras' call, and `.keras` files and checkpoints written with
plain Keras MHA in the blocks (the code before `SelfAttention`) loading
into the new blocks with the same outputs.
"""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers.reference import np_softmax

from epsilon_tf.config import ModelConfig
from epsilon_tf.layers import (
    RegionContextBlock,
    SelfAttention,
    TransformerEncoderBlock,
)
from epsilon_tf.layers import bi_level_attention as biam_layers
from epsilon_tf.layers import group_prompts_aggregation as gpa_layers
from epsilon_tf.models import build_epsilon, build_model

TOL = dict(rtol=1e-5, atol=1e-5)


def _x(shape=(3, 7, 16), seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _randomize(layer, seed=0, scale=0.3):
    """Non-trivial weights (no zero bias), the same for a given seed."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        if w.trainable:
            w.assign(rng.normal(scale=scale, size=w.shape).astype("float32"))
    return layer


def _pair(heads=4, key_dim=4, width=16, dropout=0.0, **kwargs):
    """A SelfAttention and a Keras MHA built for width, same weights."""
    fused = SelfAttention(heads, key_dim, dropout=dropout, **kwargs)
    fused.build((None, None, width))
    keras_mha = keras.layers.MultiHeadAttention(
        heads, key_dim, dropout=dropout, **kwargs
    )
    keras_mha.build((None, None, width), (None, None, width))
    _randomize(fused)
    _randomize(keras_mha)
    return fused, keras_mha


def np_self_attention(x, layer):
    """Multi-head self-attention in NumPy from the layer's weights."""
    def w(dense, name):
        return getattr(dense, name).numpy().astype(np.float64)

    q = np.einsum("bnc,chd->bhnd", x, w(layer.query_dense, "kernel"))
    k = np.einsum("bnc,chd->bhnd", x, w(layer.key_dense, "kernel"))
    v = np.einsum("bnc,chd->bhnd", x, w(layer.value_dense, "kernel"))
    q = q + w(layer.query_dense, "bias")[None, :, None, :]
    k = k + w(layer.key_dense, "bias")[None, :, None, :]
    v = v + w(layer.value_dense, "bias")[None, :, None, :]
    logits = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    attention = np_softmax(logits, axis=-1)
    mixed = attention @ v  # [b, h, n, d]
    out = np.einsum("bhnd,hdc->bnc", mixed, w(layer.output_dense, "kernel"))
    return out + w(layer.output_dense, "bias"), attention


def test_variables_are_keras_mha_variables():
    fused, keras_mha = _pair()
    assert isinstance(fused, keras.layers.MultiHeadAttention)
    assert [(w.path.split("/", 1)[1], w.shape) for w in fused.weights] == [
        (w.path.split("/", 1)[1], w.shape) for w in keras_mha.weights
    ]
    assert fused.query_dense.kernel.shape == (16, 4, 4)
    assert fused.query_dense.bias.shape == (4, 4)
    assert fused.output_dense.kernel.shape == (4, 4, 16)
    assert fused.output_dense.bias.shape == (16,)


@pytest.mark.parametrize("scores", [False, True])
def test_forward_matches_numpy(scores):
    fused, _ = _pair()
    x = _x()
    expected, attention = np_self_attention(x.astype(np.float64), fused)
    got = fused(x, return_attention_scores=scores, training=False)
    if scores:
        got, got_attention = got
        assert got_attention.shape == (3, 4, 7, 7)
        np.testing.assert_allclose(got_attention, attention, **TOL)
    np.testing.assert_allclose(got, expected, **TOL)


@pytest.mark.parametrize("call", ["x", "x, x", "x, x, x"])
def test_equals_keras_mha_in_inference(call):
    fused, keras_mha = _pair(dropout=0.3)
    x = tf.constant(_x())
    args = {"x": (x,), "x, x": (x, x), "x, x, x": (x, x, x)}[call]
    got, got_scores = fused(*args, return_attention_scores=True)
    want, want_scores = keras_mha(x, x, return_attention_scores=True)
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(got_scores, want_scores, **TOL)


def test_value_dim_and_no_bias_follow_keras():
    for kwargs in (dict(value_dim=6), dict(use_bias=False)):
        fused, keras_mha = _pair(**kwargs)
        x = _x()
        np.testing.assert_allclose(fused(x), keras_mha(x, x), **TOL)


def test_gradients_match_keras_mha():
    fused, keras_mha = _pair()
    x = tf.constant(_x())
    grads = []
    for layer, call in ((fused, lambda: fused(x, training=True)),
                        (keras_mha, lambda: keras_mha(x, x, training=True))):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(call()))
        grads.append(tape.gradient(loss, [x] + layer.trainable_variables))
    assert len(grads[0]) == 9
    for got, want in zip(*grads):
        np.testing.assert_allclose(got, want, **TOL)


def test_dropout_is_on_the_probabilities_in_training_only():
    fused, _ = _pair(dropout=0.5, seed=3)
    x = _x()
    inference = fused(x, training=False)
    np.testing.assert_array_equal(fused(x), inference)  # deterministic
    trained, scores = fused(x, training=True, return_attention_scores=True)
    assert np.abs(trained - inference).max() > 1e-3
    # The scores are returned before dropout (as Keras): rows sum to 1.
    np.testing.assert_allclose(np.sum(scores, -1), 1.0, rtol=1e-5)


def test_dropout_scales_the_kept_probabilities():
    # Tokens x = I with identity value and output projections (no bias):
    # V = I and the output is the dropped probabilities, the kept ones
    # scaled by 1 / (1 - rate).
    rate = 0.5
    layer = SelfAttention(1, 8, dropout=rate, use_bias=False)
    layer.build((None, 8, 8))
    _randomize(layer)
    layer.value_dense.kernel.assign(np.eye(8, dtype="float32")[:, None, :])
    layer.output_dense.kernel.assign(np.eye(8, dtype="float32")[None])
    x = np.stack([np.eye(8, dtype="float32")] * 2)
    out, scores = layer(x, training=True,
                        return_attention_scores=True)
    out, scores = out.numpy(), scores.numpy()[:, 0]
    kept = out != 0
    assert 0.2 < kept.mean() < 0.8
    np.testing.assert_allclose(out[kept], scores[kept] / (1 - rate),
                               rtol=1e-5)


def test_config_round_trip_and_keras_file(tmp_path):
    layer = SelfAttention(num_heads=2, key_dim=4, dropout=0.2, name="sa")
    config = layer.get_config()
    clone = SelfAttention.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is SelfAttention
    inp = keras.Input((5, 8))
    model = keras.Model(inp, layer(inp))
    assert model.output_shape == (None, 5, 8)
    _randomize(layer)
    model.save(tmp_path / "sa.keras")
    reloaded = keras.saving.load_model(tmp_path / "sa.keras")
    x = _x((2, 5, 8))
    np.testing.assert_allclose(reloaded(x), model(x), rtol=0, atol=0)


def test_other_calls_are_keras_mha_calls():
    fused, keras_mha = _pair()
    x, y = _x(), _x(seed=2)
    # Cross-attention, a mask, a causal mask: Keras' own call.
    np.testing.assert_allclose(fused(x, y), keras_mha(x, y), **TOL)
    mask = np.tril(np.ones((3, 7, 7), bool))
    np.testing.assert_allclose(
        fused(x, x, attention_mask=mask),
        keras_mha(x, x, attention_mask=mask), **TOL,
    )
    np.testing.assert_allclose(
        fused(x, use_causal_mask=True),
        keras_mha(x, x, use_causal_mask=True), **TOL,
    )
    fused.fused = False
    np.testing.assert_allclose(fused(x), keras_mha(x, x), **TOL)


def test_the_fused_path_is_taken(monkeypatch):
    fused, _ = _pair()
    calls = []
    monkeypatch.setattr(keras.layers.MultiHeadAttention, "call",
                        lambda *a, **k: calls.append(1))
    fused(_x())
    assert calls == []
    fused.fused = False
    fused(_x())
    assert calls == [1]


def test_mixed_bfloat16_fused_equals_keras_call():
    layer = SelfAttention(4, 4, dropout=0.1, dtype="mixed_bfloat16")
    layer.build((None, 7, 16))
    _randomize(layer)
    x = _x()
    out, scores = layer(x, return_attention_scores=True)
    assert out.dtype == tf.bfloat16 and scores.dtype == tf.bfloat16
    assert all(w.dtype == "float32" for w in layer.weights)
    layer.fused = False
    want = layer(x)
    np.testing.assert_allclose(
        tf.cast(out, tf.float32), tf.cast(want, tf.float32), atol=0.1
    )


# -------------------------------------------- files written before the change
class _KerasMHA(keras.layers.MultiHeadAttention):
    """Plain Keras MHA (its variables, build and call), taking the blocks'
    self-attention call `attention(x)` as `MultiHeadAttention(x, x)`: the
    blocks as they were before `SelfAttention`."""

    def build(self, query_shape, value_shape=None, key_shape=None):
        super().build(query_shape, value_shape or query_shape, key_shape)

    def call(self, query, value=None, **kwargs):
        return super().call(query, query if value is None else value,
                            **kwargs)


@contextlib.contextmanager
def _legacy_blocks():
    saved = gpa_layers.SelfAttention, biam_layers.SelfAttention
    gpa_layers.SelfAttention = biam_layers.SelfAttention = _KerasMHA
    try:
        yield
    finally:
        gpa_layers.SelfAttention, biam_layers.SelfAttention = saved


def _attention_layers(model):
    return [layer for layer in model._flatten_layers()
            if isinstance(layer, keras.layers.MultiHeadAttention)]


def _build(kind):
    rng = np.random.default_rng(5)
    if kind == "epsilon":
        config = ModelConfig(feature_shape=(9, 8), hidden_dim=16,
                             embedding_dim=12, num_prompts=3, gpa_heads=2,
                             gpa_layers=2)
        model = build_epsilon(config, rng.normal(size=(7, 12)))
    else:
        config = ModelConfig(model="biam", feature_shape=(16, 8),
                             biam_channels=8, biam_heads=2, biam_top_k=3,
                             embedding_dim=12)
        model = build_model(config, rng.normal(size=(7, 12)))
    for w in model.trainable_weights:
        w.assign(w.numpy() + rng.normal(scale=0.1, size=w.shape))
    return model, config


@pytest.mark.parametrize("kind", ["epsilon", "biam"])
def test_files_saved_with_keras_mha_load_into_self_attention(kind, tmp_path):
    with _legacy_blocks():
        old, config = _build(kind)
    assert {type(a) for a in _attention_layers(old)} == {_KerasMHA}
    x = _x((4,) + tuple(config.feature_shape), seed=3)
    want = {k: v.numpy() for k, v in old(x).items()}
    old.save(tmp_path / "old.keras")
    checkpoint = tf.train.Checkpoint(model=old).write(str(tmp_path / "ck"))

    loaded = keras.saving.load_model(tmp_path / "old.keras")
    fresh, _ = _build(kind)
    tf.train.Checkpoint(model=fresh).read(checkpoint).assert_consumed()
    for model in (loaded, fresh):
        attention = _attention_layers(model)
        assert attention and {type(a) for a in attention} == {SelfAttention}
        got = model(x)
        for key, value in want.items():
            np.testing.assert_allclose(got[key], value, **TOL)


def test_the_blocks_use_self_attention_with_keras_weights():
    x = _x((2, 9, 16))
    block = TransformerEncoderBlock(num_heads=4, dropout=0.1)
    block.build(x.shape)
    assert type(block.attention) is SelfAttention
    rcb = RegionContextBlock(num_heads=4)
    rcb.build(x.shape)
    assert type(rcb.attention) is SelfAttention
    _randomize(block)
    _randomize(rcb)
    expected, attention = np_self_attention(x.astype(np.float64),
                                            rcb.attention)
    out, got_attention = rcb(x, training=False)
    np.testing.assert_allclose(got_attention, attention, **TOL)
    h = x + expected
    ffn = rcb.ffn_outer(rcb.ffn_inner(h)).numpy()
    np.testing.assert_allclose(out, h + ffn, **TOL)
