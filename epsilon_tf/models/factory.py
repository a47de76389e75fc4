"""One entry point for every model: build by name, relabel, reference call.

`build_model(config, labels)` builds `config.model` ("epsilon", "lesa" or
"biam"); `with_labels(model, vectors)` re-points any of them at a new
vocabulary, sharing every trained layer; `reference_outputs` runs a
baseline's trained layers on tensors for a label matrix given at call time
(what the exporter traces for LESA and BiAM).
"""

import keras

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
