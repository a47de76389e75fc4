"""Layer tests: NumPy re-computation, shapes, training, config, save/load."""

import warnings

import keras
import numpy as np
import pytest
from helpers.reference import np_dense, np_gelu, np_layer_norm, np_softmax

from epsilon_tf.layers import (
    GlobalForwardPropagation,
    GroupPromptsAggregation,
    LabelScoring,
    LearnableFusion,
)

RNG = np.random.default_rng(0)


def randomize(layer):
    for w in layer.weights:
        if w.trainable:
            w.assign(RNG.normal(scale=0.3, size=w.shape).astype("float32"))


# ----------------------------------------------------------------- GPA
@pytest.mark.parametrize("grouping,g", [("tokens", 3), ("groups", 3),
                                        ("groups", 1), ("tokens", 1)])
def test_gpa_matches_numpy(grouping, g):
    # g = 1 with grouping over the groups: every token's softmax over one
    # prompt is 1 (the layer sets it without Keras' size-1 softmax warning).
    x = RNG.normal(size=(2, 5, 8)).astype("float32")
    gpa = GroupPromptsAggregation(
        num_prompts=g, embedding_dim=4, num_layers=0, grouping=grouping
    )
    gpa.build(x.shape)
    randomize(gpa)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prompts, maps = gpa(x)

    tokens = np.concatenate(
        [np.broadcast_to(gpa.prompt_tokens.numpy(), (2, g, 8)), x], axis=1
    )
    tokens = np_layer_norm(tokens, gpa.encoded_norm)
    q = np_dense(tokens[:, :g], gpa.query)
    k = np_dense(tokens[:, g:], gpa.key)
    v = np_dense(tokens[:, g:], gpa.value)
    logits = np.einsum("bgd,bnd->bgn", q, k) / np.sqrt(8)
    if grouping == "tokens":
        a = np_softmax(logits, axis=-1)
        grouped = a @ v
    else:
        a = np_softmax(logits, axis=1)
        grouped = (a @ v) / (a.sum(-1, keepdims=True) + 1e-6)
    expected = np_dense(grouped, gpa.output_projection)
    np.testing.assert_allclose(maps, a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prompts, expected, rtol=1e-4, atol=1e-5)
    # Each prompt's map sums to 1 over tokens, or each token over groups.
    axis = -1 if grouping == "tokens" else 1
    np.testing.assert_allclose(np.sum(maps, axis=axis), 1.0, rtol=1e-5)


def test_gpa_encoder_mixes_prompts_with_tokens():
    x = RNG.normal(size=(2, 6, 8)).astype("float32")
    gpa = GroupPromptsAggregation(
        num_prompts=2, embedding_dim=4, num_layers=2, num_heads=2
    )
    prompts, maps = gpa(x)
    assert prompts.shape == (2, 2, 4) and maps.shape == (2, 2, 6)
    assert gpa.compute_output_shape((None, 6, 8)) == (
        (None, 2, 4),
        (None, 2, 6),
    )
    assert len(gpa.blocks) == 2
    # Moving one token changes the other image's output not at all.
    x2 = x.copy()
    x2[1, 0] += RNG.normal(size=8).astype("float32") * 3.0
    p2, _ = gpa(x2)
    np.testing.assert_allclose(p2[0], prompts[0], atol=1e-6)
    assert np.abs(p2[1] - prompts[1]).max() > 1e-3


# ----------------------------------------------------------------- GFP
def test_gfp_matches_numpy():
    x = RNG.normal(size=(3, 5, 6)).astype("float32")
    gfp = GlobalForwardPropagation(
        num_global=2, embedding_dim=4, hidden_dim=8, num_blocks=2
    )
    gfp.build(x.shape)
    randomize(gfp)
    out = gfp(x).numpy()
    h = np_dense(np.concatenate([x.mean(1), x.max(1)], -1),
                 gfp.input_projection)
    for norm, inner, outer in gfp.block_layers:
        h = h + np_dense(np_gelu(np_dense(np_layer_norm(h, norm), inner)),
                         outer)
    y = np_dense(np_layer_norm(h, gfp.output_norm), gfp.output_projection)
    np.testing.assert_allclose(out, y.reshape(3, 2, 4), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("pooling,width", [("avg", 6), ("max", 6),
                                           ("avg_max", 12)])
def test_gfp_pooling_width(pooling, width):
    gfp = GlobalForwardPropagation(num_global=1, embedding_dim=3,
                                   hidden_dim=4, pooling=pooling)
    gfp(np.zeros((1, 5, 6), "float32"))
    assert gfp.input_projection.kernel.shape == (width, 4)


# ---------------------------------------------------------- LabelScoring
def test_label_scoring_hand_case():
    # Two semantic vectors, three labels (rows normalized inside).
    s = np.array([[[1.0, 0.0], [0.0, 2.0]]], "float32")
    w = np.array([[3.0, 0.0], [0.0, -1.0], [1.0, 1.0]], "float32")
    scoring = LabelScoring(label_embeddings=w)
    # label 0: max(1, 0) = 1; label 1: max(0, -2) = 0;
    # label 2 = (1,1)/sqrt2: max(0.7071, 1.4142) = 1.4142
    np.testing.assert_allclose(
        scoring(s), [[1.0, 0.0, np.sqrt(2)]], rtol=1e-6
    )
    dynamic = LabelScoring()
    np.testing.assert_allclose(dynamic([s, w]), scoring(s), rtol=1e-6)
    assert scoring.trainable_weights == []


def test_label_scoring_matches_numpy_and_swaps_vocabulary():
    s = RNG.normal(size=(4, 3, 5)).astype("float32")
    w = RNG.normal(size=(7, 5)).astype("float32")
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    expected = np.einsum("bpe,ke->bpk", s, wn).max(1)
    scoring = LabelScoring(label_embeddings=w)
    np.testing.assert_allclose(scoring(s), expected, rtol=1e-5, atol=1e-6)
    w2 = RNG.normal(size=(7, 5)).astype("float32")
    scoring.set_label_embeddings(w2)
    w2n = w2 / np.linalg.norm(w2, axis=1, keepdims=True)
    np.testing.assert_allclose(
        scoring(s), np.einsum("bpe,ke->bpk", s, w2n).max(1), rtol=1e-5,
        atol=1e-6,
    )


def test_label_scoring_width_mismatch_is_clear():
    scoring = LabelScoring(label_embeddings=np.ones((3, 5)))
    with pytest.raises(ValueError, match="width 5 but the model's semantic"):
        scoring(np.ones((1, 2, 4), "float32"))
    with pytest.raises(ValueError, match="rank 3"):
        LabelScoring(label_embeddings=np.ones((3, 5)))(np.ones((2, 5)))


# ------------------------------------------------------- LearnableFusion
def test_fusion_formula():
    fusion = LearnableFusion(initial_weight=0.25)
    local = RNG.normal(size=(2, 3)).astype("float32")
    glob = RNG.normal(size=(2, 3)).astype("float32")
    np.testing.assert_allclose(
        fusion([local, glob]), 0.25 * local + 0.75 * glob, rtol=1e-5
    )
    fusion.theta.assign(2.0)
    fusion.log_temperature.assign([np.log(2.0), np.log(0.5)])
    a = 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(
        fusion([local, glob]),
        a * 2.0 * local + (1 - a) * 0.5 * glob,
        rtol=1e-5,
    )
    assert float(fusion.fusion_weight()) == pytest.approx(a)


def test_fusion_trainability():
    learned = LearnableFusion()
    learned([np.zeros((1, 2)), np.zeros((1, 2))])
    assert [w.name for w in learned.trainable_weights] == ["theta"]
    fixed = LearnableFusion(mode="fixed")
    fixed([np.zeros((1, 2)), np.zeros((1, 2))])
    assert fixed.trainable_weights == []
    temp = LearnableFusion(learn_temperature=True)
    temp([np.zeros((1, 2)), np.zeros((1, 2))])
    assert len(temp.trainable_weights) == 2


# ---------------------------------------- common: train, config, save/load
LAYER_CASES = [
    (
        lambda: GroupPromptsAggregation(num_prompts=3, embedding_dim=4,
                                        num_heads=2),
        (2, 5, 8),
    ),
    (
        lambda: GroupPromptsAggregation(num_prompts=2, embedding_dim=4,
                                        num_heads=2, grouping="groups"),
        (2, 5, 8),
    ),
    (
        lambda: GlobalForwardPropagation(num_global=2, embedding_dim=4,
                                         hidden_dim=8),
        (2, 5, 8),
    ),
]


@pytest.mark.parametrize("make,shape", LAYER_CASES)
def test_layer_trains_and_round_trips(make, shape, tmp_path):
    layer = make()
    inputs = keras.Input(shape[1:])
    out = layer(inputs)
    first = out[0] if isinstance(out, (tuple, list)) else out
    scores = LabelScoring(label_embeddings=RNG.normal(size=(6, 4)))(first)
    model = keras.Model(inputs, scores)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x = RNG.normal(size=(16,) + shape[1:]).astype("float32")
    y = RNG.normal(size=(16, 6)).astype("float32")
    before = [w.numpy().copy() for w in layer.trainable_weights]
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert any(
        not np.allclose(b, w.numpy())
        for b, w in zip(before, layer.trainable_weights)
    )
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded(x), model(x), rtol=1e-5, atol=1e-6)


def test_scoring_and_fusion_round_trip(tmp_path):
    inp = keras.Input((3, 4))
    scoring = LabelScoring(label_embeddings=RNG.normal(size=(5, 4)))
    out = LearnableFusion(initial_weight=0.3, learn_temperature=True)(
        [scoring(inp), scoring(inp * 2.0)]
    )
    model = keras.Model(inp, out)
    x = RNG.normal(size=(2, 3, 4)).astype("float32")
    model.save(tmp_path / "f.keras")
    reloaded = keras.saving.load_model(tmp_path / "f.keras")
    np.testing.assert_allclose(reloaded(x), model(x), rtol=1e-6)
    cfg = LearnableFusion(mode="fixed", initial_weight=0.7).get_config()
    assert cfg["mode"] == "fixed" and cfg["initial_weight"] == 0.7
    assert LabelScoring(num_labels=3, embedding_dim=4).get_config()[
        "num_labels"
    ] == 3


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: GroupPromptsAggregation(num_prompts=0),
         r"`num_prompts` must be a positive integer. Received: num_prompts=0"),
        (lambda: GroupPromptsAggregation(grouping="pixels"),
         r"`grouping` must be one of"),
        (lambda: GroupPromptsAggregation(num_layers=-1),
         r"`num_layers` must be a non-negative integer"),
        (lambda: GroupPromptsAggregation(dropout=1.5),
         r"`dropout` must be a float in \[0, 1\)"),
        (lambda: GlobalForwardPropagation(num_global=0),
         r"`num_global` must be a positive integer"),
        (lambda: GlobalForwardPropagation(pooling="sum"),
         r"`pooling` must be one of"),
        (lambda: LabelScoring(num_labels=3),
         r"`num_labels` and `embedding_dim` must be given together"),
        (lambda: LabelScoring(label_embeddings=np.ones(3)),
         r"`label_embeddings` must be a 2-D array"),
        (lambda: LabelScoring(label_embeddings=np.full((2, 2), np.nan)),
         r"`label_embeddings` must be finite"),
        (lambda: LearnableFusion(initial_weight=1.0),
         r"`initial_weight` must be a float in \(0, 1\)"),
        (lambda: LearnableFusion(mode="mean"), r"`mode` must be one of"),
    ],
)
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_input_shapes():
    with pytest.raises(ValueError, match="rank 3"):
        GroupPromptsAggregation()(np.zeros((2, 8), "float32"))
    with pytest.raises(ValueError, match="divisible by `num_heads`"):
        GroupPromptsAggregation(num_heads=3)(np.zeros((1, 4, 8), "float32"))
    with pytest.raises(ValueError, match="same shape"):
        LearnableFusion()([np.zeros((1, 2)), np.zeros((1, 3))])


def test_shared_integer_checks_refuse_bools_and_out_of_range():
    from epsilon_tf import _validation as check

    assert check.positive_int("n", 3) == 3
    assert check.non_negative_int("n", 0) == 0
    for bad in (True, 0, -1, 2.0, "3"):
        with pytest.raises(ValueError, match=r"`n` must be a positive"):
            check.positive_int("n", bad)
    for bad in (False, -1, 1.0):
        with pytest.raises(ValueError, match=r"`n` must be a non-negative"):
            check.non_negative_int("n", bad)


def test_listed_sublayers_reach_the_checkpoint(tmp_path):
    # GPA's encoder blocks and GFP's residual blocks live in Python lists;
    # layers.tracking registers them, so a tf.train.Checkpoint of the layer
    # saves every weight, under the keys the trainer's checkpoints use.
    import tensorflow as tf

    gpa = GroupPromptsAggregation(num_prompts=2, embedding_dim=4,
                                  num_layers=2)
    gpa.build((1, 5, 8))
    gfp = GlobalForwardPropagation(num_global=1, embedding_dim=4,
                                   hidden_dim=8, num_blocks=2)
    gfp.build((1, 5, 6))
    for layer, keys in ((gpa, ("encoder_block_0", "encoder_block_1")),
                        (gfp, ("norm_0", "ffn_0_1", "ffn_1_2"))):
        path = tf.train.Checkpoint(layer=layer).write(
            str(tmp_path / layer.name))
        saved = [name for name, _ in tf.train.list_variables(path)
                 if name.startswith("layer/")]
        # One entry per weight (plus none for anything else).
        assert len([n for n in saved if "OPTIMIZER" not in n]) == len(
            layer.weights)
        for key in keys:
            assert any(n.startswith(f"layer/{key}/") for n in saved), key
