"""The assembled model: outputs, ablations, relabeling, save/reload."""

import dataclasses

import keras
import numpy as np
import pytest

from epsilon_tf.labels import LabelSpace
from epsilon_tf.models import (
    build_epsilon,
    fusion_weight,
    semantic_model,
    with_labels,
)

RNG = np.random.default_rng(0)


def features(n=4, shape=(9, 8)):
    return RNG.normal(size=(n,) + shape).astype("float32")


def unit(w):
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def test_outputs_and_scores_follow_the_design(tiny_model_config):
    seen = RNG.normal(size=(10, 12)).astype("float32")
    model = build_epsilon(tiny_model_config, seen)
    x = features()
    out = model(x)
    assert out["scores"].shape == (4, 10)
    assert out["local_prompts"].shape == (4, 3, 12)
    assert out["assignments"].shape == (4, 3, 9)
    assert out["global_vectors"].shape == (4, 2, 12)
    # Scores = a * max_p <S_p, w> + (1 - a) * max_m <G_m, w>, recomputed.
    w = unit(seen)
    local = np.einsum("bpe,ke->bpk", out["local_prompts"], w).max(1)
    glob = np.einsum("bpe,ke->bpk", out["global_vectors"], w).max(1)
    a = fusion_weight(model)
    assert a == pytest.approx(0.5)
    np.testing.assert_allclose(
        out["scores"], a * local + (1 - a) * glob, rtol=1e-5, atol=1e-5
    )


def test_with_labels_shares_trained_layers(tiny_model_config):
    seen = RNG.normal(size=(10, 12)).astype("float32")
    model = build_epsilon(tiny_model_config, seen)
    # Perturb the weights as training would.
    for w in model.trainable_weights:
        w.assign(w.numpy() + RNG.normal(scale=0.05, size=w.shape))
    x = features()
    novel = RNG.normal(size=(5, 12)).astype("float32")
    relabeled = with_labels(model, novel)
    out = model(x)
    scores = relabeled(x)["scores"].numpy()
    w = unit(novel)
    a = fusion_weight(model)
    expected = a * np.einsum("bpe,ke->bpk", out["local_prompts"], w).max(1)
    expected += (1 - a) * np.einsum(
        "bpe,ke->bpk", out["global_vectors"], w
    ).max(1)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    # Same variables, not copies: a change to the original shows through.
    gpa = model.get_layer("gpa")
    assert relabeled.get_layer("gpa") is gpa
    gpa.prompt_tokens.assign(
        RNG.normal(size=gpa.prompt_tokens.shape).astype("float32")
    )
    assert not np.allclose(relabeled(x)["scores"], scores)
    # A LabelSpace works as well as an array, and the seen set round-trips.
    space = LabelSpace.from_arrays([f"l{i}" for i in range(10)], seen)
    np.testing.assert_allclose(
        with_labels(model, space)(x)["scores"], model(x)["scores"],
        rtol=1e-6,
    )
    assert set(semantic_model(model)(x)) == {
        "local_prompts", "assignments", "global_vectors",
    }


@pytest.mark.parametrize(
    "branches,keys,weight",
    [
        ("gpa", {"scores", "local_prompts", "assignments"}, 1.0),
        ("gfp", {"scores", "global_vectors"}, 0.0),
    ],
)
def test_single_branch_ablations(tiny_model_config, branches, keys, weight):
    cfg = dataclasses.replace(tiny_model_config, branches=branches)
    seen = RNG.normal(size=(6, 12)).astype("float32")
    model = build_epsilon(cfg, seen)
    out = model(features())
    assert set(out) == keys
    assert fusion_weight(model) == weight
    vectors = out["local_prompts" if branches == "gpa" else "global_vectors"]
    np.testing.assert_allclose(
        out["scores"],
        np.einsum("bpe,ke->bpk", vectors, unit(seen)).max(1),
        rtol=1e-5, atol=1e-5,
    )


def test_fixed_fusion_and_normalized_scaled_scores(tiny_model_config):
    cfg = dataclasses.replace(
        tiny_model_config, fusion="fixed", fusion_init=0.8,
        normalize_semantic=True, score_scale=4.0,
    )
    model = build_epsilon(cfg, RNG.normal(size=(6, 12)))
    assert "theta" not in [w.name for w in model.trainable_weights]
    assert fusion_weight(model) == pytest.approx(0.8)
    out = model(features())
    np.testing.assert_allclose(
        np.linalg.norm(out["local_prompts"], axis=-1), 1.0, rtol=1e-5
    )
    assert np.abs(out["scores"]).max() <= 4.0 + 1e-5


def test_keras_save_and_reload_give_identical_scores(
    tiny_model_config, tmp_path
):
    model = build_epsilon(tiny_model_config, RNG.normal(size=(7, 12)))
    for w in model.trainable_weights:
        w.assign(w.numpy() + RNG.normal(scale=0.05, size=w.shape))
    x = features()
    path = tmp_path / "epsilon.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        reloaded(x)["scores"].numpy(), model(x)["scores"].numpy()
    )
    novel = RNG.normal(size=(3, 12))
    np.testing.assert_allclose(
        with_labels(reloaded, novel)(x)["scores"],
        with_labels(model, novel)(x)["scores"],
        rtol=0, atol=0,
    )


def test_bad_inputs_are_clear(tiny_model_config):
    model = build_epsilon(tiny_model_config, RNG.normal(size=(7, 12)))
    with pytest.raises(ValueError, match=r"expected shape=\(None, 9, 8\)"):
        model(np.zeros((2, 9, 7), "float32"))
    with pytest.raises(ValueError, match="expected shape|ndim"):
        model(np.zeros((2, 72), "float32"))
    with pytest.raises(ValueError, match="width 11 but the model scores "
                                         "12-d word vectors"):
        with_labels(model, np.ones((3, 11)))
    with pytest.raises(ValueError, match="2-D array"):
        with_labels(model, np.ones(12))
    with pytest.raises(ValueError, match="`branches` must be one of"):
        dataclasses.replace(tiny_model_config, branches="none")
    with pytest.raises(TypeError, match="must be a ModelConfig"):
        build_epsilon({"hidden_dim": 3}, np.ones((2, 12)))
    with pytest.raises(ValueError, match="not an Epsilon model"):
        with_labels(keras.Sequential([keras.Input((3,)),
                                      keras.layers.Dense(2)]), np.ones((2, 2)))


def test_tf_checkpoint_covers_every_variable(tiny_model_config, tmp_path):
    import tensorflow as tf

    cfg = dataclasses.replace(tiny_model_config, gpa_layers=2, gfp_blocks=2)
    model = build_epsilon(cfg, RNG.normal(size=(5, 12)))
    for w in model.trainable_weights:
        w.assign(w.numpy() + RNG.normal(scale=0.1, size=w.shape))
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ck"))
    stored = [
        n for n, _ in tf.train.list_variables(path)
        if n != "_CHECKPOINTABLE_OBJECT_GRAPH"
    ]
    assert len(stored) == len(
        [v for v in model.variables if "seed_generator" not in v.path]
    )
    fresh = build_epsilon(cfg, RNG.normal(size=(5, 12)))
    tf.train.Checkpoint(model=fresh).read(path).assert_consumed()
    x = features()
    np.testing.assert_array_equal(
        fresh(x)["scores"].numpy(), model(x)["scores"].numpy()
    )
