"""The export's contract checks: the folded graph agrees with the Keras
model (checked and recorded at every export), non-finite inputs are
refused, and a model that is not Epsilon but has the same serving contract
exports through its Keras layers."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny

from epsilon_tf.export import (
    export_saved_model,
    read_export_info,
    serving_module,
)
from epsilon_tf.layers import GlobalForwardPropagation, LabelScoring
from epsilon_tf.models import build_epsilon, with_labels

SHAPE = (16, 8)


def _space():
    return tiny.random_label_space(10, 7, 12, 0)


def _model(space, seed=1, **overrides):
    keras.utils.set_random_seed(seed)
    config = tiny.model_config(feature_shape=SHAPE, embedding_dim=12,
                               num_global=2, **overrides)
    model = build_epsilon(config, space.subset("seen"))
    return tiny.perturb_weights(model, seed=seed)


def _features(batch=3, seed=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch,) + SHAPE).astype("float32")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    space = _space()
    model = _model(space)
    path = export_saved_model(
        model, space, str(tmp_path_factory.mktemp("export")), top_k=3
    )
    return model, space, path, tf.saved_model.load(path)


# --- the export-time agreement check --------------------------------------


def test_every_export_records_its_agreement_with_the_keras_model(exported):
    model, space, path, loaded = exported
    info = read_export_info(path)
    assert info["serving_graph"] == "folded"
    check = info["fold_check"]
    assert check["batch"] == 4 and check["tolerance"] == 1e-4
    # The recorded figure is the real difference on the seeded batch: a
    # float32 fold is exact algebra, so it is rounding-sized, not zero.
    x = np.random.default_rng(check["seed"]).normal(size=(4,) + SHAPE)
    x = x.astype("float32")
    got = loaded.signatures["serving_default"](features=tf.constant(x))
    expected = with_labels(model, space)(x)["scores"].numpy()
    difference = np.abs(got["scores"].numpy() - expected).max()
    assert 0 < check["max_abs_difference"] < 1e-4
    assert difference <= check["max_abs_difference"] + 1e-7


def _broken_gfp_fold(monkeypatch, scale):
    original = GlobalForwardPropagation.fold_for_inference

    def broken(self, precision="float32"):
        form = original(self, precision)
        kernel, bias = form.output_projection
        form.output_projection = (kernel, bias + np.float32(scale))
        return form

    monkeypatch.setattr(GlobalForwardPropagation, "fold_for_inference", broken)


def test_a_broken_fold_is_refused(tmp_path, monkeypatch):
    space = _space()
    model = _model(space)
    _broken_gfp_fold(monkeypatch, 1e-2)
    with pytest.raises(serving_module.FoldMismatchError, match=(
        r"differs from the Keras model by [0-9.e-]+ \(more than 0.0001\) on "
        r"a seeded batch of 4: a layer's folded form is wrong"
    )):
        export_saved_model(model, space, str(tmp_path))
    assert not [n for n in os.listdir(tmp_path) if not n.startswith(".")]
    assert os.listdir(tmp_path) == []  # nothing left behind


def test_a_bfloat16_export_records_but_is_not_held_to_1e4(tmp_path):
    space = _space()
    model = _model(space, hidden_dim=32)
    path = export_saved_model(model, space, str(tmp_path), precision="bfloat16")
    check = read_export_info(path)["fold_check"]
    assert check["tolerance"] is None
    assert 1e-4 < check["max_abs_difference"] < 0.1


# --- non-finite inputs ------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("signature", ["serving_default", "embed"])
def test_non_finite_features_are_refused(exported, signature, bad):
    x = _features()
    x[1, 3, 2] = bad
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        exported[3].signatures[signature](features=tf.constant(x))
    assert "Input `features` must be finite: it holds NaN or Inf" in str(
        err.value
    )


def test_score_labels_refuses_non_finite_inputs(exported):
    score = exported[3].signatures["score_labels"]
    x = _features()
    labels = np.ones((4, 12), np.float32)
    score(features=tf.constant(x), label_embeddings=tf.constant(labels))
    bad_labels = labels.copy()
    bad_labels[2, 5] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        score(features=tf.constant(x), label_embeddings=tf.constant(
            bad_labels))
    assert "Input `label_embeddings` must be finite" in str(err.value)
    bad_x = x.copy()
    bad_x[0, 0, 0] = np.inf
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        score(features=tf.constant(bad_x), label_embeddings=tf.constant(
            labels))
    assert "Input `features` must be finite" in str(err.value)


def test_finite_extremes_still_answer(exported):
    x = _features()
    x[0] = 1e30  # large but finite: answered, scores finite
    out = exported[3].signatures["serving_default"](features=tf.constant(x))
    assert np.isfinite(out["scores"].numpy()).all()


# --- another model with the same contract plugs in ------------------------


def _other_model(space):
    """Not Epsilon: pooled features -> P vectors -> LabelScoring."""
    keras.utils.set_random_seed(3)
    features = keras.Input(SHAPE, name="features")
    pooled = keras.layers.GlobalAveragePooling1D()(features)
    vectors = keras.layers.Reshape((2, 12))(keras.layers.Dense(24)(pooled))
    scoring = LabelScoring(label_embeddings=space.subset("seen").vectors)
    scores = keras.layers.Rescaling(3.0)(scoring(vectors))
    model = keras.Model(
        features, {"scores": scores, "vectors": vectors}, name="other"
    )
    return tiny.perturb_weights(model, scale=0.3, seed=3)


def _numpy_other(model, x, labels):
    dense = next(
        layer for layer in model.layers
        if isinstance(layer, keras.layers.Dense)
    )
    kernel, bias = (w.numpy() for w in dense.weights)
    vectors = (x.mean(1) @ kernel + bias).reshape(-1, 2, 12)
    unit = labels / np.linalg.norm(labels, axis=1, keepdims=True)
    return 3.0 * np.einsum("bpe,ke->bpk", vectors, unit).max(1), vectors


def test_a_non_epsilon_model_exports_through_its_keras_layers(tmp_path):
    space = _space()
    model = _other_model(space)
    path = export_saved_model(model, space, str(tmp_path), top_k=4)
    info = read_export_info(path)
    assert info["serving_graph"] == "keras_reference"
    assert info["fold_check"]["tolerance"] is None
    loaded = tf.saved_model.load(path)
    x = _features()
    expected, vectors = _numpy_other(model, x, space.vectors)
    out = loaded.signatures["serving_default"](features=tf.constant(x))
    np.testing.assert_allclose(out["scores"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(
        out["top_k_indices"].numpy(),
        np.argsort(-expected, axis=1, kind="stable")[:, :4],
    )
    novel = np.random.default_rng(8).normal(size=(5, 12)).astype("float32")
    got = loaded.signatures["score_labels"](
        features=tf.constant(x), label_embeddings=tf.constant(novel)
    )["scores"].numpy()
    np.testing.assert_allclose(got, _numpy_other(model, x, novel)[0],
                               atol=1e-5)
    embedded = loaded.signatures["embed"](features=tf.constant(x))
    assert set(embedded) == {"vectors"}  # label-free outputs only
    np.testing.assert_allclose(embedded["vectors"].numpy(), vectors,
                               atol=1e-5)
    # The model's own vocabulary weight was only swapped while tracing.
    scoring = next(
        layer for layer in model.layers if isinstance(layer, LabelScoring)
    )
    assert scoring.label_embeddings.shape == (7, 12)
    assert isinstance(scoring.label_embeddings, keras.Variable)
    with pytest.raises(ValueError, match="in float32 only"):
        export_saved_model(model, space, str(tmp_path), precision="bfloat16")


def test_a_model_without_the_contract_is_refused(tmp_path):
    features = keras.Input(SHAPE)
    model = keras.Model(
        features, {"scores": keras.layers.Flatten()(features)}, name="plain"
    )
    with pytest.raises(ValueError, match="scores no labels through a"):
        export_saved_model(model, _space(), str(tmp_path))


def test_declared_shapes_in_the_signature_defs(exported):
    """What TF Serving's metadata endpoint reads (saved_model_cli shows
    the same; see test_export.py)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(exported[2], "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    sigs = proto.meta_graphs[0].signature_def

    def dims(info):
        return [d.size for d in info.tensor_shape.dim]

    for name in ("serving_default", "score_labels", "embed"):
        assert dims(sigs[name].inputs["features"]) == [-1, 16, 8]
    assert dims(sigs["score_labels"].inputs["label_embeddings"]) == [-1, 12]
    info = json.loads(
        open(os.path.join(exported[2], "assets", "export_info.json")).read()
    )
    assert info["feature_shape"] == [16, 8]


def test_session_loader_still_checks_declared_shapes(exported):
    """TF Serving runs the signature through a session and feeds tensors
    without checking them against the declared shape; the in-graph checks
    must not have been folded away by that declaration (a rank-4 tensor
    with the right leading sizes is the case constant folding would let
    through). Fed through the session's C API, as TF Serving does, since
    Python's `Session.run` checks shapes itself."""
    tf_session = pytest.importorskip(
        "tensorflow.python.client.pywrap_tf_session"
    )
    path = exported[2]
    with tf.Graph().as_default() as graph, tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sig = meta.signature_def["serving_default"]
        feed = graph.get_tensor_by_name(sig.inputs["features"].name)
        fetch = graph.get_tensor_by_name(sig.outputs["scores"].name)

        def run(x):
            return tf_session.TF_SessionRun_wrapper(
                sess._session, None, {feed._as_tf_output(): x},
                [fetch._as_tf_output()], [], None,
            )[0]

        assert run(_features()).shape == (3, 10)
        for shape, message in (
            ((2, 16, 8, 1), "`features` must have rank 3"),
            ((16, 8), "`features` must have rank 3"),
            ((2, 16, 7), "`features` has the wrong size"),
        ):
            with pytest.raises(tf.errors.InvalidArgumentError) as err:
                run(np.zeros(shape, np.float32))
            assert message in str(err.value), shape
        x = _features()
        x[0, 0, 0] = np.nan
        with pytest.raises(tf.errors.InvalidArgumentError) as err:
            run(x)
        assert "Input `features` must be finite" in str(err.value)


def test_a_mixed_precision_model_is_checked_against_its_float32_function(
    tmp_path,
):
    space = _space()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _model(space, hidden_dim=32)
        assert model.get_layer("gpa").compute_dtype == "bfloat16"
        bf16_scores = with_labels(model, space)(_features())["scores"]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = export_saved_model(model, space, str(tmp_path))
    check = read_export_info(path)["fold_check"]
    assert check["max_abs_difference"] < 1e-5
    got = tf.saved_model.load(path).signatures["serving_default"](
        features=tf.constant(_features())
    )["scores"].numpy()
    # The model itself computes in bfloat16: far from float32 (which is
    # why the check compares with a float32 twin), yet close.
    gap = np.abs(got - bf16_scores.numpy()).max()
    assert 1e-4 < gap < 0.5
    assert keras.config.dtype_policy().name == "float32"
