"""Each layer's folded inference form computes the layer's `call`.

The weights are perturbed (no zero bias, no unit LayerNorm scale, no zero
offset), since a fresh layer's trivial weights would hide a wrong fold.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from epsilon_tf.layers import (
    GlobalForwardPropagation,
    GroupPromptsAggregation,
    LabelScoring,
    LearnableFusion,
    TransformerEncoderBlock,
)
from epsilon_tf.layers.folding import FoldedNormDense
from epsilon_tf.layers.label_scoring import unit_rows

RNG = np.random.default_rng(7)
TOL = dict(rtol=1e-5, atol=1e-5)


def perturb(layer, scale=0.3, seed=0):
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        if weight.trainable:
            noise = rng.normal(scale=scale, size=weight.shape)
            weight.assign(weight.numpy() + noise.astype("float32"))
    return layer


def traced(form, *args):
    """Calls a folded form inside one `tf.function`, as the export does."""
    return tf.function(form, autograph=False)(*args)


def inputs(*shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("epsilon", [1e-6, 0.5])
def test_encoder_block_fold(epsilon):
    x = inputs(3, 9, 16)
    block = TransformerEncoderBlock(
        num_heads=4, mlp_ratio=1.5, layer_norm_epsilon=epsilon
    )
    block.build(x.shape)
    perturb(block)
    expected = block(x, training=False).numpy()
    got = traced(block.fold_for_inference(), tf.constant(x)).numpy()
    np.testing.assert_allclose(got, expected, **TOL)
    assert np.abs(expected - x).max() > 0.1  # the block does something


def test_encoder_block_fold_reads_the_epsilon():
    # Small-variance tokens: epsilon 0.5 changes the output, and the fold
    # follows it instead of assuming 1e-6.
    x = 0.05 * inputs(2, 6, 8)
    outputs = {}
    for epsilon in (1e-6, 0.5):
        keras.utils.set_random_seed(0)
        block = TransformerEncoderBlock(num_heads=2, layer_norm_epsilon=epsilon)
        block.build(x.shape)
        perturb(block)
        folded = traced(block.fold_for_inference(), tf.constant(x)).numpy()
        np.testing.assert_allclose(
            folded, block(x, training=False).numpy(), **TOL
        )
        outputs[epsilon] = folded
    assert np.abs(outputs[1e-6] - outputs[0.5]).max() > 1e-2


def test_encoder_block_fold_in_bfloat16_is_close():
    x = inputs(2, 9, 16)
    block = TransformerEncoderBlock(num_heads=4)
    block.build(x.shape)
    perturb(block)
    expected = block(x, training=False).numpy()
    got = traced(block.fold_for_inference("bfloat16"), tf.constant(x))
    assert got.dtype == tf.float32
    diff = np.abs(got.numpy() - expected).max()
    # Really bfloat16 (8 bits of mantissa), still close.
    assert 1e-4 < diff < 0.03 * np.abs(expected).max()


@pytest.mark.parametrize("grouping", ["tokens", "groups"])
@pytest.mark.parametrize("num_layers", [0, 2])
def test_gpa_fold(grouping, num_layers):
    x = inputs(3, 10, 16)
    gpa = GroupPromptsAggregation(
        num_prompts=4, embedding_dim=6, num_layers=num_layers, num_heads=2,
        grouping=grouping, layer_norm_epsilon=1e-3,
    )
    gpa.build(x.shape)
    perturb(gpa, seed=num_layers)
    prompts, maps = gpa(x, training=False)
    got_prompts, got_maps = traced(gpa.fold_for_inference(), tf.constant(x))
    np.testing.assert_allclose(got_maps.numpy(), maps.numpy(), **TOL)
    np.testing.assert_allclose(got_prompts.numpy(), prompts.numpy(), **TOL)
    axis = -1 if grouping == "tokens" else 1
    np.testing.assert_allclose(got_maps.numpy().sum(axis), 1.0, atol=1e-5)
    assert np.ptp(prompts.numpy()) > 0.5


@pytest.mark.parametrize("pooling", ["avg_max", "avg", "max"])
def test_gfp_fold(pooling):
    x = inputs(4, 10, 8)
    gfp = GlobalForwardPropagation(
        num_global=3, embedding_dim=5, hidden_dim=12, num_blocks=2,
        pooling=pooling, layer_norm_epsilon=1e-2,
    )
    gfp.build(x.shape)
    perturb(gfp)
    expected = gfp(x, training=False).numpy()
    got = traced(gfp.fold_for_inference(), tf.constant(x)).numpy()
    assert got.shape == (4, 3, 5)
    np.testing.assert_allclose(got, expected, **TOL)


def test_label_scoring_fold_fixed_and_open_vocabulary():
    semantic = inputs(3, 7, 6)
    vectors = inputs(5, 6, seed=2) * 4.0
    scoring = LabelScoring(label_embeddings=vectors)
    expected = scoring(semantic).numpy()
    form = scoring.fold_for_inference()
    np.testing.assert_allclose(
        traced(form, tf.constant(semantic)).numpy(), expected, **TOL
    )
    # An open vocabulary: rows normalized by `unit_rows`, as `call` does.
    novel = inputs(9, 6, seed=3) * 2.0
    open_scoring = LabelScoring()
    reference = open_scoring([semantic, novel]).numpy()
    got = traced(form, tf.constant(semantic), unit_rows(tf.constant(novel)))
    np.testing.assert_allclose(got.numpy(), reference, **TOL)
    # Independent NumPy: max over the vectors of the cosine-row products.
    unit = novel / np.linalg.norm(novel, axis=1, keepdims=True)
    np.testing.assert_allclose(
        reference, np.einsum("bpe,ke->bpk", semantic, unit).max(1), **TOL
    )


@pytest.mark.parametrize("learn_temperature", [False, True])
def test_learnable_fusion_fold(learn_temperature):
    local, glob = inputs(4, 6), inputs(4, 6, seed=5)
    fusion = LearnableFusion(
        initial_weight=0.3, learn_temperature=learn_temperature
    )
    fusion.build([local.shape, glob.shape])
    fusion.theta.assign(-0.4)
    fusion.log_temperature.assign([0.3, -0.2])
    expected = fusion([local, glob]).numpy()
    form = fusion.fold_for_inference()
    got = traced(form, tf.constant(local), tf.constant(glob)).numpy()
    np.testing.assert_allclose(got, expected, **TOL)
    a = 1 / (1 + np.exp(0.4))
    assert form.fusion_weight == pytest.approx(a)
    np.testing.assert_allclose(
        expected, a * np.exp(0.3) * local + (1 - a) * np.exp(-0.2) * glob,
        **TOL,
    )
    scaled = form.scaled(5.0)
    np.testing.assert_allclose(
        traced(scaled, tf.constant(local), tf.constant(glob)).numpy(),
        5.0 * expected, **TOL,
    )


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_token_projection_fold(precision):
    x = inputs(3, 12, 10) * 3.0 + 1.0
    norm = keras.layers.LayerNormalization(epsilon=1e-3)
    dense = keras.layers.Dense(8)
    reference = keras.Sequential([keras.Input((12, 10)), norm, dense])
    perturb(reference)
    expected = reference(x).numpy()
    got = traced(FoldedNormDense(norm, dense, precision), tf.constant(x))
    assert got.shape == (3, 12, 8) and got.dtype == tf.float32
    atol = 1e-5 if precision == "float32" else 0.1
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=atol)
    if precision == "bfloat16":
        assert np.abs(got.numpy() - expected).max() > 1e-4


def test_folds_are_snapshots_and_configs_keep_the_epsilon():
    x = inputs(2, 5, 8)
    gfp = GlobalForwardPropagation(
        num_global=2, embedding_dim=3, hidden_dim=8, layer_norm_epsilon=1e-4
    )
    gfp.build(x.shape)
    perturb(gfp)
    form = gfp.fold_for_inference()
    before = traced(form, tf.constant(x)).numpy()
    perturb(gfp, seed=9)  # "trained further": the old form does not move
    np.testing.assert_allclose(traced(form, tf.constant(x)).numpy(), before)
    config = gfp.get_config()
    assert config["layer_norm_epsilon"] == 1e-4
    assert GlobalForwardPropagation.from_config(config).layer_norm_epsilon == (
        1e-4
    )
    gpa = GroupPromptsAggregation(num_layers=1, layer_norm_epsilon=1e-5)
    assert GroupPromptsAggregation.from_config(
        gpa.get_config()
    ).layer_norm_epsilon == 1e-5


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (TransformerEncoderBlock, {}),
        (GroupPromptsAggregation, {}),
        (GlobalForwardPropagation, {}),
    ],
)
@pytest.mark.parametrize("bad", [0, -1e-6, "1e-6", True])
def test_bad_layer_norm_epsilon_rejected(cls, kwargs, bad):
    with pytest.raises(ValueError, match="`layer_norm_epsilon` must be a"):
        cls(layer_norm_epsilon=bad, **kwargs)


def test_unknown_precision_rejected():
    block = TransformerEncoderBlock(num_heads=2)
    block.build((1, 4, 8))
    with pytest.raises(ValueError, match="`precision` must be one of"):
        block.fold_for_inference("float16")
    gfp = GlobalForwardPropagation(num_global=1, embedding_dim=2)
    gfp.build((1, 4, 8))
    with pytest.raises(ValueError, match="`precision` must be one of"):
        gfp.fold_for_inference("int8")


def test_unbuilt_layers_cannot_be_folded():
    for layer in (
        TransformerEncoderBlock(),
        GroupPromptsAggregation(),
        GlobalForwardPropagation(),
        LabelScoring(num_labels=2, embedding_dim=3),
        LearnableFusion(),
    ):
        with pytest.raises(ValueError, match="is not built"):
            layer.fold_for_inference()


def _standardization(width, seed):
    from epsilon_tf.layers import FeatureStandardization

    norm = FeatureStandardization()
    norm.build((None, width))
    rng = np.random.default_rng(seed)
    norm.set_statistics(rng.normal(size=width), rng.uniform(0.3, 3.0, width))
    return norm


@pytest.mark.parametrize("kind", ["standardize", "identity"])
def test_token_projection_fold_other_norms(kind):
    x = np.abs(inputs(3, 12, 10)) * 3.0
    norm = (_standardization(10, 4) if kind == "standardize"
            else keras.layers.Identity())
    dense = keras.layers.Dense(8)
    reference = keras.Sequential([keras.Input((12, 10)), norm, dense])
    perturb(reference)
    expected = reference(x).numpy()
    got = traced(FoldedNormDense(norm, dense), tf.constant(x)).numpy()
    np.testing.assert_allclose(got, expected, **TOL)


def test_gfp_fold_with_pooled_standardization():
    x = np.abs(inputs(4, 10, 8)) * 2.0
    gfp = GlobalForwardPropagation(
        num_global=1, embedding_dim=5, hidden_dim=12, num_blocks=0,
        input_source="features", pooled_norm=True,
    )
    gfp.build(x.shape)
    perturb(gfp)
    pooled = np.concatenate([x.mean(1), x.max(1)], axis=1)
    gfp.pooled_normalization.set_statistics(pooled.mean(0) + 0.1,
                                            pooled.std(0) + 0.2)
    expected = gfp(x, training=False).numpy()
    form = gfp.fold_for_inference()
    assert form.input_source == "features"
    np.testing.assert_allclose(traced(form, tf.constant(x)).numpy(),
                               expected, **TOL)


@pytest.mark.parametrize("branches", ["both", "gfp"])
def test_release_preset_model_exports_in_agreement(tmp_path, branches):
    """The release-shaped model folds whole; the export's check passes."""
    import json

    from epsilon_tf.config import RELEASE_PRESET, preset_configs
    from epsilon_tf.export import export_saved_model
    from epsilon_tf.export.inference_graph import InferenceGraph
    from epsilon_tf.labels import LabelSpace
    from epsilon_tf.models import build_epsilon
    from epsilon_tf.training.standardization import fit_standardization

    config, _, _ = preset_configs(
        RELEASE_PRESET, (9, 6),
        {"hidden_dim": 8, "gpa_heads": 2, "num_prompts": 2,
         "branches": branches},
    )
    vectors = inputs(7, 4, seed=5)
    space = LabelSpace.from_arrays([f"l{i}" for i in range(7)], vectors,
                                   seen=np.arange(5))
    model = build_epsilon(config, space.subset("seen"))
    feats = np.abs(inputs(16, 9, 6, seed=6)) * 3.0
    fit_standardization(model, [feats])
    perturb(model)
    graph = InferenceGraph(model)
    got = graph.score_features(tf.constant(feats[:4]),
                               tf.constant(unit_rows(vectors[:5])))
    np.testing.assert_allclose(got.numpy(), model(feats[:4])["scores"],
                               **TOL)
    info = export_saved_model(model, space, str(tmp_path / "export"))
    saved = json.loads(
        (tmp_path / "export" / "1" / "assets" / "export_info.json")
        .read_text()
    )
    assert saved["fold_check"]["max_abs_difference"] < 1e-4, info
