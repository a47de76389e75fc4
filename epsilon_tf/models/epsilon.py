"""Assembles Epsilon with the functional API and swaps its label set."""

import keras
import numpy as np

from epsilon_tf.config import ModelConfig
from epsilon_tf.labels import LabelSpace
from epsilon_tf.layers import (
    FeatureStandardization,
    GlobalForwardPropagation,
    GroupPromptsAggregation,
    LabelScoring,
    LearnableFusion,
)
from epsilon_tf.layers.folding import FoldedNormDense

# Layer names are part of the contract: `with_labels`, the exporter and the
# checkpoint code find the trained layers by these names.
TRUNK_LAYERS = ("token_norm", "token_projection", "token_dropout")
GPA, GFP, SEMANTIC_NORM = "gpa", "gfp", "semantic_norm"
SCORING, FUSION, SCALE = "label_scoring", "fusion", "score_scale"
# Of the token projection's LayerNormalization (`token_norm`).
TOKEN_NORM_EPSILON = 1e-6


def _label_matrix(labels):
    if isinstance(labels, LabelSpace):
        return labels.vectors
    matrix = np.asarray(labels, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(
            "The label word vectors must be a 2-D array [num_labels, "
            f"embedding_dim]. Received: shape={matrix.shape}"
        )
    return matrix


def _token_norm(kind):
    if kind == "layer":
        return keras.layers.LayerNormalization(
            epsilon=TOKEN_NORM_EPSILON, name="token_norm"
        )
    if kind == "standardize":
        return FeatureStandardization(name="token_norm")
    return keras.layers.Identity(name="token_norm")


def _layers_from_config(config, embedding_dim):
    n = config.feature_shape[0]
    parts = {}
    if config.branches != "gfp" or config.gfp_input == "tokens":
        # GFP alone on the input features needs no projected tokens.
        parts["token_norm"] = _token_norm(config.token_norm)
        parts["token_projection"] = keras.layers.Dense(
            config.hidden_dim, name="token_projection"
        )
        parts["token_dropout"] = keras.layers.Dropout(
            config.token_dropout, noise_shape=(None, n, 1),
            name="token_dropout",
        )
    if config.branches in ("both", "gpa"):
        parts[GPA] = GroupPromptsAggregation(
            num_prompts=config.num_prompts,
            embedding_dim=embedding_dim,
            num_layers=config.gpa_layers,
            num_heads=config.gpa_heads,
            grouping=config.grouping,
            dropout=config.dropout,
            name=GPA,
        )
    if config.branches in ("both", "gfp"):
        parts[GFP] = GlobalForwardPropagation(
            num_global=config.num_global,
            embedding_dim=embedding_dim,
            hidden_dim=config.hidden_dim,
            num_blocks=config.gfp_blocks,
            dropout=config.dropout,
            input_source=config.gfp_input,
            pooled_norm=config.gfp_pooled_norm,
            linear_path=config.gfp_linear != "none",
            name=GFP,
        )
    if config.normalize_semantic:
        parts[SEMANTIC_NORM] = keras.layers.UnitNormalization(
            axis=-1, name=SEMANTIC_NORM
        )
    if config.branches == "both":
        parts[FUSION] = LearnableFusion(
            mode=config.fusion,
            initial_weight=config.fusion_init,
            learn_temperature=config.fusion_temperature,
            name=FUSION,
        )
    parts[SCALE] = keras.layers.Rescaling(config.score_scale, name=SCALE)
    return parts


def _assemble(feature_shape, parts, scoring, name):
    features = keras.Input(shape=tuple(feature_shape), name="features")
    x = features
    for layer_name in TRUNK_LAYERS:
        if layer_name in parts:
            x = parts[layer_name](x)
    outputs = {}
    branch_scores = []
    norm = parts.get(SEMANTIC_NORM)
    if GPA in parts:
        prompts, assignments = parts[GPA](x)
        if norm is not None:
            prompts = norm(prompts)
        outputs["local_prompts"] = prompts
        outputs["assignments"] = assignments
        branch_scores.append(scoring(prompts))
    if GFP in parts:
        gfp = parts[GFP]
        global_vectors = gfp(
            features if gfp.input_source == "features" else x
        )
        if norm is not None:
            global_vectors = norm(global_vectors)
        outputs["global_vectors"] = global_vectors
        branch_scores.append(scoring(global_vectors))
    if FUSION in parts:
        outputs["local_scores"], outputs["global_scores"] = branch_scores
        scores = parts[FUSION](branch_scores)
    else:
        (scores,) = branch_scores
    outputs["scores"] = parts[SCALE](scores)
    return keras.Model(features, outputs, name=name)


def build_epsilon(config, label_vectors, name="epsilon"):
    """Builds Epsilon scoring the labels whose word vectors are given.

    Args:
        config: `ModelConfig`.
        label_vectors: `LabelSpace` or array [K, E]. The vocabulary the
            model scores (the seen labels while training). `E` overrides
            `config.embedding_dim`.
        name: str. Model name. Defaults to "epsilon".

    Returns:
        A functional `keras.Model` from `features` [batch, N, C] to a dict
        with `scores` [batch, K] and the intermediate `local_prompts`,
        `assignments`, `global_vectors`, `local_scores`, `global_scores`
        (those of the enabled branches).

    Example:

    >>> model = build_epsilon(ModelConfig(), label_space.subset("seen"))
    >>> model(features)["scores"].shape
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(
            "`config` must be a ModelConfig. "
            f"Received: {type(config).__name__}"
        )
    matrix = _label_matrix(label_vectors)
    parts = _layers_from_config(config, int(matrix.shape[1]))
    scoring = LabelScoring(label_embeddings=matrix, name=SCORING)
    return _assemble(config.feature_shape, parts, scoring, name)


def _parts_of(model):
    names = {layer.name for layer in model.layers}
    required = (SCORING, SCALE)
    missing = [n for n in required if n not in names]
    if missing:
        raise ValueError(
            f"Model {model.name!r} is not an Epsilon model: it lacks the "
            f"layers {missing}"
        )
    return {
        layer.name: layer
        for layer in model.layers
        if layer.name
        in TRUNK_LAYERS + (GPA, GFP, SEMANTIC_NORM, FUSION, SCALE)
    }


def with_labels(model, label_vectors, name=None):
    """Returns a model that scores a new label set with the trained layers.

    Every trained layer is shared (not copied): nothing is retrained or
    re-initialized. Only the (weightless) `LabelScoring` is new.

    Args:
        model: a model made by `build_epsilon` (or reloaded from `.keras`).
        label_vectors: `LabelSpace` or array [K', E] of word vectors.
        name: str or None. Name of the new model.

    Returns:
        A functional `keras.Model` with the same outputs as `model`, scoring
        the K' given labels.
    """
    parts = _parts_of(model)
    matrix = _label_matrix(label_vectors)
    width = model.get_layer(SCORING).embedding_dim
    if matrix.shape[1] != width:
        raise ValueError(
            f"The word vectors have width {matrix.shape[1]} but the model "
            f"scores {width}-d word vectors. Received: shape={matrix.shape}"
        )
    scoring = LabelScoring(label_embeddings=matrix, name=SCORING)
    feature_shape = tuple(model.inputs[0].shape[1:])
    return _assemble(
        feature_shape, parts, scoring, name or f"{model.name}_relabeled"
    )


def semantic_model(model):
    """The label-free part: `features` -> semantic vectors and maps."""
    outputs = {
        k: v
        for k, v in model.output.items()
        if k in ("local_prompts", "assignments", "global_vectors")
    }
    return keras.Model(model.inputs[0], outputs, name=f"{model.name}_semantic")


def fusion_weight(model):
    """The fusion weight `a` (1.0 for GPA only, 0.0 for GFP only)."""
    names = {layer.name for layer in model.layers}
    if FUSION in names:
        return float(model.get_layer(FUSION).fusion_weight())
    return 1.0 if GPA in names else 0.0


def is_epsilon_model(model):
    """Whether `model` is an Epsilon model (`build_epsilon`, `with_labels`).

    True when it has the token projection, the label scoring, the score
    scale and at least one GPA/GFP branch, each of Epsilon's layer types.
    """
    if not isinstance(model, keras.Model):
        return False
    names = {layer.name for layer in model.layers}
    required = {SCORING, SCALE}
    if not required <= names or not names & {GPA, GFP}:
        return False
    if GPA in names and not {"token_norm", "token_projection"} <= names:
        return False
    types = {
        GPA: GroupPromptsAggregation,
        GFP: GlobalForwardPropagation,
        SCORING: LabelScoring,
        FUSION: LearnableFusion,
        "token_norm": (
            keras.layers.LayerNormalization,
            FeatureStandardization,
            keras.layers.Identity,
        ),
        "token_projection": keras.layers.Dense,
    }
    return all(
        isinstance(model.get_layer(name), cls)
        for name, cls in types.items()
        if name in names
    )


def fold_token_projection(model, precision="float32"):
    """The folded inference form of the model's token projection.

    `token_projection(token_norm(x))` as a `FoldedNormDense` (the token
    dropout is the identity at inference); None when the model has no
    token projection (GFP alone on the input features).
    """
    if "token_projection" not in {layer.name for layer in model.layers}:
        return None
    return FoldedNormDense(
        model.get_layer("token_norm"),
        model.get_layer("token_projection"),
        precision,
    )
