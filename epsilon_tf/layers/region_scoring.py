"""`RegionLabelScoring`: label scores of a set of vectors, max or top-k."""

import keras
from keras import ops

from epsilon_tf import _validation as check
from epsilon_tf.layers.label_scoring import LabelScoring

REDUCTIONS = ("max", "top_k_mean")


@keras.saving.register_keras_serializable(package="epsilon_tf")
class RegionLabelScoring(LabelScoring):
    """Scores labels against P vectors per image, reduced over the vectors.

    For the vectors S [P, E] of one image (LESA's T attended features,
    BiAM's region features, both already in the word space), optional
    per-vector offsets o [P] and the L2-normalized label word vectors
    W [K, E], the per-vector scores are `m[p, k] = <S_p, W_k> + o_p` and
    the label score is `max_p m[p, k]` (`reduction="max"`, LESA) or the
    mean of the `top_k` largest `m[p, k]` over p (`"top_k_mean"`, BiAM's
    top-6 of 196 regions). Weightless like `LabelScoring` (the fixed
    vocabulary is a non-trainable weight); a label's score does not depend
    on the other labels.

    Args:
        reduction: str. `"max"` or `"top_k_mean"`. Defaults to `"max"`.
        top_k: int. k of `"top_k_mean"` (at most P). Defaults to 1.
        use_offsets: bool. The call takes per-vector offsets o [batch, P].
            Defaults to False.
        return_region_scores: bool. Also return `m` [batch, P, K].
            Defaults to False.
        **kwargs: `num_labels`, `embedding_dim`, `label_embeddings` as in
            `LabelScoring`, and layer keywords.

    Call arguments:
        inputs: with a fixed vocabulary, `semantic` [batch, P, E] or
            `[semantic, offsets]`; without one, `[semantic,
            label_embeddings]` or `[semantic, offsets, label_embeddings]`.

    Returns:
        Scores [batch, K], or `(scores, m)` with `return_region_scores`.

    Example:

    >>> scoring = RegionLabelScoring(
    ...     reduction="top_k_mean", top_k=6, label_embeddings=np.eye(4, 300))
    >>> scoring(np.ones((2, 196, 300), "float32")).shape
    TensorShape([2, 4])
    """

    def __init__(
        self,
        reduction="max",
        top_k=1,
        use_offsets=False,
        return_region_scores=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.reduction = check.choice("reduction", reduction, REDUCTIONS)
        self.top_k = check.positive_int("top_k", top_k)
        self.use_offsets = bool(use_offsets)
        self.return_region_scores = bool(return_region_scores)

    def _split(self, parts):
        """(semantic, offsets or None, labels or None) of the input list."""
        expected = 1 + self.use_offsets + (not self.fixed_vocabulary)
        if len(parts) != expected:
            raise ValueError(
                f"`RegionLabelScoring` expects {expected} input(s) "
                "([semantic] + [offsets] if use_offsets + [label_embeddings] "
                f"without a fixed vocabulary). Received {len(parts)}"
            )
        semantic = parts[0]
        offsets = parts[1] if self.use_offsets else None
        labels = None if self.fixed_vocabulary else parts[-1]
        return semantic, offsets, labels

    def build(self, input_shape):
        is_list = isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)
        )
        shapes = list(input_shape) if is_list else [input_shape]
        semantic, offsets, labels = self._split(shapes)
        super().build(semantic if labels is None else [semantic, labels])
        num = semantic[1]
        if offsets is not None and tuple(offsets)[1:] != (num,):
            raise ValueError(
                f"`offsets` must have shape [batch, {num}]. "
                f"Received: shape={tuple(offsets)}"
            )
        if self.reduction == "top_k_mean" and num is not None and (
            self.top_k > num
        ):
            raise ValueError(
                f"`top_k` ({self.top_k}) exceeds the {num} vectors per image"
            )

    def call(self, inputs):
        semantic, offsets, labels = self._split(
            list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        )
        if labels is None:
            labels = self.label_embeddings
        else:
            labels = labels / ops.maximum(
                ops.norm(labels, axis=-1, keepdims=True), 1e-12
            )
            labels = ops.cast(labels, semantic.dtype)
        region = ops.einsum("bpe,ke->bpk", semantic, labels)
        if offsets is not None:
            region = region + ops.cast(offsets, region.dtype)[:, :, None]
        if self.reduction == "max":
            scores = ops.max(region, axis=1)
        else:
            top, _ = ops.top_k(
                ops.transpose(region, (0, 2, 1)), self.top_k, sorted=False
            )
            scores = ops.mean(top, axis=-1)
        if self.return_region_scores:
            return scores, region
        return scores

    def compute_output_shape(self, input_shape):
        is_list = isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)
        )
        shapes = list(input_shape) if is_list else [input_shape]
        semantic, _, labels = self._split(shapes)
        num_labels = self.num_labels if labels is None else labels[0]
        scores = (semantic[0], num_labels)
        if self.return_region_scores:
            return scores, (semantic[0], semantic[1], num_labels)
        return scores

    def get_config(self):
        config = super().get_config()
        config.update(
            reduction=self.reduction,
            top_k=self.top_k,
            use_offsets=self.use_offsets,
            return_region_scores=self.return_region_scores,
        )
        return config
