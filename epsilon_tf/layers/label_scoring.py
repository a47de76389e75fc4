"""`LabelScoring`: scores labels through their word vectors (no weights)."""

import contextlib

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from epsilon_tf.labels.label_space import l2_normalize_rows
from epsilon_tf.layers import folding


def unit_rows(label_embeddings):
    """`label_embeddings` with rows L2-normalized (`x / max(||x||, 1e-12)`).

    What `LabelScoring` does to a label matrix it is called on; the
    serving signatures apply it to request-time vocabularies.
    """
    return label_embeddings / ops.maximum(
        ops.norm(label_embeddings, axis=-1, keepdims=True), 1e-12
    )


def max_similarity(semantic, label_embeddings):
    """`score[b, k] = max_p <semantic[b, p], label_embeddings[k]>`."""
    return ops.max(
        ops.einsum("bpe,ke->bpk", semantic, label_embeddings), axis=1
    )


@keras.saving.register_keras_serializable(package="epsilon_tf")
class LabelScoring(layers.Layer):
    """Scores every label as the best match among a set of semantic vectors.

    For a label matrix W [K, E] whose rows are L2-normalized word vectors and
    semantic vectors S [P, E] of one image,
    `score_k = max_p <S_p, W_k>`. The layer has no trainable weights, so the
    label set can be swapped after training.

    With `num_labels` (or `label_embeddings`) the label matrix is a fixed,
    non-trainable weight of the layer (saved with the model) and the layer
    is called on the semantic vectors alone. Without them the layer is
    called on `[semantic, label_embeddings]` and scores whatever label
    matrix it receives (rows normalized inside the call).

    Args:
        num_labels: int or None. K, for a fixed vocabulary. Defaults to
            None.
        embedding_dim: int or None. E, for a fixed vocabulary. Defaults to
            None.
        label_embeddings: array [K, E] or None. Initial word vectors of a
            fixed vocabulary; rows are L2-normalized. Sets `num_labels` and
            `embedding_dim`. Not part of `get_config` (it is a weight).
            Defaults to None.

    Call arguments:
        inputs: float tensor [batch, P, E] (fixed vocabulary), or a list
            `[semantic [batch, P, E], label_embeddings [K, E]]`.

    Returns:
        Float tensor [batch, K] of label scores.

    `fold_for_inference()` returns the layer's serving form
    (`FoldedLabelScoring`), which scores any unit-row label matrix.

    Example:

    >>> scoring = LabelScoring(label_embeddings=np.eye(4, 300))
    >>> scoring(np.ones((2, 7, 300), "float32")).shape
    TensorShape([2, 4])
    """

    def __init__(
        self, num_labels=None, embedding_dim=None, label_embeddings=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._initial_embeddings = None
        if label_embeddings is not None:
            matrix = np.asarray(label_embeddings, dtype=np.float32)
            if matrix.ndim != 2:
                raise ValueError(
                    "`label_embeddings` must be a 2-D array [num_labels, "
                    f"embedding_dim]. Received: shape={matrix.shape}"
                )
            if not np.all(np.isfinite(matrix)):
                raise ValueError(
                    "`label_embeddings` must be finite. Received NaN or Inf"
                )
            self._initial_embeddings = l2_normalize_rows(matrix)
            num_labels, embedding_dim = matrix.shape
        if (num_labels is None) != (embedding_dim is None):
            raise ValueError(
                "`num_labels` and `embedding_dim` must be given together. "
                f"Received: num_labels={num_labels}, "
                f"embedding_dim={embedding_dim}"
            )
        for name, value in (
            ("num_labels", num_labels),
            ("embedding_dim", embedding_dim),
        ):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or value < 1
            ):
                raise ValueError(
                    f"`{name}` must be a positive integer. "
                    f"Received: {name}={value!r}"
                )
        self.num_labels = None if num_labels is None else int(num_labels)
        self.embedding_dim = (
            None if embedding_dim is None else int(embedding_dim)
        )

    @property
    def fixed_vocabulary(self):
        return self.num_labels is not None

    def build(self, input_shape):
        if self.fixed_vocabulary:
            self._check_semantic_shape(input_shape)
            init = self._initial_embeddings
            self.label_embeddings = self.add_weight(
                name="label_embeddings",
                shape=(self.num_labels, self.embedding_dim),
                initializer=(
                    "zeros"
                    if init is None
                    else keras.initializers.Constant(init)
                ),
                trainable=False,
            )
        else:
            if not isinstance(input_shape, (list, tuple)) or len(
                input_shape
            ) != 2 or not isinstance(input_shape[0], (list, tuple)):
                raise ValueError(
                    "Without a fixed vocabulary, `LabelScoring` is called on "
                    "[semantic, label_embeddings]. Received a single input "
                    f"of shape {input_shape}"
                )
            semantic, labels = input_shape
            self._check_semantic_shape(semantic, labels[-1])
            if len(labels) != 2:
                raise ValueError(
                    "`label_embeddings` must have rank 2 [num_labels, "
                    f"embedding_dim]. Received: shape={tuple(labels)}"
                )

    def _check_semantic_shape(self, shape, embedding_dim=None):
        shape = tuple(shape)
        embedding_dim = embedding_dim or self.embedding_dim
        if len(shape) != 3:
            raise ValueError(
                "The semantic vectors must have rank 3 [batch, vectors, "
                f"embedding_dim]. Received: shape={shape}"
            )
        if None not in (shape[-1], embedding_dim) and (
            shape[-1] != embedding_dim
        ):
            raise ValueError(
                "The word vectors have width "
                f"{embedding_dim} but the model's semantic vectors have "
                f"width {shape[-1]}; both must live in the same "
                "word-vector space"
            )

    def call(self, inputs):
        if self.fixed_vocabulary:
            return max_similarity(inputs, self.label_embeddings)
        semantic, labels = inputs
        return max_similarity(
            semantic, ops.cast(unit_rows(labels), semantic.dtype)
        )

    def set_label_embeddings(self, label_embeddings):
        """Replaces the fixed vocabulary's vectors (same shape)."""
        matrix = l2_normalize_rows(label_embeddings)
        if matrix.shape != (self.num_labels, self.embedding_dim):
            raise ValueError(
                "`label_embeddings` must have shape "
                f"{(self.num_labels, self.embedding_dim)}. "
                f"Received: shape={matrix.shape}"
            )
        self.label_embeddings.assign(matrix)

    def fold_for_inference(self):
        """The layer's inference form (`FoldedLabelScoring`); built layers
        only."""
        return FoldedLabelScoring(folding.require_built(self))

    def compute_output_shape(self, input_shape):
        if self.fixed_vocabulary:
            return (input_shape[0], self.num_labels)
        return (input_shape[0][0], input_shape[1][0])

    def get_config(self):
        config = super().get_config()
        config.update(
            num_labels=self.num_labels, embedding_dim=self.embedding_dim
        )
        return config


class FoldedLabelScoring:
    """`LabelScoring.call` (inference) as 2-D products, any vocabulary.

    `score_k = max_p <S_p, W_k>` with the P semantic vectors of all images
    in one [batch * P, E] x [E, K] MatMul (BUILD_NOTES.md, "Serving
    latency"), then a max over P.

    Args:
        scoring: a built `LabelScoring`. Its fixed vocabulary (if any) is
            the default label matrix.

    Call arguments:
        semantic: float32 tensor [batch, P, E] (static P and E).
        label_embeddings: float32 tensor [K, E] with L2-normalized rows
            (`unit_rows`), or None for the layer's fixed vocabulary.

    Returns:
        float32 tensor [batch, K].
    """

    def __init__(self, scoring):
        self.label_embeddings = None
        if scoring.fixed_vocabulary:
            self.label_embeddings = folding.constant(
                folding.to_f64(scoring.label_embeddings)
            )

    def __call__(self, semantic, label_embeddings=None):
        if label_embeddings is None:
            if self.label_embeddings is None:
                raise ValueError(
                    "This LabelScoring has no fixed vocabulary: pass "
                    "`label_embeddings`"
                )
            label_embeddings = self.label_embeddings
        products = tf.matmul(
            tf.reshape(semantic, (-1, semantic.shape[2])),
            label_embeddings,
            transpose_b=True,
        )
        return tf.reduce_max(
            tf.reshape(
                products,
                (-1, semantic.shape[1], tf.shape(label_embeddings)[0]),
            ),
            axis=1,
        )


def scoring_layers(model):
    """The fixed-vocabulary `LabelScoring` layers of `model` (nested too)."""
    stack, found = list(model.layers), []
    while stack:
        layer = stack.pop()
        if isinstance(layer, LabelScoring) and layer.fixed_vocabulary:
            found.append(layer)
        stack.extend(getattr(layer, "layers", ()))
    return found


@contextlib.contextmanager
def scoring_vocabulary(model, label_embeddings):
    """Makes `model` score `label_embeddings` while the block runs.

    Within the block every fixed-vocabulary `LabelScoring` of `model` (and
    of its nested models; subclasses included) scores the given matrix
    instead of its own vocabulary weight, which is left untouched. Meant
    for tracing a serving function of any model that scores labels through
    `LabelScoring` (the Keras reference serving function), where the
    vocabulary is a tensor known only at request time.

    Args:
        model: a Keras model.
        label_embeddings: float tensor [K, E] with L2-normalized rows
            (`unit_rows`).

    Raises:
        ValueError: `model` has no fixed-vocabulary `LabelScoring`.
    """
    layers_found = scoring_layers(model)
    if not layers_found:
        raise ValueError(
            f"Model {model.name!r} scores no labels through a LabelScoring "
            "layer with a fixed vocabulary"
        )
    saved = [layer.__dict__["label_embeddings"] for layer in layers_found]
    try:
        for layer in layers_found:
            # Past Keras's attribute tracking: a tensor in place of the
            # weight, for this trace only.
            object.__setattr__(layer, "label_embeddings", label_embeddings)
        yield
    finally:
        for layer, weight in zip(layers_found, saved, strict=True):
            object.__setattr__(layer, "label_embeddings", weight)
