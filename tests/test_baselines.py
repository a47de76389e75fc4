"""LESA and BiAM: NumPy recomputations of their forward passes (written
from the authors' formulations, not from our decomposition), their layers'
shapes, arguments and round trips, LESA's regularizers, a training step,
`.keras` reload, checkpoints, export and a fresh-process reload."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny
from helpers.reference import (
    np_batch_norm_inference,
    np_conv2d_same,
    np_softmax,
)

from epsilon_tf.config import LossConfig, ModelConfig, TrainConfig
from epsilon_tf.labels import LabelSpace
from epsilon_tf.layers import (
    GridConvolution,
    RegionContextBlock,
    RegionLabelScoring,
    SceneContextBlock,
    SharedMultiAttention,
)
from epsilon_tf.losses import RankingLoss
from epsilon_tf.models import (
    best_label_maps,
    build_model,
    model_kind,
    with_labels,
)

RNG = np.random.default_rng(0)
GRID = (4, 4)
CHANNELS, EMBED = 8, 12
CONFIGS = {
    "lesa": ModelConfig(
        model="lesa", feature_shape=(16, CHANNELS), lesa_attentions=3
    ),
    "biam": ModelConfig(
        model="biam", feature_shape=(16, CHANNELS), biam_channels=8,
        biam_heads=2, biam_top_k=3,
    ),
}


def _features(n=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 16, CHANNELS)).astype("float32")


def _unit(w):
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def _perturb(model, seed=0):
    """Random weights everywhere, positive moving variances (a trained-like
    model: no zero bias, no identity batch norm)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "label_scoring" in w.path or "seed_generator" in w.path:
            continue
        value = rng.normal(scale=0.3, size=w.shape)
        if "moving_variance" in w.path:
            value = np.abs(value) + 0.5
        w.assign(value.astype("float32"))
    return model


def _model(kind, num_labels=7, seed=0):
    keras.utils.set_random_seed(seed)
    vectors = np.random.default_rng(seed).normal(size=(num_labels, EMBED))
    return _perturb(build_model(CONFIGS[kind], vectors), seed), vectors


def _w(layer, name):
    return next(w.numpy() for w in layer.weights if w.path.endswith(name))


def _np_grid_conv(x, layer, order):
    grid = x.reshape(x.shape[0], *GRID, x.shape[-1])
    bias = _w(layer.conv, "bias") if layer.use_bias else None
    y = np_conv2d_same(grid, _w(layer.conv, "kernel"), bias)
    if order == "conv_bn_relu":
        y = np.maximum(np_batch_norm_inference(y, layer.norm), 0)
    else:
        y = np_batch_norm_inference(np.maximum(y, 0), layer.norm)
    return y.reshape(x.shape[0], -1, y.shape[-1])


def _dense(x, layer):
    y = x @ _w(layer, "kernel")
    return y + _w(layer, "bias") if layer.use_bias else y


def _leaky(x):
    return np.where(x > 0, x, 0.2 * x)


# ------------------------------------------------------------------ LESA
def np_lesa(model, x, vectors):
    """LESA as `core/model_share_attention.py` computes it (inference)."""
    conv = model.get_layer("lesa_conv")
    x = _np_grid_conv(x, conv, "conv_bn_relu")
    att = model.get_layer("lesa_attention")
    hidden = np.tanh(_dense(x, att.hidden))
    logits = _dense(hidden, att.logits).transpose(0, 2, 1)  # [b, T, N]
    alphas = np_softmax(logits, axis=-1)
    f_att = alphas @ x  # [b, T, C]
    w = _w(model.get_layer("visual_to_word"), "kernel")  # [C, E]
    classifiers = _unit(vectors) @ w.T  # LESA: (W vecs^T)^T, [K, C]
    att_logits = f_att @ classifiers.T  # [b, T, K]
    pooled = x.mean(axis=1) @ classifiers.T
    return att_logits.max(axis=1), alphas, logits, att_logits, pooled


def test_lesa_forward_matches_numpy():
    model, vectors = _model("lesa")
    x = _features()
    out = model(x)
    scores, alphas, logits, att_logits, pooled = np_lesa(model, x, vectors)
    assert out["scores"].shape == (3, 7)
    assert out["attention"].shape == (3, 3, 16)
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["attention"], alphas, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(out["attention_logits"], logits, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(out["attention_scores"], att_logits,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["pooled_scores"], pooled, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(np.sum(out["attention"], -1), 1.0, rtol=1e-5)


def test_lesa_without_conv_scores_the_raw_regions():
    cfg = dataclasses.replace(CONFIGS["lesa"], lesa_conv=False)
    model = _perturb(build_model(cfg, RNG.normal(size=(5, EMBED))))
    assert "lesa_conv" not in {layer.name for layer in model.layers}
    x = _features()
    att = model.get_layer("lesa_attention")
    alphas = np_softmax(
        _dense(np.tanh(_dense(x, att.hidden)), att.logits).transpose(0, 2, 1),
        axis=-1,
    )
    np.testing.assert_allclose(model(x)["attention"], alphas, rtol=1e-4,
                               atol=1e-5)


# ------------------------------------------------------------------ BiAM
def np_mha(x, mha):
    wq, bq = mha._query_dense.kernel.numpy(), mha._query_dense.bias.numpy()
    wk, bk = mha._key_dense.kernel.numpy(), mha._key_dense.bias.numpy()
    wv, bv = mha._value_dense.kernel.numpy(), mha._value_dense.bias.numpy()
    wo, bo = (mha._output_dense.kernel.numpy(),
              mha._output_dense.bias.numpy())
    q = np.einsum("bnc,chd->bnhd", x, wq) + bq
    k = np.einsum("bnc,chd->bnhd", x, wk) + bk
    v = np.einsum("bnc,chd->bnhd", x, wv) + bv
    logits = np.einsum("bnhd,bmhd->bhnm", q, k) / np.sqrt(q.shape[-1])
    attention = np_softmax(logits, axis=-1)
    o = np.einsum("bhnm,bmhd->bnhd", attention, v)
    return np.einsum("bnhd,hdc->bnc", o, wo) + bo, attention


def np_biam(model, x, vectors, top_k=3):
    """BiAM as its `model.py` computes it (inference), from x [b, N, C]."""
    h_r = _np_grid_conv(x, model.get_layer("biam_conv"), "conv_relu_bn")
    rcb = model.get_layer("region_context")
    attended, attention = np_mha(h_r, rcb.attention)
    o_r = h_r + attended
    e_r = o_r + _dense(np.maximum(_dense(o_r, rcb.ffn_inner), 0),
                       rcb.ffn_outer)
    scb = model.get_layer("scene_context")
    q_g = _leaky(_dense(h_r, scb.channel))
    k_g = _dense(x.mean(axis=1), scb.scene_key)
    r_g = 1 / (1 + np.exp(-(q_g.mean(axis=1) * k_g)))
    c_g = r_g[:, None, :] * q_g
    e_g = c_g + _np_grid_conv(c_g, scb.context, "conv_relu_bn")
    e_f = _leaky(_dense(np.concatenate([e_r, e_g], -1),
                        model.get_layer("fuse")))
    # BiAM's W = nn.Linear(300, D): classifiers = W v + b.
    weight = _w(model.get_layer("region_to_word"), "kernel")  # [D, E]
    bias = _w(model.get_layer("region_offset"), "kernel")[:, 0]  # [D]
    classifiers = _unit(vectors) @ weight.T + bias  # [K, D]
    m = e_f @ classifiers.T  # [b, N, K]
    top = -np.sort(-m, axis=1)[:, :top_k]
    return top.mean(axis=1), attention, r_g, m


def test_biam_forward_matches_numpy():
    model, vectors = _model("biam")
    x = _features()
    out = model(x)
    scores, attention, gate, _ = np_biam(model, x, vectors)
    assert out["scores"].shape == (3, 7)
    assert out["region_attention"].shape == (3, 2, 16, 16)
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["region_attention"], attention,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["scene_gate"], gate, rtol=1e-4,
                               atol=1e-5)


def test_best_label_maps_are_the_maps_behind_the_top_label():
    x = _features()
    rows = np.arange(3)
    model, vectors = _model("lesa")
    scores, maps = best_label_maps(model, x, vectors)
    ref, alphas, _, att_logits, _ = np_lesa(model, x, vectors)
    best = ref.argmax(axis=1)
    np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-4)
    t = att_logits[rows, :, best].argmax(axis=1)
    np.testing.assert_allclose(maps, alphas[rows, t], rtol=1e-4, atol=1e-5)
    model, vectors = _model("biam")
    scores, maps = best_label_maps(model, x, vectors)
    ref, _, _, m = np_biam(model, x, vectors)
    np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(maps, m[rows, :, ref.argmax(axis=1)],
                               rtol=1e-4, atol=1e-4)


# -------------------------------------------------------- region scoring
def test_region_scoring_hand_case():
    # Three vectors, two labels along the axes: per-vector scores
    # label 0: [3, 1, 2] + offsets [0, 1, -1] = [3, 2, 1];
    # label 1: [0, 4, 1] + offsets            = [0, 5, 0].
    semantic = np.array([[[3, 0], [1, 4], [2, 1]]], "float32")
    offsets = np.array([[0, 1, -1]], "float32")
    labels = np.array([[2, 0], [0, 0.5]], "float32")  # normalized inside
    top2 = RegionLabelScoring(
        reduction="top_k_mean", top_k=2, use_offsets=True,
        label_embeddings=labels,
    )
    np.testing.assert_allclose(top2([semantic, offsets]), [[2.5, 2.5]])
    best = RegionLabelScoring(reduction="max", return_region_scores=True,
                              label_embeddings=labels)
    scores, region = best(semantic)
    np.testing.assert_allclose(scores, [[3, 4]])
    np.testing.assert_allclose(region, [[[3, 0], [1, 4], [2, 1]]])
    dynamic = RegionLabelScoring(reduction="top_k_mean", top_k=2,
                                 use_offsets=True)
    np.testing.assert_allclose(
        dynamic([semantic, offsets, labels]), [[2.5, 2.5]], rtol=1e-6
    )


# ------------------------------------------------------------ layers
LAYER_CASES = [
    (lambda: GridConvolution(6, 2, use_bias=False, order="conv_bn_relu"),
     (2, 16, 4), [(2, 16, 6)]),
    (lambda: SharedMultiAttention(num_attentions=3), (2, 16, 4),
     [(2, 3, 4), (2, 3, 16), (2, 3, 16)]),
    (lambda: RegionContextBlock(num_heads=2), (2, 16, 4),
     [(2, 16, 4), (2, 2, 16, 16)]),
]


@pytest.mark.parametrize("make,shape,expected", LAYER_CASES)
def test_layer_shapes_training_and_round_trip(make, shape, expected,
                                              tmp_path):
    layer = make()
    inputs = keras.Input(shape[1:])
    outputs = layer(inputs)
    outputs = list(outputs) if isinstance(outputs, tuple) else [outputs]
    x = RNG.normal(size=shape).astype("float32")
    eager = layer(x)
    eager = list(eager) if isinstance(eager, tuple) else [eager]
    assert [tuple(o.shape) for o in eager] == expected
    computed = layer.compute_output_shape((None,) + shape[1:])
    computed = computed if isinstance(computed[0], tuple) else [computed]
    assert [tuple(c[1:]) for c in computed] == [e[1:] for e in expected]
    scoring = RegionLabelScoring(
        label_embeddings=RNG.normal(size=(5, expected[0][-1]))
    )
    model = keras.Model(inputs, scoring(outputs[0]))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    xs = RNG.normal(size=(16,) + shape[1:]).astype("float32")
    ys = RNG.normal(size=(16, 5)).astype("float32")
    before = [w.numpy().copy() for w in layer.trainable_weights]
    history = model.fit(xs, ys, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(not np.allclose(b, w.numpy())
               for b, w in zip(before, layer.trainable_weights, strict=True))
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded(xs), model(xs), rtol=1e-5,
                               atol=1e-6)


def test_scene_block_shapes_and_config():
    scb = SceneContextBlock(dropout=0.1)
    e, gate = scb([np.zeros((2, 16, 4), "float32"),
                   np.ones((2, 6), "float32")])
    assert e.shape == (2, 16, 4) and gate.shape == (2, 4)
    assert scb.compute_output_shape([(None, 16, 4), (None, 6)]) == (
        (None, 16, 4), (None, 4)
    )
    assert SceneContextBlock.from_config(scb.get_config()).get_config() == (
        scb.get_config()
    )


def test_batch_norm_statistics_move_in_training_only():
    conv = GridConvolution(3, 3)
    x = RNG.normal(loc=2.0, size=(4, 16, 2)).astype("float32")
    conv(x, training=False)
    mean = conv.norm.moving_mean.numpy().copy()
    conv(x, training=False)
    np.testing.assert_array_equal(conv.norm.moving_mean.numpy(), mean)
    conv(x, training=True)
    assert not np.allclose(conv.norm.moving_mean.numpy(), mean)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: GridConvolution(0), "`filters` must be a positive integer"),
        (lambda: GridConvolution(4, order="bn_conv"), "`order` must be one"),
        (lambda: SharedMultiAttention(num_attentions=0),
         "`num_attentions` must be a positive integer"),
        (lambda: RegionContextBlock(dropout=1.0),
         r"`dropout` must be a float in \[0, 1\)"),
        (lambda: RegionLabelScoring(reduction="mean"),
         "`reduction` must be one of"),
        (lambda: RegionLabelScoring(top_k=0),
         "`top_k` must be a positive integer"),
        (lambda: ModelConfig(model="clip"), "`model` must be one of"),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_shapes_are_clear():
    with pytest.raises(ValueError, match="do not form a square grid"):
        GridConvolution(4)(np.zeros((1, 12, 3), "float32"))
    with pytest.raises(ValueError, match="does not hold 12 regions"):
        GridConvolution(4, grid_shape=(2, 5))(np.zeros((1, 12, 3), "float32"))
    with pytest.raises(ValueError, match="must divide into `num_heads`"):
        RegionContextBlock(num_heads=3)(np.zeros((1, 4, 8), "float32"))
    with pytest.raises(ValueError, match="exceeds the 2 vectors"):
        RegionLabelScoring(reduction="top_k_mean", top_k=3,
                           label_embeddings=np.eye(2))(
            np.zeros((1, 2, 2), "float32"))
    with pytest.raises(ValueError, match="expects 2 input"):
        RegionLabelScoring(use_offsets=True, label_embeddings=np.eye(2))(
            np.zeros((1, 2, 2), "float32"))


# ------------------------------------------------------- LESA's losses
def test_lesa_regularizers_match_numpy():
    labels = np.array([[1, -1, 0, 1], [-1, 1, 1, 0]], "float32")
    scores = RNG.normal(size=(2, 4)).astype("float32")
    outputs = {
        "scores": scores,
        "attention_scores": RNG.normal(size=(2, 3, 4)).astype("float32"),
        "pooled_scores": RNG.normal(size=(2, 4)).astype("float32"),
        "attention_logits": RNG.normal(size=(2, 3, 5)).astype("float32"),
    }
    loss = RankingLoss(lesa_dist_weight=0.5, lesa_global_weight=0.25,
                       lesa_span_weight=2.0, lesa_global_margin=0.1)
    terms = loss.per_example_terms(labels, outputs)
    # LESA's formulas, per image.
    p = np_softmax(outputs["attention_scores"], axis=1)
    dist = np.mean(np.sum(p * (labels > 0)[:, None, :], -1) ** 2, -1)
    glob = np.sum(np.maximum(
        0.1 - (scores - outputs["pooled_scores"]) * labels, 0), -1)
    u = outputs["attention_logits"]
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    gram = np.einsum("btn,bsn->bts", u, u)
    gram[:, np.arange(3), np.arange(3)] = 0
    span = np.sqrt((gram ** 2).sum(axis=(1, 2)))
    np.testing.assert_allclose(
        terms["attention"], 0.5 * dist + 0.25 * glob + 2.0 * span,
        rtol=1e-5,
    )
    # Hand case of the global term: y = [1, -1], s - g = [0.5, 0.5],
    # margin 0: max(0, -0.5) + max(0, 0.5) = 0.5.
    only_global = RankingLoss(lesa_dist_weight=0, lesa_global_weight=1,
                              lesa_span_weight=0)
    hand = only_global.per_example_terms(
        np.array([[1, -1]], "float32"),
        {"scores": np.array([[1.0, 1.0]], "float32"),
         "pooled_scores": np.array([[0.5, 0.5]], "float32"),
         "attention_scores": np.zeros((1, 2, 2), "float32"),
         "attention_logits": np.ones((1, 2, 3), "float32")},
    )
    assert float(hand["attention"][0]) == pytest.approx(0.5)
    # Other models have no LESA term.
    plain = loss.per_example_terms(labels, {"scores": scores})
    np.testing.assert_array_equal(plain["attention"], 0.0)
    clone = RankingLoss.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()


# ------------------------------------------ models: relabel, save, train
@pytest.mark.parametrize("kind", ["lesa", "biam"])
def test_relabel_reload_and_checkpoint(kind, tmp_path):
    model, vectors = _model(kind)
    assert model_kind(model) == kind
    x = _features()
    novel = RNG.normal(size=(4, EMBED))
    relabeled = with_labels(model, novel)
    reference = np_lesa if kind == "lesa" else np_biam
    np.testing.assert_allclose(
        relabeled(x)["scores"], reference(model, x, novel)[0],
        rtol=1e-4, atol=1e-4,
    )
    # Shared layers, not copies.
    assert relabeled.get_layer(model.layers[1].name) is model.layers[1]
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(reloaded(x)["scores"], model(x)["scores"])
    np.testing.assert_array_equal(
        with_labels(reloaded, novel)(x)["scores"], relabeled(x)["scores"]
    )
    with pytest.raises(ValueError, match="width 5 but the model scores"):
        with_labels(model, np.ones((2, 5)))
    # tf.train.Checkpoint reaches every variable (resume restores all).
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ck"))
    fresh = build_model(CONFIGS[kind], vectors)
    tf.train.Checkpoint(model=fresh).read(path).assert_consumed()
    np.testing.assert_array_equal(fresh(x)["scores"], model(x)["scores"])


@pytest.mark.parametrize("kind", ["lesa", "biam"])
def test_trainer_step_learns_and_resumes(kind, tmp_path):
    from epsilon_tf.training.run import build_trainer

    source = tiny.in_memory_source()
    config = dataclasses.replace(
        CONFIGS[kind], feature_shape=(16, 16), biam_channels=8
    )
    train = TrainConfig(model_dir=str(tmp_path), epochs=1, batch_size=32,
                        warmup_steps=2, verbose=0, summary_images=0,
                        pr_curve_labels=0, steps_per_epoch=4)
    trainer = build_trainer(config, LossConfig(), train, source)
    assert model_kind(trainer.model) == kind
    it = iter(trainer._train_dataset(0, 0))
    first = {k: float(v) for k, v in trainer._distributed_step(it).items()}
    assert np.isfinite(first["total"]) and first["total"] > 0
    if kind == "lesa":
        assert first["attention"] > 0  # LESA's regularizers are on
        assert first["total"] == pytest.approx(
            first["ranking"] + first["attention"], rel=1e-5)
    else:
        assert first["attention"] == 0.0
    # Steps on one fixed batch lower its loss.
    batch = next(iter(source.split("train").dataset().batch(32)))
    x, y = batch["features"], batch["labels"]

    def loss_now():
        outputs = trainer.model(x, training=False)
        return float(trainer.loss_fn.compute_terms(y, outputs)["total"])

    before = loss_now()
    same = tf.data.Dataset.from_tensors((x, y)).repeat()
    it = iter(trainer.strategy.experimental_distribute_dataset(same))
    for _ in range(15):
        trainer._distributed_step(it)
    assert loss_now() < before
    # Resume: a second trainer on the same model_dir continues, exactly.
    done = trainer.train()
    weights = [np.array(v) for v in trainer.model.weights]
    again = build_trainer(config, LossConfig(), train, source)
    assert again.train() == done
    for a, b in zip(weights, again.model.weights, strict=True):
        np.testing.assert_array_equal(a, np.array(b))


# ---------------------------------------------------------------- export
@pytest.mark.parametrize("kind", ["lesa", "biam"])
def test_export_and_fresh_process_reload(kind, tmp_path):
    from epsilon_tf.export import export_saved_model, read_export_info

    model, _ = _model(kind, num_labels=6)
    rng = np.random.default_rng(3)
    space = LabelSpace.from_arrays(
        [f"label {i}" for i in range(9)],
        rng.normal(size=(9, EMBED)).astype("float32"), seen=np.arange(6),
    )
    path = export_saved_model(model, space, str(tmp_path / "export"),
                              top_k=4)
    info = read_export_info(path)
    assert info["model"] == kind and info["serving_graph"] == "keras_reference"
    x = _features(n=5, seed=4)
    novel = rng.normal(size=(3, EMBED)).astype("float32")
    reference = np_lesa if kind == "lesa" else np_biam
    expected = reference(model, x, space.vectors)[0]
    expected_novel = reference(model, x, novel)[0]
    np.savez(tmp_path / "io.npz", x=x, novel=novel)
    maps = "attention" if kind == "lesa" else "region_attention"
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        data = np.load({str(tmp_path / "io.npz")!r})
        loaded = tf.saved_model.load({path!r})
        sigs = loaded.signatures
        out = sigs["serving_default"](features=tf.constant(data["x"]))
        novel = sigs["score_labels"](
            features=tf.constant(data["x"]),
            label_embeddings=tf.constant(data["novel"]))["scores"]
        maps = sigs["embed"](features=tf.constant(data["x"]))[{maps!r}]
        bad = None
        try:
            sigs["serving_default"](features=tf.zeros((2, 15, 8)))
        except tf.errors.InvalidArgumentError as err:
            bad = err.message
        print(json.dumps({{
            "scores": out["scores"].numpy().tolist(),
            "labels": [[v.decode() for v in row]
                       for row in out["top_k_labels"].numpy()],
            "novel": novel.numpy().tolist(),
            "maps": list(maps.shape),
            "epsilon_imported": "epsilon_tf" in sys.modules,
            "bad": bad,
        }}))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True,
        timeout=300, env=tiny.child_env(PYTHONPATH=""), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert not got["epsilon_imported"]
    np.testing.assert_allclose(got["scores"], expected, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(got["novel"], expected_novel, rtol=1e-4,
                               atol=1e-4)
    top = np.argsort(-expected, axis=1, kind="stable")[:, :4]
    assert got["labels"] == [[f"label {i}" for i in row] for row in top]
    assert got["maps"][0] == 5 and got["maps"][-1] == 16
    assert "expected shape [batch, 16, 8]" in got["bad"]
    with pytest.raises(ValueError, match="in float32 only"):
        export_saved_model(model, space, str(tmp_path / "b"),
                           precision="bfloat16")


@pytest.mark.slow  # 30 s of subprocesses; the experiments' --quick test
# trains both baselines through the same configs in the default run.
def test_train_py_selects_the_model_by_flag(tmp_path):
    """`train.py --model=biam`: BiAM's batch of 32 unless set, trained,
    evaluated, saved and exported; the export CLI re-exports it."""
    from epsilon_tf.export import read_export_info

    data = tiny.write_native(tmp_path / "data")
    model_dir = tmp_path / "run"
    flags = [f for f in tiny.BASE_FLAGS if not f.startswith("--batch_size")]
    command = [
        tiny.PYTHON, str(tiny.ROOT / "train.py"), *flags, "--epochs=1",
        "--export", f"--data_dir={data}", f"--model_dir={model_dir}",
        "--model=biam", "--biam_channels=8", "--biam_heads=2",
    ]
    code, log = tiny.run(command, tmp_path / "train.log")
    assert code == 0, log[-3000:]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["ModelConfig"]["model"] == "biam"
    assert config["TrainConfig"]["batch_size"] == 32  # MODEL_PRESETS
    assert "BiAM       ZSL" in log
    metrics = tiny.metrics(model_dir)
    assert metrics["n_labels"] == {"zsl": 8, "gzsl": 38}
    assert 0 < metrics["zsl"]["map"] <= 1
    assert read_export_info(model_dir / "export" / "1")["model"] == "biam"
    code, log = tiny.run(
        [tiny.PYTHON, "-m", "epsilon_tf.export", f"--model_dir={model_dir}"],
        tmp_path / "export.log",
    )
    assert code == 0, log[-3000:]
    assert read_export_info(model_dir / "export" / "2")["model"] == "biam"
