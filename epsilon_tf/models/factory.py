"""One entry point for every model: build by name, relabel, reference call.

`build_model(config, labels)` builds `config.model` ("epsilon", "lesa" or
"biam"); `with_labels(model, vectors)` re-points any of them at a new
vocabulary, sharing every trained layer; `reference_outputs` runs a
baseline's trained layers on tensors for a label matrix given at call time
(what the exporter traces for LESA and BiAM).
"""

import keras
import numpy as np

from epsilon_tf.config import ModelConfig
from epsilon_tf.layers import RegionLabelScoring
from epsilon_tf.models import biam, lesa
from epsilon_tf.models import epsilon as epsilon_lib

BASELINES = {"lesa": lesa, "biam": biam}
SCORING = epsilon_lib.SCORING


def model_kind(model):
    """"epsilon", "lesa" or "biam", from the model's layer names."""
    names = {layer.name for layer in model.layers}
    if lesa.ATTENTION in names:
        return "lesa"
    if biam.REGION in names:
        return "biam"
    return "epsilon"


def _scoring(config, label_embeddings):
    if config.model == "biam":
        return biam.make_scoring(label_embeddings, top_k=config.biam_top_k)
    return lesa.make_scoring(label_embeddings)


def _scoring_like(layer, label_embeddings=None):
    """A `RegionLabelScoring` as `layer`, for other (or call-time) labels."""
    return RegionLabelScoring(
        reduction=layer.reduction,
        top_k=layer.top_k,
        use_offsets=layer.use_offsets,
        return_region_scores=layer.return_region_scores,
        label_embeddings=label_embeddings,
        name=SCORING,
    )


def _score_fn(layer, label_embeddings=None):
    def score(semantic, offsets):
        inputs = [semantic]
        if offsets is not None:
            inputs.append(offsets)
        if label_embeddings is not None:
            inputs.append(label_embeddings)
        return layer(inputs if len(inputs) > 1 else semantic)

    return score


def _assemble(module, feature_shape, parts, scoring, name):
    features = keras.Input(shape=tuple(feature_shape), name="features")
    outputs = module.forward(parts, features, _score_fn(scoring))
    return keras.Model(features, outputs, name=name)


def build_model(config, label_vectors, name=None):
    """Builds the model `config.model` names, scoring the given labels.

    Args:
        config: `ModelConfig`.
        label_vectors: `LabelSpace` or array [K, E] (the seen labels while
            training).
        name: str or None. Model name (default: `config.model`).

    Returns:
        A functional `keras.Model` from `features` [batch, N, C] to a dict
        with `scores` [batch, K] and the model's attention maps: Epsilon's
        `assignments` (see `build_epsilon`), LESA's `attention` [batch, T,
        N], BiAM's `region_attention` [batch, heads, N, N] and
        `scene_gate`.

    Example:

    >>> model = build_model(ModelConfig(model="biam"), space.subset("seen"))
    >>> model(features)["scores"].shape
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(
            "`config` must be a ModelConfig. "
            f"Received: {type(config).__name__}"
        )
    if config.model == "epsilon":
        return epsilon_lib.build_epsilon(
            config, label_vectors, name=name or "epsilon"
        )
    module = BASELINES[config.model]
    matrix = epsilon_lib._label_matrix(label_vectors)
    parts = module.make_parts(config, int(matrix.shape[1]))
    return _assemble(
        module, config.feature_shape, parts, _scoring(config, matrix),
        name or config.model,
    )


def _baseline_parts(model):
    module = BASELINES[model_kind(model)]
    names = {layer.name for layer in model.layers}
    parts = {n: model.get_layer(n) for n in module.PARTS if n in names}
    return module, parts, model.get_layer(SCORING)


def with_labels(model, label_vectors, name=None):
    """Returns a model that scores a new label set with the trained layers.

    Works for Epsilon (`models.epsilon.with_labels`), LESA and BiAM: every
    trained layer is shared (not copied); only the weightless scoring layer
    is new.

    Args:
        model: a model from `build_model` (or reloaded from `.keras`).
        label_vectors: `LabelSpace` or array [K', E] of word vectors.
        name: str or None. Name of the new model.
    """
    if model_kind(model) == "epsilon":
        return epsilon_lib.with_labels(model, label_vectors, name=name)
    module, parts, scoring = _baseline_parts(model)
    matrix = epsilon_lib._label_matrix(label_vectors)
    if matrix.shape[1] != scoring.embedding_dim:
        raise ValueError(
            f"The word vectors have width {matrix.shape[1]} but the model "
            f"scores {scoring.embedding_dim}-d word vectors. "
            f"Received: shape={matrix.shape}"
        )
    return _assemble(
        module, tuple(model.inputs[0].shape[1:]), parts,
        _scoring_like(scoring, matrix), name or f"{model.name}_relabeled",
    )


def reference_outputs(model, features, label_embeddings):
    """A LESA or BiAM model's outputs for labels given at call time.

    Runs the trained layers (inference mode) on `features` [batch, N, C]
    and scores the rows of `label_embeddings` [K, E] (L2-normalized
    inside). Traceable by `tf.function`; the exporter's serving functions
    for the baselines are this call.
    """
    if model_kind(model) == "epsilon":
        raise ValueError(
            f"Model {model.name!r} is an Epsilon model; its export uses the "
            "folded inference graph"
        )
    module, parts, scoring = _baseline_parts(model)
    dynamic = _scoring_like(scoring)
    return module.forward(
        parts, features, _score_fn(dynamic, label_embeddings)
    )


def best_label_maps(model, features, label_vectors):
    """Every label's scores, and the region map behind each image's best.

    The map is what the model looked at for its top-scoring label:
    Epsilon's GPA assignment map of the group prompt that scores that label
    highest; LESA's attention map of the attention that scores it highest;
    BiAM's region scores `m[r, k]` of that label (the map its top-k mean
    reads). A GFP-only Epsilon has no map (None).

    Args:
        model: a model from `build_model` (any vocabulary).
        features: float array [batch, N, C].
        label_vectors: `LabelSpace` or array [K, E].

    Returns:
        `(scores [batch, K], maps [batch, N] or None)` as NumPy arrays.
    """
    matrix = epsilon_lib._label_matrix(label_vectors)
    unit = matrix / np.maximum(
        np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12
    )
    kind = model_kind(model)
    if kind == "biam":
        _, parts, scoring = _baseline_parts(model)
        captured = {}
        dynamic = _score_fn(_scoring_like(scoring), unit.astype("float32"))

        def capture(semantic, offsets):
            captured["m"] = np.einsum(
                "bne,ke->bnk", np.asarray(semantic), unit
            ) + np.asarray(offsets)[:, :, None]
            return dynamic(semantic, offsets)

        out = biam.forward(parts, features, capture)
        scores = np.asarray(out["scores"])
        best = scores.argmax(axis=1)
        rows = np.arange(len(best))
        return scores, captured["m"][rows, :, best]
    out = {k: np.asarray(v) for k, v in
           with_labels(model, matrix)(features).items()}
    scores = out["scores"]
    best = scores.argmax(axis=1)
    rows = np.arange(len(best))
    if kind == "lesa":
        t = out["attention_scores"][rows, :, best].argmax(axis=1)
        return scores, out["attention"][rows, t]
    if "assignments" not in out:
        return scores, None
    by_prompt = np.einsum("bpe,be->bp", out["local_prompts"], unit[best])
    return scores, out["assignments"][rows, by_prompt.argmax(axis=1)]
