"""The ranking loss on seen labels and the prompt-diversity regularizer."""

import keras
import tensorflow as tf
from keras import ops


def hinge_ranking(labels, scores, margin=1.0):
    """Per-image LESA/BiAM hinge ranking loss, without forming all pairs.

    `sum_{p in P, n in N} max(0, margin + s_n - s_p) / #violating pairs`
    (0 when no pair violates). For each negative n the violating positives
    are those with `s_p < margin + s_n`; with the positives' scores sorted
    once, their count and sum come from a binary search and a cumulative
    sum, so memory is O(batch * K) instead of O(batch * K^2) (Open Images
    has 7,186 seen labels).
    """
    positive = labels > 0
    negative = labels < 0
    inf = tf.constant(float("inf"), scores.dtype)
    sorted_pos = tf.sort(tf.where(positive, scores, inf), axis=-1)
    finite = tf.where(tf.math.is_inf(sorted_pos), 0.0, sorted_pos)
    cumulative = tf.concat(
        [tf.zeros_like(finite[:, :1]), tf.cumsum(finite, axis=-1)], axis=-1
    )
    thresholds = scores + margin
    count = tf.searchsorted(sorted_pos, thresholds, side="left")
    below_sum = tf.gather(cumulative, count, batch_dims=1)
    count = tf.cast(count, scores.dtype)
    per_negative = tf.where(negative, count * thresholds - below_sum, 0.0)
    violations = tf.reduce_sum(tf.where(negative, count, 0.0), axis=-1)
    total = tf.reduce_sum(per_negative, axis=-1)
    return total / tf.maximum(violations, 1.0)


def smooth_ranking(labels, scores):
    """Per-image `mean_{p in P, n in N} log(1 + exp(s_n - s_p))` (0 if none).

    Forms all pairs: memory O(batch * K^2).
    """
    positive = ops.cast(labels > 0, scores.dtype)
    negative = ops.cast(labels < 0, scores.dtype)
    diff = scores[:, None, :] - scores[:, :, None]  # [b, p, n] = s_n - s_p
    mask = positive[:, :, None] * negative[:, None, :]
    total = ops.sum(ops.softplus(diff) * mask, axis=(1, 2))
    return total / ops.maximum(ops.sum(mask, axis=(1, 2)), 1.0)


def prompt_diversity(vectors):
    """Per-image mean squared off-diagonal cosine among semantic vectors.

    For the P vectors of one image, L2-normalized to `u_p`:
    `sum_{i != j} <u_i, u_j>^2 / (P (P - 1))` (0 when P == 1).

    Args:
        vectors: float tensor [batch, P, E].

    Returns:
        Float tensor [batch].
    """
    num = ops.shape(vectors)[1]
    unit = vectors / ops.maximum(
        ops.norm(vectors, axis=-1, keepdims=True), 1e-12
    )
    gram = ops.einsum("bpe,bqe->bpq", unit, unit)
    off_diagonal = ops.sum(ops.square(gram), axis=(1, 2)) - ops.sum(
        ops.square(ops.diagonal(gram, axis1=1, axis2=2)), axis=-1
    )
    pairs = ops.cast(num * (num - 1), vectors.dtype)
    return off_diagonal / ops.maximum(pairs, 1.0)


@keras.saving.register_keras_serializable(package="epsilon_tf")
class RankingLoss(keras.losses.Loss):
    """Ranking loss over labels in {+1, -1, 0}; 0 (unknown) is ignored.

    `form="hinge"` (default, LESA/BiAM): for each image
    `L = sum_{p, n} max(0, margin + s_n - s_p) / V`, where p runs over the
    positive labels, n over the negative ones and V is the number of
    violating pairs (`margin + s_n - s_p > 0`); `L = 0` when V = 0.
    `form="smooth"`: `L = sum_{p, n} log(1 + exp(s_n - s_p)) / (|P| |N|)`.
    Both are averaged over the batch (images without pairs count as 0).

    The prompt-diversity regularizer is
    `R = lambda * mean_{i != j} <u_i, u_j>^2` over the L2-normalized
    semantic vectors `u` of each image (see `prompt_diversity`), averaged
    over the batch; `lambda = diversity_weight`. `compute_terms` returns
    both; calling the loss as a Keras loss gives the ranking term alone.

    Args:
        form: str. `"hinge"` or `"smooth"`. Defaults to `"hinge"`.
        margin: float. Hinge margin. Defaults to 1.0.
        diversity_weight: float. lambda, >= 0. Defaults to 0.1.
        name: str. Defaults to "ranking_loss".

    Example:

    >>> loss = RankingLoss()
    >>> loss(np.array([[1, -1]]), np.array([[0.0, 0.5]]))  # (1.5) / 1
    1.5
    """

    def __init__(
        self,
        form="hinge",
        margin=1.0,
        diversity_weight=0.1,
        name="ranking_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if form not in ("hinge", "smooth"):
            raise ValueError(
                "`form` must be one of ('hinge', 'smooth'). "
                f"Received: form={form!r}"
            )
        if not margin > 0:
            raise ValueError(
                f"`margin` must be positive. Received: margin={margin!r}"
            )
        if not diversity_weight >= 0:
            raise ValueError(
                "`diversity_weight` must be >= 0. "
                f"Received: diversity_weight={diversity_weight!r}"
            )
        self.form = form
        self.margin = float(margin)
        self.diversity_weight = float(diversity_weight)

    def call(self, y_true, y_pred):
        # float32 whatever the compute dtype (mixed precision).
        scores = ops.cast(ops.convert_to_tensor(y_pred), "float32")
        labels = ops.cast(y_true, scores.dtype)
        if self.form == "hinge":
            return hinge_ranking(labels, scores, self.margin)
        return smooth_ranking(labels, scores)

    def per_example_terms(self, y_true, outputs):
        """Per-image terms: {"ranking": [b], "diversity": [b]} (weighted).

        Args:
            y_true: labels [batch, K].
            outputs: the model's output dict (`scores` and the semantic
                vectors `local_prompts` and/or `global_vectors`).
        """
        scores = outputs["scores"]
        ranking = self.call(y_true, scores)
        vectors = [
            ops.cast(outputs[k], "float32")
            for k in ("local_prompts", "global_vectors")
            if k in outputs
        ]
        if self.diversity_weight and vectors:
            diversity = self.diversity_weight * prompt_diversity(
                ops.concatenate(vectors, axis=1)
            )
        else:
            diversity = ops.zeros_like(ranking)
        return {"ranking": ranking, "diversity": diversity}

    def compute_terms(self, y_true, outputs):
        """Batch means of the terms plus their sum under "total"."""
        terms = {
            k: ops.mean(v)
            for k, v in self.per_example_terms(y_true, outputs).items()
        }
        terms["total"] = terms["ranking"] + terms["diversity"]
        return terms

    def get_config(self):
        config = super().get_config()
        config.update(
            form=self.form,
            margin=self.margin,
            diversity_weight=self.diversity_weight,
        )
        return config
