"""Every layer passes its dtype policy to the sublayers it builds.

A layer constructed with `dtype="mixed_bfloat16"` while the global policy
is float32 (the case a global policy cannot hide) must build every
sublayer, at any depth, with that policy: float32 variables, bfloat16
compute, outputs in bfloat16. A whole model built under the global
`mixed_bfloat16` policy has the same property.
"""

import keras
import numpy as np
import pytest

from epsilon_tf import layers as L

MIXED = "mixed_bfloat16"


def _sublayers(layer):
    """Every layer nested in `layer` (not `layer` itself)."""
    found, stack = [], list(layer._flatten_layers(include_self=False))
    while stack:
        sub = stack.pop()
        found.append(sub)
        stack.extend(sub._flatten_layers(include_self=False))
    return found


def _inputs(*shapes):
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=s).astype("float32") for s in shapes]
    return arrays[0] if len(arrays) == 1 else arrays


CASES = {
    "encoder_block": (
        lambda: L.TransformerEncoderBlock(num_heads=2, dtype=MIXED),
        lambda: _inputs((2, 5, 8)),
        9,  # 2 norms, the attention and its parts, 2 Dense, Dropout
    ),
    "gpa": (
        lambda: L.GroupPromptsAggregation(
            num_prompts=2, embedding_dim=6, num_layers=2, num_heads=2,
            dtype=MIXED,
        ),
        lambda: _inputs((2, 9, 8)),
        10,
    ),
    "gfp": (
        lambda: L.GlobalForwardPropagation(
            num_global=2, embedding_dim=6, hidden_dim=8, num_blocks=1,
            input_source="features", pooled_norm=True, dtype=MIXED,
        ),
        lambda: _inputs((2, 9, 4)),
        7,
    ),
    "grid_convolution": (
        lambda: L.GridConvolution(4, 2, dtype=MIXED),
        lambda: _inputs((2, 9, 3)),
        2,
    ),
    "region_context": (
        lambda: L.RegionContextBlock(num_heads=2, dtype=MIXED),
        lambda: _inputs((2, 9, 4)),
        4,
    ),
    "scene_context": (
        lambda: L.SceneContextBlock(dtype=MIXED),
        lambda: _inputs((2, 9, 4), (2, 5)),
        5,
    ),
    "shared_attention": (
        lambda: L.SharedMultiAttention(num_attentions=3, dtype=MIXED),
        lambda: _inputs((2, 9, 4)),
        2,
    ),
}


@pytest.fixture
def float32_global_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("case", sorted(CASES))
def test_sublayers_take_the_layer_policy(case, float32_global_policy):
    make, inputs, at_least = CASES[case]
    layer = make()
    outputs = layer(inputs())
    subs = _sublayers(layer)
    assert len(subs) >= at_least, [s.name for s in subs]
    wrong = [(s.path, s.dtype_policy.name) for s in subs
             if s.dtype_policy.name != MIXED]
    assert not wrong, wrong
    variables = [v for v in layer.variables if "seed_generator" not in v.path]
    assert variables
    assert all(v.dtype == "float32" for v in variables), [
        (v.path, v.dtype) for v in variables if v.dtype != "float32"
    ]
    for out in keras.tree.flatten(outputs):
        assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"


@pytest.mark.parametrize(
    "make",
    [
        lambda: L.LearnableFusion(dtype=MIXED),
        lambda: L.FeatureStandardization(dtype=MIXED),
    ],
)
def test_weight_layers_compute_in_bfloat16(make, float32_global_policy):
    layer = make()
    x = _inputs((2, 3))
    out = layer([x, x]) if isinstance(layer, L.LearnableFusion) else layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    assert all(v.dtype == "float32" for v in layer.variables)


def test_a_model_built_under_mixed_policy(tiny_model_config):
    from epsilon_tf.models.factory import build_model

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(MIXED)
    try:
        vectors = np.random.default_rng(0).normal(size=(5, 12))
        model = build_model(tiny_model_config, vectors.astype("float32"))
        subs = _sublayers(model)
        assert any(isinstance(s, L.GroupPromptsAggregation) for s in subs)
        wrong = [s.path for s in subs if s.dtype_policy.name != MIXED]
        assert not wrong, wrong
        variables = [v for v in model.variables
                     if "seed_generator" not in v.path]
        assert all(v.dtype == "float32" for v in variables)
        outputs = model(_inputs((2, 9, 8)))
        gpa = next(s for s in subs
                   if isinstance(s, L.GroupPromptsAggregation))
        assert gpa.compute_dtype == "bfloat16"
        assert np.all(np.isfinite(np.asarray(outputs["scores"], "float32")))
    finally:
        keras.config.set_dtype_policy(previous)
