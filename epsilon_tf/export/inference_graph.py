"""Epsilon's inference pass, composed from its layers' folded forms.

The exported signatures do not trace the Keras layers of an Epsilon model.
They run this graph, which computes the same function with fewer, larger
ops, because at batch 1 on a CPU the per-op cost of the many small ops in
the Keras graph is as large as the matrix products (BUILD_NOTES.md,
"Serving latency"). The folds themselves belong to the layers they fold
(`fold_for_inference()` of `GroupPromptsAggregation` and its
`TransformerEncoderBlock`s, `GlobalForwardPropagation`, `LabelScoring`,
`LearnableFusion`, and `models.epsilon.fold_token_projection`;
`epsilon_tf/layers/folding.py` says how they work). This module only
composes them: token projection -> GPA / GFP -> the model's own
`semantic_norm` -> label scores -> fusion, with the score scale folded
into the fusion coefficients.

Every fold is exact algebra; only the rounding differs from the Keras
model. The exporter checks that at every export (`serving.py`).

`precision="bfloat16"` runs the Transformer's matrix products (token
projection and encoder blocks) in bfloat16 (AMX/AVX512-BF16 on recent
Intel CPUs), keeping the residual stream, the normalizations, the
grouping, GFP and the label scores in float32. It is an opt-in
speed/accuracy trade (BUILD_NOTES.md gives the measured score
differences); float32 is the default and the reference.
"""

import numpy as np

from epsilon_tf.layers.folding import PRECISIONS, check_precision
from epsilon_tf.models.epsilon import (
    FUSION,
    GFP,
    GPA,
    SCALE,
    SCORING,
    SEMANTIC_NORM,
    fold_token_projection,
    fusion_weight,
    is_epsilon_model,
)

__all__ = ["PRECISIONS", "InferenceGraph", "max_abs_difference"]


class InferenceGraph:
    """The forward pass of a trained Epsilon model, folded for serving.

    The folded forms read the weights once (folded in float64) and hold
    them as NumPy arrays that become constants of the functions that call
    the graph (at trace time), so a SavedModel of those functions needs
    neither Keras nor `epsilon_tf`. Trace the graph once (one
    `tf.function` around `semantic`) and call that function from every
    signature, so the SavedModel stores the weights once.

    Args:
        model: a functional model from `build_epsilon` (or reloaded from
            `.keras`). Its trained layers are read, not kept.
        precision: str. `"float32"` (default) or `"bfloat16"` (the
            Transformer's matrix products in bfloat16).

    Example:

    >>> graph = InferenceGraph(model)
    >>> out = graph.semantic(features)      # prompts, maps, global vectors
    >>> scores = graph.scores(out, unit_label_vectors)   # == model scores
    """

    kind = "folded"

    def __init__(self, model, precision="float32"):
        self.precision = check_precision(precision)
        if not is_epsilon_model(model):
            raise ValueError(
                f"Model {model.name!r} is not an Epsilon model; export it "
                "through the Keras reference graph "
                "(`epsilon_tf.export.reference.KerasReferenceGraph`)"
            )
        names = {layer.name for layer in model.layers}
        self.branches = tuple(b for b in (GPA, GFP) if b in names)
        self.token_projection = fold_token_projection(model, precision)
        self.gpa = (
            model.get_layer(GPA).fold_for_inference(precision)
            if GPA in names
            else None
        )
        self.gfp = (
            model.get_layer(GFP).fold_for_inference(precision)
            if GFP in names
            else None
        )
        # Weightless: its own call is the fold.
        self.semantic_norm = (
            model.get_layer(SEMANTIC_NORM) if SEMANTIC_NORM in names else None
        )
        self.scoring = model.get_layer(SCORING).fold_for_inference()
        rescaling = model.get_layer(SCALE)
        scale, self.offset = float(rescaling.scale), float(rescaling.offset)
        if FUSION in names:
            self.fusion = model.get_layer(FUSION).fold_for_inference().scaled(
                scale
            )
            self.scale = None
        else:
            self.fusion, self.scale = None, np.float32(scale)
        self.fusion_weight = np.float32(fusion_weight(model))

    def semantic(self, features):
        """`features` [batch, N, C] float32 -> the semantic outputs.

        Returns:
            A dict with `local_prompts` [batch, G, E] and `assignments`
            [batch, G, N] (GPA) and `global_vectors` [batch, M, E] (GFP),
            exactly the model's outputs of the same names.
        """
        tokens = (
            self.token_projection(features)
            if self.token_projection is not None
            else None
        )
        norm = self.semantic_norm.call if self.semantic_norm else None
        outputs = {}
        if self.gpa is not None:
            prompts, outputs["assignments"] = self.gpa(tokens)
            outputs["local_prompts"] = norm(prompts) if norm else prompts
        if self.gfp is not None:
            vectors = self.gfp(
                features if self.gfp.input_source == "features" else tokens
            )
            outputs["global_vectors"] = norm(vectors) if norm else vectors
        return outputs

    def scores(self, outputs, label_embeddings):
        """The fused, scaled label scores [batch, K] of `semantic`'s outputs.

        Args:
            outputs: the dict `semantic` returns.
            label_embeddings: float32 [K, E], rows L2-normalized.
        """
        branch = [
            self.scoring(outputs[key], label_embeddings)
            for key in ("local_prompts", "global_vectors")
            if key in outputs
        ]
        if self.fusion is not None:
            total = self.fusion(*branch)
        else:
            (total,) = branch
            total = total * self.scale
        if self.offset:
            total = total + np.float32(self.offset)
        return total

    def score_features(self, features, label_embeddings, semantic=None):
        """`scores(semantic(features), label_embeddings)`.

        `semantic`: the traced `semantic` function to call (default: this
        graph's, untraced).
        """
        outputs = (semantic or self.semantic)(features)
        return self.scores(outputs, label_embeddings)


def max_abs_difference(a, b):
    """Max |a - b| over the common keys of two dicts of arrays (or two
    arrays)."""
    if isinstance(a, dict):
        keys = sorted(set(a) & set(b))
        return max(max_abs_difference(a[k], b[k]) for k in keys)
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
