"""The ranking loss on seen labels, Epsilon's prompt-diversity regularizer
and LESA's attention regularizers."""

import keras
import tensorflow as tf
from keras import ops

FORMS = ("hinge", "smooth", "listwise")


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


def label_ranking(labels, scores, margin=1.0):
    """The hinge ranking of images per label, over one batch: a scalar.

    The transpose of `hinge_ranking`: for each label j, the images where j
    is positive should score above the images where it is negative, by
    `margin`. Averaged over the labels with at least one positive and one
    negative image in the batch (0 when none has). mAP ranks the images of
    each label, which the per-image loss never compares; this term does.
    """
    labels_t = tf.transpose(labels)
    per_label = hinge_ranking(labels_t, tf.transpose(scores), margin)
    has_pairs = tf.logical_and(
        tf.reduce_any(labels_t > 0, axis=-1),
        tf.reduce_any(labels_t < 0, axis=-1),
    )
    count = tf.reduce_sum(tf.cast(has_pairs, scores.dtype))
    total = tf.reduce_sum(tf.where(has_pairs, per_label, 0.0))
    return total / tf.maximum(count, 1.0)


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


def listwise_ranking(labels, scores):
    """Per-image listwise (ListNet top-one) ranking loss.

    `-(1 / |P|) sum_{p in P} log softmax(s)_p`, the softmax taken over the
    image's annotated labels (+1 and -1; 0, unknown, is left out); 0 for
    an image without a positive. Every positive is pulled up against the
    whole list at once (the softmax estimates which labels an image
    holds) instead of against each violating negative: with missing tags
    read as negatives, the hinge's hardest pairs are often untagged
    positives (docs/worlds.md, "Why GZSL F1@3 is missed"). Memory
    O(batch * K).
    """
    known = labels != 0
    positive = labels > 0
    floor = tf.constant(-1e30, scores.dtype)
    log_norm = tf.reduce_logsumexp(
        tf.where(known, scores, floor), axis=-1, keepdims=True
    )
    total = tf.reduce_sum(tf.where(positive, log_norm - scores, 0.0),
                          axis=-1)
    count = tf.reduce_sum(tf.cast(positive, scores.dtype), axis=-1)
    return total / tf.maximum(count, 1.0)


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


def lesa_attention_distribution(labels, attention_scores):
    """Per-image LESA `_attention_distribution_soft_cardinality` term.

    `P = softmax_t(m[t, k])` over the T attentions of the per-attention
    label scores m [T, K]; `Q_t = sum_{k positive} P[t, k]`;
    the term is `mean_t Q_t^2` (small when every attention is the best for
    some positive label).

    Args:
        labels: [batch, K] in {+1, -1, 0}.
        attention_scores: [batch, T, K].

    Returns:
        Float tensor [batch].
    """
    positive = ops.cast(labels > 0, attention_scores.dtype)
    share = ops.softmax(attention_scores, axis=1) * positive[:, None, :]
    return ops.mean(ops.square(ops.sum(share, axis=-1)), axis=-1)


def lesa_global_attention(labels, scores, pooled_scores, margin=0.0):
    """Per-image LESA `_attention_global_regularizer` term.

    `sum_k max(0, margin - y_k (s_k - g_k))`, with s the attention scores
    and g the scores of the mean-pooled regions: attending must beat
    pooling on the positive labels and lose to it on the negative ones
    (LESA sums this over the batch too; here it is per image).
    """
    signed = (scores - pooled_scores) * ops.cast(labels, scores.dtype)
    return ops.sum(ops.relu(margin - signed), axis=-1)


def lesa_attention_span(attention_logits):
    """Per-image LESA `_attention_ortho_span_regularizer` term.

    With the T attention logit rows [T, N] L2-normalized to `u_t`: the
    Frobenius norm of the Gram matrix `<u_s, u_t>` with its diagonal
    zeroed (LESA takes one norm over the whole batch; here per image).
    """
    unit = attention_logits / ops.maximum(
        ops.norm(attention_logits, axis=-1, keepdims=True), 1e-12
    )
    gram = ops.einsum("btn,bsn->bts", unit, unit)
    off_diagonal = ops.sum(ops.square(gram), axis=(1, 2)) - ops.sum(
        ops.square(ops.diagonal(gram, axis1=1, axis2=2)), axis=-1
    )
    return ops.sqrt(ops.maximum(off_diagonal, 1e-12))


@keras.saving.register_keras_serializable(package="epsilon_tf")
class RankingLoss(keras.losses.Loss):
    """Ranking loss over labels in {+1, -1, 0}; 0 (unknown) is ignored.

    `form="hinge"` (default, LESA/BiAM): for each image
    `L = sum_{p, n} max(0, margin + s_n - s_p) / V`, where p runs over the
    positive labels, n over the negative ones and V is the number of
    violating pairs (`margin + s_n - s_p > 0`); `L = 0` when V = 0.
    `form="smooth"`: `L = sum_{p, n} log(1 + exp(s_n - s_p)) / (|P| |N|)`.
    `form="listwise"`: `L = -(1/|P|) sum_p log softmax(s)_p` over the
    annotated labels (`listwise_ranking`).
    Each is averaged over the batch (images without pairs count as 0).
    With `label_weight = mu > 0` the ranking term of every image adds
    `mu * label_ranking(...)`, the hinge ranking of the batch's images per
    label (see `label_ranking`; a batch-level value, the same for every
    image, over each replica's own batch).

    The prompt-diversity regularizer is
    `R = lambda * mean_{i != j} <u_i, u_j>^2` over the L2-normalized
    semantic vectors `u` of each image (see `prompt_diversity`), averaged
    over the batch; `lambda = diversity_weight`. `compute_terms` returns
    both; calling the loss as a Keras loss gives the ranking term alone.

    With `branch_weight = beta > 0`, for a two-branch Epsilon model
    (outputs `local_scores` and `global_scores`, the branches' scores
    before the fusion) the ranking term also adds `beta` times the same
    ranking objective (hinge plus the label term) on each branch's scores
    alone, scaled by `branch_scale` (the model's score scale): each branch
    is trained as if it were the whole model (deep supervision), and the
    fusion mixes two scorers that stand on their own.

    For a LESA model (outputs `attention_scores`, `pooled_scores`,
    `attention_logits`) the term `attention` adds LESA's three attention
    regularizers, `w_dist * lesa_attention_distribution + w_global *
    lesa_global_attention + w_span * lesa_attention_span`; it is 0 for
    other models.

    Args:
        form: str. `"hinge"` or `"smooth"`. Defaults to `"hinge"`.
        margin: float. Hinge margin. Defaults to 1.0.
        diversity_weight: float. lambda, >= 0. Defaults to 0.1.
        lesa_dist_weight: float. w_dist, >= 0. Defaults to 0.1.
        lesa_global_weight: float. w_global, >= 0. Defaults to 0.032.
        lesa_span_weight: float. w_span, >= 0. Defaults to 0.0566.
        lesa_global_margin: float. Margin of the global term. Defaults
            to 0.0.
        label_weight: float. mu, >= 0, of the per-label image ranking
            (hinge form only). Defaults to 0.0.
        branch_weight: float. beta, >= 0, of the per-branch ranking.
            Defaults to 0.0.
        branch_scale: float. Factor of the branch scores (the model's
            `score_scale`). Defaults to 5.0.
        name: str. Defaults to "ranking_loss".

    Example:

    >>> labels, scores = np.array([[1, -1, 0]]), np.array([[0.0, 0.5, 9.0]])
    >>> float(RankingLoss()(labels, scores))  # max(0, 1 + 0.5 - 0) / 1 pair
    1.5
    >>> smooth = RankingLoss(form="smooth")
    >>> round(float(smooth(labels, scores)), 4)  # log(1 + exp(0.5 - 0))
    0.9741
    """

    def __init__(
        self,
        form="hinge",
        margin=1.0,
        diversity_weight=0.1,
        lesa_dist_weight=0.1,
        lesa_global_weight=0.032,
        lesa_span_weight=0.0566,
        lesa_global_margin=0.0,
        label_weight=0.0,
        branch_weight=0.0,
        branch_scale=5.0,
        name="ranking_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if form not in FORMS:
            raise ValueError(
                f"`form` must be one of {FORMS}. Received: form={form!r}"
            )
        if not margin > 0:
            raise ValueError(
                f"`margin` must be positive. Received: margin={margin!r}"
            )
        for key, value in (
            ("diversity_weight", diversity_weight),
            ("lesa_dist_weight", lesa_dist_weight),
            ("lesa_global_weight", lesa_global_weight),
            ("lesa_span_weight", lesa_span_weight),
            ("label_weight", label_weight),
            ("branch_weight", branch_weight),
        ):
            if not value >= 0:
                raise ValueError(
                    f"`{key}` must be >= 0. Received: {key}={value!r}"
                )
        self.form = form
        self.margin = float(margin)
        self.diversity_weight = float(diversity_weight)
        self.lesa_dist_weight = float(lesa_dist_weight)
        self.lesa_global_weight = float(lesa_global_weight)
        self.lesa_span_weight = float(lesa_span_weight)
        self.lesa_global_margin = float(lesa_global_margin)
        if label_weight and form == "smooth":
            raise ValueError(
                "`label_weight` needs form='hinge' or 'listwise'. Received: "
                f"label_weight={label_weight!r}, form={form!r}"
            )
        self.label_weight = float(label_weight)
        if not branch_scale > 0:
            raise ValueError(
                "`branch_scale` must be positive. Received: "
                f"branch_scale={branch_scale!r}"
            )
        self.branch_weight = float(branch_weight)
        self.branch_scale = float(branch_scale)

    def call(self, y_true, y_pred):
        # float32 whatever the compute dtype (mixed precision).
        scores = ops.cast(ops.convert_to_tensor(y_pred), "float32")
        labels = ops.cast(y_true, scores.dtype)
        if self.form == "hinge":
            return hinge_ranking(labels, scores, self.margin)
        if self.form == "listwise":
            return listwise_ranking(labels, scores)
        return smooth_ranking(labels, scores)

    def per_example_terms(self, y_true, outputs):
        """Per-image weighted terms `ranking`, `diversity`, `attention` [b].

        Args:
            y_true: labels [batch, K].
            outputs: the model's output dict (`scores`, and the semantic
                vectors `local_prompts` and/or `global_vectors` of
                Epsilon, or LESA's attention outputs).
        """
        ranking = self._ranking(y_true, outputs["scores"])
        if self.branch_weight and "local_scores" in outputs:
            for key in ("local_scores", "global_scores"):
                ranking += self.branch_weight * self._ranking(
                    y_true, ops.cast(outputs[key], "float32")
                    * self.branch_scale,
                )
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
        return {
            "ranking": ranking,
            "diversity": diversity,
            "attention": self._lesa_terms(y_true, outputs, ranking),
        }

    def _ranking(self, y_true, scores):
        """The ranking objective of one set of scores [b]: the per-image
        term plus, with `label_weight`, the per-label term."""
        ranking = self.call(y_true, scores)
        if self.label_weight:
            ranking += self.label_weight * label_ranking(
                ops.cast(y_true, "float32"), ops.cast(scores, "float32"),
                self.margin,
            )
        return ranking

    def _lesa_terms(self, y_true, outputs, ranking):
        total = ops.zeros_like(ranking)
        if "attention_logits" not in outputs:
            return total
        labels = ops.cast(y_true, "float32")
        scores = ops.cast(outputs["scores"], "float32")
        if self.lesa_dist_weight:
            total += self.lesa_dist_weight * lesa_attention_distribution(
                labels, ops.cast(outputs["attention_scores"], "float32")
            )
        if self.lesa_global_weight:
            total += self.lesa_global_weight * lesa_global_attention(
                labels, scores,
                ops.cast(outputs["pooled_scores"], "float32"),
                self.lesa_global_margin,
            )
        if self.lesa_span_weight:
            total += self.lesa_span_weight * lesa_attention_span(
                ops.cast(outputs["attention_logits"], "float32")
            )
        return total

    def compute_terms(self, y_true, outputs):
        """Batch means of the terms plus their sum under "total"."""
        terms = {
            k: ops.mean(v)
            for k, v in self.per_example_terms(y_true, outputs).items()
        }
        terms["total"] = sum(terms.values())
        return terms

    def get_config(self):
        config = super().get_config()
        config.update(
            form=self.form,
            margin=self.margin,
            diversity_weight=self.diversity_weight,
            lesa_dist_weight=self.lesa_dist_weight,
            lesa_global_weight=self.lesa_global_weight,
            lesa_span_weight=self.lesa_span_weight,
            lesa_global_margin=self.lesa_global_margin,
            label_weight=self.label_weight,
            branch_weight=self.branch_weight,
            branch_scale=self.branch_scale,
        )
        return config
