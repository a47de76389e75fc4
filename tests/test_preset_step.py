"""`benchmarks.bench_preset_step` times what each variant's name says.

Each profiled variant must be the shipped release preset with exactly one
change, or its ratio to the shipped step would not mean what the table in
docs/worlds.md says.
"""

import dataclasses

import pytest

from benchmarks.bench_preset_step import VARIANTS, variant_configs
from epsilon_tf.config import RELEASE_PRESET, preset_configs

SHAPE = (49, 2048)


def _changed(a, b):
    return {f.name for f in dataclasses.fields(a)
            if getattr(a, f.name) != getattr(b, f.name)}


@pytest.mark.parametrize("name, model, loss, jit, policy", [
    ("shipped", set(), set(), False, "float32"),
    ("xla", set(), set(), True, "float32"),
    ("bf16", set(), set(), False, "mixed_bfloat16"),
    ("hinge", set(), {"form"}, False, "float32"),
    ("no_label_term", set(), {"label_weight"}, False, "float32"),
    ("no_dropout", {"dropout", "token_dropout"}, set(), False, "float32"),
    # GPA alone drops the GFP settings (preset_configs), nothing else.
    ("gpa_only", {"branches", "gfp_linear", "gfp_linear_scale", "gfp_input",
                  "gfp_pooled_norm"}, set(), False, "float32"),
    ("gfp_only", {"branches"}, set(), False, "float32"),
])
def test_each_variant_changes_one_thing(name, model, loss, jit, policy):
    shipped = preset_configs(RELEASE_PRESET, SHAPE)
    got = variant_configs(name, SHAPE)
    assert _changed(got[0], shipped[0]) == model
    assert _changed(got[1], shipped[1]) == loss
    assert got[2] == shipped[2]  # batch, learning rate, min_steps
    assert got[3:] == (jit, policy)
    if "label_weight" in loss:
        assert (shipped[1].label_weight, got[1].label_weight) == (2.0, 0.0)


def test_every_variant_is_listed():
    assert len(VARIANTS) == 8 and VARIANTS[0] == "shipped"
