"""Every label's region map, for Epsilon, LESA and BiAM: Figure 1's maps.

The experiments' Figure 1 (`models.best_label_maps`) draws, per model,
the region map behind each image's best-scoring label. `LabelMaps` gives
the same map for *every* label, so a label's map can be set beside where
the label really lies (`epsilon_tf.metrics.localization`):

- **Epsilon**: the GPA assignment map of the group prompt that scores the
  label highest (`local_prompts` . the label's unit word vector);
- **LESA**: the attention map of the attention that scores the label
  highest (`attention_scores`);
- **BiAM**: the label's region scores `m[r, k]` (the map its top-k mean
  reads).

At an image's best label these are `best_label_maps`' maps (a test holds
them equal). A GFP-only Epsilon has no map. Maps are over the patch
regions: with a CLS token first (N = 1 + s*s tokens) the CLS entry of
Epsilon's and LESA's maps is left out (BiAM's map has none).
"""

import numpy as np

from epsilon_tf.layers import RegionLabelScoring
from epsilon_tf.layers.grid import token_layout
from epsilon_tf.models import biam, model_kind, with_labels
from epsilon_tf.models.factory import SCORING


def _patch_start(num_tokens):
    """1 when the tokens are a CLS token plus a square grid, else 0."""
    try:
        has_cls, _ = token_layout(num_tokens)
    except ValueError:  # Epsilon takes any N: every token is a region
        return 0
    return int(has_cls)


class LabelMaps:
    """Scores and region maps of every label, for one trained model.

    Args:
        model: an Epsilon (with its GPA branch), LESA or BiAM model from
            `build_model` (or reloaded from `model.keras`), any vocabulary.
        label_vectors: `LabelSpace` or float array [K, E]: the labels to
            map (e.g. every label of the world).

    Call arguments:
        features: float array [batch, N, C].

    Returns (of a call):
        `(scores [batch, K], maps [batch, K, P])` NumPy arrays; P is N, or
        N - 1 with a CLS token.
    """

    def __init__(self, model, label_vectors):
        vectors = getattr(label_vectors, "vectors", label_vectors)
        matrix = np.asarray(vectors, np.float32)
        if matrix.ndim != 2:
            raise ValueError(
                "`label_vectors` must be [labels, dim]. "
                f"Received: shape={matrix.shape}"
            )
        self.kind = model_kind(model)
        self.unit = matrix / np.maximum(
            np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12
        )
        if self.kind == "biam":
            names = {layer.name for layer in model.layers}
            self._parts = {n: model.get_layer(n) for n in biam.PARTS
                           if n in names}
            trained = model.get_layer(SCORING)
            self._scoring = RegionLabelScoring(
                reduction=trained.reduction, top_k=trained.top_k,
                use_offsets=trained.use_offsets, return_region_scores=True,
                label_embeddings=self.unit,
            )
            return
        self._model = with_labels(model, matrix)
        if self.kind == "epsilon" and (
            "assignments" not in self._model.output
        ):
            raise ValueError(
                f"Model {model.name!r} has no GPA branch (no `assignments` "
                "output), so it has no region maps"
            )

    def __call__(self, features):
        if self.kind == "biam":
            out = biam.forward(
                self._parts, features,
                lambda semantic, offsets: self._scoring([semantic, offsets]),
            )
            scores, region = out["scores"]
            maps = np.transpose(np.asarray(region), (0, 2, 1))
            return np.asarray(scores), maps
        out = {k: np.asarray(v) for k, v in self._model(features).items()}
        if self.kind == "lesa":
            # [b, T, K] -> the attention that scores each label highest.
            pick = out["attention_scores"].argmax(axis=1)
            maps = np.take_along_axis(
                out["attention"], pick[:, :, None], axis=1
            )
        else:
            by_prompt = np.einsum(
                "bge,ke->bgk", out["local_prompts"], self.unit
            )
            pick = by_prompt.argmax(axis=1)
            maps = np.take_along_axis(
                out["assignments"], pick[:, :, None], axis=1
            )
        return out["scores"], maps[:, :, _patch_start(maps.shape[-1]):]
