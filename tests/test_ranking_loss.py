"""RankingLoss against hand-worked values and a brute-force pair loop."""

import numpy as np
import pytest
import tensorflow as tf

from epsilon_tf.losses import RankingLoss, prompt_diversity
from epsilon_tf.losses.ranking import label_ranking

LABELS = np.array(
    [[1, -1, -1, 0], [1, 1, -1, -1], [0, 0, 1, 0]], dtype="float32"
)
SCORES = np.array(
    [[0.5, 0.2, 1.0, 3.0], [2.0, 0.0, 0.5, -1.0], [1.0, 2.0, 3.0, 4.0]],
    dtype="float32",
)


def test_hinge_hand_worked():
    # Image 1: pairs (p=.5, n=.2): 1+.2-.5 = .7; (p=.5, n=1): 1.5 -> 2.2/2.
    #   The label scored 3.0 is 0 (unknown) and ignored.
    # Image 2: (2,.5): -.5 -> 0; (2,-1): -2 -> 0; (0,.5): 1.5;
    #   (0,-1): exactly 0, not a violation -> 1.5 / 1.
    # Image 3: no negative -> 0.  Mean: (1.1 + 1.5 + 0) / 3.
    loss = RankingLoss()
    assert float(loss(LABELS, SCORES)) == pytest.approx(2.6 / 3, rel=1e-6)
    per_image = loss.call(LABELS, SCORES).numpy()
    np.testing.assert_allclose(per_image, [1.1, 1.5, 0.0], rtol=1e-6)


def test_hinge_margin():
    # margin 0.5: image 1: (.5,.2): .2; (.5,1): 1.0 -> 1.2/2 = .6
    # image 2: (0,.5): 1.0 -> 1.0 / 1; image 3: 0.
    loss = RankingLoss(margin=0.5)
    np.testing.assert_allclose(
        loss.call(LABELS, SCORES), [0.6, 1.0, 0.0], rtol=1e-6
    )


def test_smooth_hand_worked():
    # s_n - s_p over the pairs; image 1: -.3, .5; image 2: -1.5, -3, .5, -1.
    def sp(x):
        return np.log1p(np.exp(x))

    image1 = (sp(-0.3) + sp(0.5)) / 2
    image2 = (sp(-1.5) + sp(-3.0) + sp(0.5) + sp(-1.0)) / 4
    loss = RankingLoss(form="smooth")
    np.testing.assert_allclose(
        loss.call(LABELS, SCORES), [image1, image2, 0.0], rtol=1e-6
    )


def test_listwise_hand_worked():
    # Softmax over each image's annotated labels (0 left out), minus the
    # mean log-probability of its positives.
    # Image 1: labels 0-2 annotated, positive 0 (score .5).
    # Image 2: all four annotated, positives 2.0 and 0.0: mean of
    #   (lse - 2) and (lse - 0) = lse - 1.
    # Image 3: one annotated label, the positive: log 1 = 0.
    lse1 = np.log(np.exp(0.5) + np.exp(0.2) + np.exp(1.0))
    lse2 = np.log(np.exp(2.0) + 1.0 + np.exp(0.5) + np.exp(-1.0))
    loss = RankingLoss(form="listwise")
    np.testing.assert_allclose(
        loss.call(LABELS, SCORES), [lse1 - 0.5, lse2 - 1.0, 0.0], rtol=1e-6
    )
    assert lse1 - 0.5 == pytest.approx(1.2207, abs=1e-4)  # log 5.5884 - .5
    # An image without a positive contributes 0, whatever its scores.
    none = np.array([[-1, -1, 0]], "float32")
    assert float(loss.call(none, np.array([[5.0, -5.0, 9.0]]))[0]) == 0.0
    # The per-label hinge term may be added to it.
    terms = RankingLoss(form="listwise", label_weight=0.5,
                        diversity_weight=0.0)
    np.testing.assert_allclose(
        terms.per_example_terms(LABELS, {"scores": SCORES})["ranking"],
        [lse1 - 0.5 + 0.3, lse2 - 1.0 + 0.3, 0.3], rtol=1e-6,
    )


def test_listwise_gradient_pulls_positives_up():
    # d/ds_k = softmax_k - [k positive] / |P| over the annotated labels;
    # an unannotated label gets no gradient.
    labels = tf.constant([[1.0, -1.0, 1.0, 0.0]])
    scores = tf.constant([[0.3, 1.2, -0.4, 2.0]])
    with tf.GradientTape() as tape:
        tape.watch(scores)
        value = RankingLoss(form="listwise").call(labels, scores)
    grad = tape.gradient(value, scores).numpy()[0]
    e = np.exp([0.3, 1.2, -0.4])
    p = e / e.sum()
    np.testing.assert_allclose(grad[:3], p - [0.5, 0.0, 0.5], rtol=1e-5)
    assert grad[3] == 0.0


def brute_force_hinge(labels, scores, margin=1.0):
    out = []
    for y, s in zip(labels, scores):
        total, violations = 0.0, 0
        for p in np.flatnonzero(y > 0):
            for n in np.flatnonzero(y < 0):
                d = margin + s[n] - s[p]
                if d > 0:
                    total += d
                    violations += 1
        out.append(total / violations if violations else 0.0)
    return np.array(out)


def test_hinge_matches_brute_force_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.choice([-1, 0, 1], size=(12, 30), p=[0.6, 0.2, 0.2])
    labels[0] = 0  # no pairs at all
    labels[1] = 1  # no negatives
    scores = np.round(rng.normal(size=(12, 30)), 1).astype("float32")
    np.testing.assert_allclose(
        RankingLoss().call(labels.astype("float32"), scores),
        brute_force_hinge(labels, scores),
        rtol=1e-5,
        atol=1e-6,
    )


def test_hinge_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    labels = rng.choice([-1, 0, 1], size=(3, 10)).astype("float32")
    scores = rng.normal(size=(3, 10))
    var = tf.Variable(scores.astype("float32"))
    with tf.GradientTape() as tape:
        loss = RankingLoss()(labels, var)
    grad = tape.gradient(loss, var).numpy()
    eps = 1e-4
    numeric = np.zeros_like(scores)
    for idx in np.ndindex(scores.shape):
        up, down = scores.copy(), scores.copy()
        up[idx] += eps
        down[idx] -= eps
        numeric[idx] = (
            brute_force_hinge(labels, up).mean()
            - brute_force_hinge(labels, down).mean()
        ) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=1e-3)


def test_prompt_diversity_hand_worked():
    # Unit vectors (1,0), (0,1), (1,1)/sqrt2: cosines 0, 1/sqrt2, 1/sqrt2;
    # squared over ordered pairs i != j: 2 * (0 + .5 + .5) = 2; / (3*2).
    v = np.array([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]], "float32")
    np.testing.assert_allclose(prompt_diversity(v), [1 / 3], rtol=1e-6)
    identical = np.ones((1, 4, 5), "float32")
    np.testing.assert_allclose(prompt_diversity(identical), [1.0], rtol=1e-6)


def test_compute_terms_adds_weighted_diversity():
    outputs = {
        "scores": SCORES,
        "local_prompts": np.array(
            [[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]] * 3, "float32"
        ),
    }
    terms = RankingLoss(diversity_weight=0.3).compute_terms(LABELS, outputs)
    assert float(terms["ranking"]) == pytest.approx(2.6 / 3, rel=1e-6)
    assert float(terms["diversity"]) == pytest.approx(0.1, rel=1e-5)
    assert float(terms["total"]) == pytest.approx(2.6 / 3 + 0.1, rel=1e-5)
    off = RankingLoss(diversity_weight=0.0).compute_terms(LABELS, outputs)
    assert float(off["diversity"]) == 0.0


def test_config_round_trip_and_bad_arguments():
    loss = RankingLoss(form="smooth", margin=0.5, diversity_weight=0.2)
    clone = RankingLoss.from_config(loss.get_config())
    assert (clone.form, clone.margin, clone.diversity_weight) == (
        "smooth", 0.5, 0.2,
    )
    with pytest.raises(ValueError, match="`form` must be one of"):
        RankingLoss(form="softmax")
    with pytest.raises(ValueError, match="`margin` must be positive"):
        RankingLoss(margin=0)
    with pytest.raises(ValueError, match="`diversity_weight` must be >= 0"):
        RankingLoss(diversity_weight=-1)


def test_label_ranking_hand_worked():
    # Per label, over the 3 images (columns of LABELS / SCORES):
    # label 0: positives only -> no pair, left out of the mean.
    # label 1: positive image 1 (0.0) vs negative image 0 (0.2):
    #   1 + 0.2 - 0 = 1.2 -> 1.2 / 1.
    # label 2: positive image 2 (3.0) vs negatives 1.0 and 0.5: no
    #   violation -> 0 (it has pairs, so it counts).
    # label 3: a negative only -> left out.  Mean over labels 1, 2: 0.6.
    assert float(label_ranking(LABELS, SCORES)) == pytest.approx(0.6)
    # margin 2: label 1: 2.2; label 2: (2 + 1 - 3) = 0, (2 + .5 - 3) < 0.
    assert float(label_ranking(LABELS, SCORES, 2.0)) == pytest.approx(1.1)
    # Added, weighted, to every image's ranking term.
    terms = RankingLoss(label_weight=0.5, diversity_weight=0.0)
    per_image = terms.per_example_terms(LABELS, {"scores": SCORES})
    np.testing.assert_allclose(
        per_image["ranking"], [1.1 + 0.3, 1.5 + 0.3, 0.3], rtol=1e-6
    )
    no_pairs = np.ones((2, 3), "float32")
    assert float(label_ranking(no_pairs, SCORES[:2, :3])) == 0.0


def test_label_ranking_matches_brute_force_over_images():
    rng = np.random.default_rng(3)
    labels = rng.choice([-1, 0, 1], size=(16, 9), p=[0.6, 0.2, 0.2])
    labels[:, 0] = -1  # a label without positives: left out
    scores = np.round(rng.normal(size=(16, 9)), 1).astype("float32")
    per_label = brute_force_hinge(labels.T, scores.T)
    kept = [(labels[:, j] > 0).any() and (labels[:, j] < 0).any()
            for j in range(9)]
    assert not kept[0] and sum(kept) >= 6
    expected = per_label[kept].mean()
    got = float(label_ranking(labels.astype("float32"), scores))
    assert got == pytest.approx(expected, rel=1e-5)
    clone = RankingLoss.from_config(RankingLoss(label_weight=0.7).get_config())
    assert clone.label_weight == 0.7
    with pytest.raises(ValueError,
                       match="`label_weight` needs form='hinge' or"):
        RankingLoss(form="smooth", label_weight=1.0)
    with pytest.raises(ValueError, match="`label_weight` must be >= 0"):
        RankingLoss(label_weight=-1.0)


def test_branch_term_ranks_each_branch_alone():
    """beta * (the ranking objective on each scaled branch score) is added
    to every image's ranking term; brute force over pairs, per image and
    per label."""
    rng = np.random.default_rng(5)
    labels = rng.choice([-1, 0, 1], size=(8, 7), p=[0.6, 0.1, 0.3])
    labels[:, 0] = 1
    local, glob = (rng.normal(size=(8, 7)).astype("float32") * 0.4
                   for _ in range(2))
    fused = 5.0 * (0.3 * local + 0.7 * glob)
    outputs = {"scores": fused, "local_scores": local,
               "global_scores": glob}

    def objective(scores, mu):
        per_label = brute_force_hinge(labels.T, scores.T)
        kept = [(labels[:, j] > 0).any() and (labels[:, j] < 0).any()
                for j in range(7)]
        return brute_force_hinge(labels, scores) + mu * per_label[kept].mean()

    for beta, mu, scale in ((0.5, 0.0, 5.0), (1.0, 2.0, 3.0)):
        loss = RankingLoss(branch_weight=beta, branch_scale=scale,
                           label_weight=mu, diversity_weight=0.0)
        got = loss.per_example_terms(labels.astype("float32"), outputs)
        expected = objective(fused, mu) + beta * (
            objective(scale * local, mu) + objective(scale * glob, mu))
        np.testing.assert_allclose(got["ranking"], expected, rtol=1e-5)
    # One-branch models (no branch outputs) are unchanged by the term.
    one = {"scores": fused}
    np.testing.assert_allclose(
        RankingLoss(branch_weight=1.0).per_example_terms(labels, one)[
            "ranking"], brute_force_hinge(labels, fused), rtol=1e-5)
    clone = RankingLoss.from_config(
        RankingLoss(branch_weight=0.5, branch_scale=2.0).get_config())
    assert (clone.branch_weight, clone.branch_scale) == (0.5, 2.0)
    with pytest.raises(ValueError, match="`branch_weight` must be >= 0"):
        RankingLoss(branch_weight=-1.0)
    with pytest.raises(ValueError, match="`branch_scale` must be positive"):
        RankingLoss(branch_scale=0.0)
