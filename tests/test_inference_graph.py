"""The folded inference graph that the exported signatures run.

It must compute the Keras model's function (float32) for every ablation
the folds depend on, and `precision="bfloat16"` must really compute in
bfloat16 while staying close to it."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny

from epsilon_tf.export import export_saved_model
from epsilon_tf.export.inference_graph import InferenceGraph
from epsilon_tf.labels import LabelSpace
from epsilon_tf.labels.label_space import l2_normalize_rows
from epsilon_tf.models import build_epsilon

FEATURE_SHAPE = (12, 10)
VARIANTS = {
    "default": {},
    "groupvit_grouping": dict(grouping="groups"),
    "gpa_only_two_blocks": dict(branches="gpa", gpa_layers=2, gpa_heads=4),
    "gfp_only_unnormalized": dict(branches="gfp", normalize_semantic=False),
    "no_encoder_temperatures": dict(gpa_layers=0, fusion_temperature=True),
    "fixed_fusion": dict(fusion="fixed", fusion_init=0.3),
}
LABELS = l2_normalize_rows(
    np.random.default_rng(0).normal(size=(9, 6)).astype("float32")
)


def _model(seed=1, **overrides):
    keras.utils.set_random_seed(seed)
    overrides = {"feature_shape": FEATURE_SHAPE, "num_global": 2, **overrides}
    model = build_epsilon(tiny.model_config(**overrides), LABELS)
    return tiny.perturb_weights(model, scale=0.2, seed=seed)


def _features(batch=5, seed=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch,) + FEATURE_SHAPE).astype("float32")


def _run(graph, x, labels=LABELS):
    @tf.function(autograph=False)
    def forward(x):
        outputs = graph.semantic(x)
        return outputs, graph.scores(outputs, tf.constant(labels))

    outputs, scores = forward(tf.constant(x))
    return {k: v.numpy() for k, v in outputs.items()}, scores.numpy()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_float32_graph_computes_the_keras_model(variant):
    model = _model(**VARIANTS[variant])
    x = _features()
    reference = model(x, training=False)
    outputs, scores = _run(InferenceGraph(model), x)
    assert set(outputs) == set(reference) & {
        "local_prompts",
        "assignments",
        "global_vectors",
    }
    for key, value in outputs.items():
        np.testing.assert_allclose(
            value, reference[key].numpy(), rtol=1e-5, atol=1e-5
        )
    expected = reference["scores"].numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    # The folds are not trivially exact: the perturbed weights matter.
    assert np.ptp(expected) > 0.5


def test_new_vocabulary_scores_like_a_relabeled_model():
    from epsilon_tf.models import with_labels

    model = _model()
    novel = np.random.default_rng(5).normal(size=(4, 6)).astype("float32")
    x = _features()
    expected = with_labels(model, novel)(x, training=False)["scores"]
    _, scores = _run(InferenceGraph(model), x, l2_normalize_rows(novel))
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_bfloat16_is_close_but_really_bfloat16():
    model = _model(hidden_dim=32)
    x = _features(batch=16)
    _, exact = _run(InferenceGraph(model), x)
    outputs, approx = _run(InferenceGraph(model, "bfloat16"), x)
    diff = np.abs(approx - exact)
    # bfloat16 keeps 8 bits of mantissa: the Transformer's products lose
    # about 3 significant digits, the label scores (scale 5) stay close.
    assert diff.max() < 0.1
    assert diff.max() > 1e-4  # a float32 computation would be within 1e-5
    assert all(v.dtype == np.float32 for v in outputs.values())
    assert approx.dtype == np.float32


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="`precision` must be one of"):
        InferenceGraph(_model(), precision="float16")


def _function_library(path):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return proto.meta_graphs[0].graph_def.library.function


def _constant_shapes(functions, dtype):
    shapes = []
    for function in functions:
        for node in function.node_def:
            if node.op == "Const" and node.attr["dtype"].type == dtype:
                tensor = node.attr["value"].tensor
                shapes.append(tuple(d.size for d in tensor.tensor_shape.dim))
    return shapes


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_export_stores_the_weights_once_as_constants(tmp_path, precision):
    model = _model(hidden_dim=32)
    space = LabelSpace.from_arrays(
        [f"l{i}" for i in range(9)], LABELS, seen=np.arange(6)
    )
    path = export_saved_model(
        model, space, str(tmp_path), top_k=3, precision=precision
    )
    with open(os.path.join(path, "assets", "export_info.json")) as f:
        assert json.load(f)["precision"] == precision
    dtype = tf.bfloat16 if precision == "bfloat16" else tf.float32
    shapes = _constant_shapes(_function_library(path), dtype.as_datatype_enum)
    # The fused query/key/value kernel [D, 3D] of the one encoder block,
    # once, although four signatures use it.
    assert shapes.count((32, 96)) == 1
    loaded = tf.saved_model.load(path)
    x = _features()
    got = loaded.signatures["serving_default"](features=tf.constant(x))
    expected = model(x, training=False)["scores"].numpy()
    atol = 1e-5 if precision == "float32" else 0.1
    # serving_default scores all 9 labels; the model was built on them.
    np.testing.assert_allclose(got["scores"].numpy(), expected, atol=atol)


def test_eval_py_on_exports_names_the_precision(tmp_path, capsys):
    """eval.py --saved_model: float32 gives the Keras model's metrics; a
    bfloat16 export's numbers are marked as such in the output and JSON."""
    from epsilon_tf.cli.evaluate import run_evaluation
    from epsilon_tf.training.evaluation import evaluate_split

    source = tiny.in_memory_source()
    space = source.label_space
    keras.utils.set_random_seed(0)
    model = tiny.perturb_weights(
        build_epsilon(
            tiny.model_config(feature_shape=source.feature_shape), space
        ),
        seed=4,
    )
    expected = evaluate_split(
        lambda x: model(x, training=False)["scores"],
        source.split("test"),
        space,
        ks=source.eval_ks,
        progress=False,
    )
    for precision in ("float32", "bfloat16"):
        path = export_saved_model(
            model, space, str(tmp_path), precision=precision
        )
        capsys.readouterr()
        got = run_evaluation(
            "saved_model", path, source=source, progress=False,
            metrics_out=str(tmp_path / f"{precision}.json"),
        )
        printed = capsys.readouterr().out
        written = json.loads((tmp_path / f"{precision}.json").read_text())
        assert written["export_precision"] == got["export_precision"]
        assert got["export_precision"] == precision
        marked = "(bfloat16 export: approximate scores)" in printed
        assert marked == (precision == "bfloat16")
        for block in ("zsl", "gzsl"):
            for key, value in expected[block].items():
                tolerance = 1e-6 if precision == "float32" else 0.05
                assert got[block][key] == pytest.approx(
                    value, abs=tolerance
                ), (precision, block, key)
