"""Tests of `epsilon_tf.metrics.ranking_metrics` against independent references.

The references below are written the straightforward way: scikit-learn's
`average_precision_score` label by label on the +1/-1 rows, and a full
stable `np.argsort` per image for the top-K.
"""

import os

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from epsilon_tf.metrics import (
    ScoreBuffer,
    average_precision_per_label,
    evaluate_scores,
    mean_average_precision,
    precision_recall_f1_at_k,
    top_k_indices,
)

# ---------------------------------------------------------------------------
# References.
# ---------------------------------------------------------------------------


def ref_ap(scores, labels):
    scores, labels = np.asarray(scores), np.asarray(labels)
    out = np.zeros(scores.shape[1])
    for j in range(scores.shape[1]):
        annotated = labels[:, j] != 0
        y = labels[annotated, j] == 1
        if y.any():
            out[j] = average_precision_score(y, scores[annotated, j])
    return out


def ref_pooled_ap(scores, labels):
    """BiAM's pooled AP per label, ties grouped (scikit-learn on the pool).

    Label j: the rows annotated for j, every annotated entry of them.
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    out = np.zeros(scores.shape[1])
    for j in range(scores.shape[1]):
        rows = labels[:, j] != 0
        entries = labels[rows] != 0
        y = labels[rows][entries] == 1
        if y.any():
            out[j] = average_precision_score(y, scores[rows][entries])
    return out


def ref_prf(scores, labels, k):
    scores, labels = np.asarray(scores), np.asarray(labels)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    tp = np.count_nonzero(np.take_along_axis(labels, top, axis=1) == 1)
    npos = np.count_nonzero(labels == 1)
    p = tp / (scores.shape[0] * k)
    r = tp / npos if npos else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": p, "r": r, "f1": f1}


def ref_block(scores, labels, ks):
    block = {"map": float(ref_ap(scores, labels).mean())}
    for k in ks:
        prf = ref_prf(scores, labels, k)
        block[f"p@{k}"] = prf["p"]
        block[f"r@{k}"] = prf["r"]
        block[f"f1@{k}"] = prf["f1"]
    block["n_images"] = scores.shape[0]
    return block


def ref_evaluate(scores, labels, ks, unseen_mask=None, variant="lesa"):
    scores, labels = np.asarray(scores), np.asarray(labels)
    groups = {"all": np.ones(scores.shape[1], bool)}
    if unseen_mask is not None:
        groups = {"zsl": unseen_mask, "gzsl": np.ones_like(unseen_mask)}
    out = {}
    for name, cols in groups.items():
        s, lab = scores[:, cols], labels[:, cols]
        if variant == "biam_openimages":
            keep = (lab == 1).any(axis=1)
            s, lab = s[keep], lab[keep]
            block = ref_block(s, lab, ks)
            block["map"] = float(ref_pooled_ap(s, lab).mean())
            if name != "zsl":
                # BiAM (GZSL): labels never annotated on the kept images
                # are left out of the mean.
                annotated = (lab != 0).any(axis=0)
                block["map"] = float(ref_pooled_ap(s, lab)[annotated].mean())
                block["n_labels_map"] = int(annotated.sum())
            else:
                block["n_labels_map"] = int(lab.shape[1])
            out[name] = block
            continue
        out[name] = ref_block(s, lab, ks)
    return out


def assert_blocks_close(result, expected, atol=1e-9):
    for name, block in expected.items():
        assert set(result[name]) == set(block), name
        for key, value in block.items():
            assert result[name][key] == pytest.approx(value, abs=atol), (
                name,
                key,
            )


def random_case(seed, n=300, num_labels=40, decimals=1, pos_rate=0.08):
    """Scores with many exact ties; labels with 0s, empty and 0-only columns."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n, num_labels)).astype(np.float32)
    labels = np.where(rng.random((n, num_labels)) < pos_rate, 1, -1)
    labels[rng.random((n, num_labels)) < 0.15] = 0
    labels = labels.astype(np.int8)
    scores += 0.8 * (labels == 1)
    scores = np.round(scores, decimals)  # ties
    labels[:, 2] = np.minimum(labels[:, 2], 0)  # no positive
    labels[:, 5] = 0  # never annotated
    labels[:, 7] = -1  # only negatives
    labels[:, 9] = 1  # only positives
    labels[: n // 10] = np.minimum(labels[: n // 10], 0)  # no positive rows
    labels[-3:] = -1
    return scores, labels


# ---------------------------------------------------------------------------
# Hand-worked case.
# ---------------------------------------------------------------------------

HAND_SCORES = np.array(
    [
        [0.9, 0.8, 0.1, 0.4, 0.5],
        [0.3, 0.7, 0.7, 0.2, 0.5],
        [0.5, 0.6, 0.2, 0.9, 0.3],
    ],
    dtype=np.float32,
)
HAND_LABELS = np.array(
    [
        [1, -1, 0, 1, 1],
        [-1, -1, 1, -1, -1],
        [1, 0, -1, -1, 1],
    ],
    dtype=np.int8,
)
# 6 positives. Rankings (stable: in row 1, label 1 (0.7) precedes label 2
# (0.7)):
#   row 0: l0 (+), l1 (-), l4 (+), l3 (+), l2 (0)
#   row 1: l1 (-), l2 (+), l4 (-), l0 (-), l3 (-)
#   row 2: l3 (-), l1 (0), l0 (+), l4 (+), l2 (-)
# K=1: TP = 1 (row 0)           -> P = 1/3, R = 1/6, F1 = 2/9
# K=2: TP = 1 + 1 + 0 = 2       -> P = 2/6, R = 2/6, F1 = 1/3
# K=3: TP = 2 + 1 + 1 = 4       -> P = 4/9, R = 4/6, F1 = 8/15
HAND_PRF = {
    1: (1 / 3, 1 / 6, 2 / 9),
    2: (1 / 3, 1 / 3, 1 / 3),
    3: (4 / 9, 2 / 3, 8 / 15),
}
# AP over the +1/-1 rows of each label:
#   l0: 0.9 (+), 0.5 (+), 0.3 (-)         -> (1/1 + 2/2) / 2 = 1
#   l1: rows 0, 1 are -1, row 2 is 0      -> no positive: 0
#   l2: 0.7 (+), 0.2 (-) (row 0 is 0)     -> 1
#   l3: 0.9 (-), 0.4 (+), 0.2 (-)         -> 1/2
#   l4: {0.5 (+), 0.5 (-)} tie, 0.3 (+)   -> one threshold at 0.5:
#       R 1/2 at P 1/2, then R 1 at P 2/3 -> 1/2 * 1/2 + 1/2 * 2/3 = 7/12
HAND_AP = np.array([1.0, 0.0, 1.0, 0.5, 7 / 12])
# mAP = (1 + 0 + 1 + 1/2 + 7/12) / 5 = 37/60.
HAND_MAP = 37 / 60
# ZSL over l2, l3, l4: top-1 = l4 (+), l2 (+), l3 (-); 4 positives
# -> P = 2/3, R = 1/2, F1 = 4/7; mAP = (1 + 1/2 + 7/12) / 3 = 25/36.
HAND_UNSEEN = np.array([False, False, True, True, True])


def test_hand_case_precision_recall_f1():
    for k, (p, r, f1) in HAND_PRF.items():
        got = precision_recall_f1_at_k(HAND_SCORES, HAND_LABELS, k)
        assert got == pytest.approx({"p": p, "r": r, "f1": f1}, abs=1e-12)
        assert all(type(v) is float for v in got.values())


def test_hand_case_average_precision():
    ap = average_precision_per_label(HAND_SCORES, HAND_LABELS)
    assert ap.dtype == np.float64
    np.testing.assert_allclose(ap, HAND_AP, atol=1e-12)
    np.testing.assert_allclose(ap, ref_ap(HAND_SCORES, HAND_LABELS))
    assert mean_average_precision(HAND_SCORES, HAND_LABELS) == pytest.approx(
        HAND_MAP, abs=1e-12
    )


def test_hand_case_evaluate_scores():
    result = evaluate_scores(
        HAND_SCORES, HAND_LABELS, ks=(1, 3), unseen_mask=HAND_UNSEEN
    )
    assert result["variant"] == "lesa"
    assert result["n_images"] == 3
    assert result["n_labels"] == {"zsl": 3, "gzsl": 5}
    gzsl = result["gzsl"]
    assert gzsl["map"] == pytest.approx(HAND_MAP, abs=1e-12)
    assert gzsl["p@1"] == pytest.approx(1 / 3)
    assert gzsl["f1@3"] == pytest.approx(8 / 15)
    zsl = result["zsl"]
    assert zsl["map"] == pytest.approx(25 / 36, abs=1e-12)
    assert (zsl["p@1"], zsl["r@1"]) == pytest.approx((2 / 3, 1 / 2))
    assert zsl["f1@1"] == pytest.approx(4 / 7)
    assert zsl["n_images"] == gzsl["n_images"] == 3
    for block in (zsl, gzsl):
        assert all(
            type(v) is float for k, v in block.items() if k != "n_images"
        )


def test_top_k_indices_hand_case():
    np.testing.assert_array_equal(
        top_k_indices(HAND_SCORES, 2), [[0, 1], [1, 2], [3, 1]]
    )


# ---------------------------------------------------------------------------
# Random cases against the references.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn(seed):
    scores, labels = random_case(seed)
    expected = ref_ap(scores, labels)
    np.testing.assert_allclose(
        average_precision_per_label(scores, labels), expected, atol=1e-9
    )
    assert expected[2] == expected[5] == expected[7] == 0


@pytest.mark.parametrize("decimals", [0, 1, 3])
def test_precision_recall_f1_matches_bruteforce(decimals):
    scores, labels = random_case(3, decimals=decimals)
    for k in (1, 2, 3, 5, 10, 39, 40):
        assert precision_recall_f1_at_k(scores, labels, k) == pytest.approx(
            ref_prf(scores, labels, k), abs=1e-12
        )


@pytest.mark.parametrize("decimals", [0, 1, 4])
def test_top_k_indices_matches_stable_argsort(decimals):
    scores, _ = random_case(4, decimals=decimals)
    order = np.argsort(-scores, axis=1, kind="stable")
    for k in (1, 2, 5, 20, 39, 40):
        np.testing.assert_array_equal(top_k_indices(scores, k), order[:, :k])


def test_top_k_with_constant_and_few_distinct_scores():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 3, size=(200, 30)).astype(np.float32)
    scores[:10] = 1.0  # all equal rows
    labels = rng.choice(np.array([-1, 0, 1], np.int8), size=scores.shape)
    order = np.argsort(-scores, axis=1, kind="stable")
    for k in (1, 4, 29, 30):
        np.testing.assert_array_equal(top_k_indices(scores, k), order[:, :k])
        assert precision_recall_f1_at_k(scores, labels, k) == pytest.approx(
            ref_prf(scores, labels, k), abs=1e-12
        )
    result = evaluate_scores(scores, labels, ks=(1, 4, 30))
    assert_blocks_close(result, ref_evaluate(scores, labels, (1, 4, 30)))
    mask = np.arange(30) < 8
    for variant in ("lesa", "biam_openimages"):
        result = evaluate_scores(
            scores, labels, ks=(1, 4, 8), unseen_mask=mask, variant=variant
        )
        expected = ref_evaluate(scores, labels, (1, 4, 8), mask, variant)
        assert_blocks_close(result, expected)


@pytest.mark.parametrize("seed", [6, 7])
def test_evaluate_scores_matches_reference(seed):
    scores, labels = random_case(seed, n=400, num_labels=50)
    mask = np.zeros(50, dtype=bool)
    mask[[3, 9, 11, 20, 21, 22, 30, 49]] = True
    ks = (3, 5)
    result = evaluate_scores(scores, labels, ks=ks, unseen_mask=mask)
    assert_blocks_close(result, ref_evaluate(scores, labels, ks, mask))
    assert result["n_labels"] == {"zsl": 8, "gzsl": 50}

    plain = evaluate_scores(scores, labels, ks=ks)
    assert set(plain) == {"all", "n_images", "n_labels", "variant"}
    assert plain["n_labels"] == {"all": 50}
    assert_blocks_close(plain, ref_evaluate(scores, labels, ks))


def test_signed_zero_scores_tie():
    scores = np.array(
        [[0.0, -0.0, 0.5], [-0.0, 0.0, -0.5], [0.0, 0.0, 0.0]],
        dtype=np.float32,
    )
    labels = np.array([[-1, 1, -1], [1, -1, 1], [1, 1, -1]], dtype=np.int8)
    np.testing.assert_allclose(
        average_precision_per_label(scores, labels), ref_ap(scores, labels)
    )
    order = np.argsort(-scores, axis=1, kind="stable")
    np.testing.assert_array_equal(top_k_indices(scores, 2), order[:, :2])
    assert_blocks_close(
        evaluate_scores(scores, labels, ks=(1, 2)),
        ref_evaluate(scores, labels, (1, 2)),
    )


def test_non_contiguous_inputs():
    scores, labels = random_case(16, n=150, num_labels=21)
    mask = np.arange(21) % 3 == 0
    expected = ref_evaluate(scores, labels, (2, 4), mask)
    fortran = evaluate_scores(
        np.asfortranarray(scores),
        np.asfortranarray(labels),
        ks=(2, 4),
        unseen_mask=mask,
    )
    assert_blocks_close(fortran, expected)
    flipped = evaluate_scores(scores[:, ::-1], labels[:, ::-1], ks=(2, 4))
    assert_blocks_close(
        flipped, ref_evaluate(scores[:, ::-1], labels[:, ::-1], (2, 4))
    )


def test_huge_finite_scores():
    # Sums of such scores overflow: the finiteness check must not misfire.
    scores, labels = random_case(15, n=100, num_labels=12)
    huge = (scores * 1e37).astype(np.float32)
    with np.errstate(over="ignore"):
        assert np.isfinite(huge).all() and not np.isfinite(huge.sum())
    assert_blocks_close(
        evaluate_scores(huge, labels, ks=3), ref_evaluate(huge, labels, (3,))
    )


def test_dtypes():
    scores, labels = random_case(8, n=120, num_labels=12)
    expected = ref_evaluate(scores, labels, (2,))
    for s, lab in [
        (scores.astype(np.float64), labels.astype(np.float32)),
        (scores.astype(np.float16), labels.astype(np.int64)),
        ((scores * 10).astype(np.int32), labels.tolist()),
    ]:
        exp = ref_evaluate(np.asarray(s), labels, (2,))
        assert_blocks_close(evaluate_scores(s, lab, ks=(2,)), exp)
    assert_blocks_close(evaluate_scores(scores, labels, ks=(2,)), expected)


# ---------------------------------------------------------------------------
# Blocks, threads, memmaps.
# ---------------------------------------------------------------------------


def test_small_blocks_and_threads_equal_unblocked():
    scores, labels = random_case(9, n=250, num_labels=23)
    mask = np.arange(23) % 4 == 1
    base = evaluate_scores(scores, labels, ks=(1, 3), unseen_mask=mask)
    for block_size, threads in [(3, 1), (1, 1), (3, 2), (7, 3), (100, 2)]:
        got = evaluate_scores(
            scores,
            labels,
            ks=(1, 3),
            unseen_mask=mask,
            block_size=block_size,
            num_threads=threads,
        )
        assert got == base
    ap = average_precision_per_label(scores, labels)
    np.testing.assert_array_equal(
        average_precision_per_label(scores, labels, block_size=3), ap
    )


def test_small_row_blocks(monkeypatch):
    from epsilon_tf.metrics import checks, ranking_metrics

    scores, labels = random_case(10, n=90, num_labels=17)
    base = evaluate_scores(scores, labels, ks=(2, 4))
    monkeypatch.setattr(ranking_metrics, "DEFAULT_MEMORY_BUDGET_BYTES", 1)
    monkeypatch.setattr(ranking_metrics, "_TILE_BYTES", 1)
    monkeypatch.setattr(checks, "ROW_BLOCK_BYTES", 1)
    assert checks.rows_per_block(scores) == 1
    assert evaluate_scores(scores, labels, ks=(2, 4)) == base
    order = np.argsort(-scores, axis=1, kind="stable")
    np.testing.assert_array_equal(top_k_indices(scores, 3), order[:, :3])


def test_memmap_inputs(tmp_path):
    scores, labels = random_case(11, n=200, num_labels=20)
    s_mm = np.memmap(tmp_path / "s.f32", np.float32, "w+", shape=scores.shape)
    l_mm = np.memmap(tmp_path / "l.i8", np.int8, "w+", shape=labels.shape)
    s_mm[:] = scores
    l_mm[:] = labels
    s_mm.flush()
    l_mm.flush()
    s_ro = np.memmap(tmp_path / "s.f32", np.float32, "r", shape=scores.shape)
    l_ro = np.memmap(tmp_path / "l.i8", np.int8, "r", shape=labels.shape)
    mask = np.arange(20) >= 15
    got = evaluate_scores(s_ro, l_ro, ks=(3,), unseen_mask=mask, block_size=4)
    assert got == evaluate_scores(scores, labels, ks=(3,), unseen_mask=mask)
    np.testing.assert_array_equal(
        top_k_indices(s_ro, 3), top_k_indices(scores, 3)
    )


# ---------------------------------------------------------------------------
# BiAM Open Images variant.
# ---------------------------------------------------------------------------


def test_biam_variant_hand_case():
    # A fourth image without any positive: LESA keeps it, BiAM drops it.
    scores = np.vstack([HAND_SCORES, [[0.1, 0.2, 0.3, 0.4, 0.6]]]).astype(
        np.float32
    )
    labels = np.vstack([HAND_LABELS, [[-1, -1, -1, -1, -1]]]).astype(np.int8)
    lesa = evaluate_scores(scores, labels, ks=(1,), unseen_mask=HAND_UNSEEN)
    biam = evaluate_scores(
        scores,
        labels,
        ks=(1,),
        unseen_mask=HAND_UNSEEN,
        variant="biam_openimages",
    )
    assert biam["variant"] == "biam_openimages"
    assert lesa["gzsl"]["n_images"] == 4
    assert biam["gzsl"]["n_images"] == biam["zsl"]["n_images"] == 3
    assert biam["n_images"] == 4
    # LESA: row 3's top-1 (l4, -1) adds no TP -> P@1 = 1/4, R@1 = 1/6.
    # Row 3's negatives change two APs:
    #   l3: 0.9-, {0.4+, 0.4-} tie, 0.2-   -> 1 * 1/3 = 1/3
    #   l4: 0.6-, {0.5+, 0.5-} tie, 0.3+   -> 1/2 * 1/3 + 1/2 * 2/4 = 5/12
    assert lesa["gzsl"]["p@1"] == pytest.approx(1 / 4)
    assert lesa["gzsl"]["r@1"] == pytest.approx(1 / 6)
    assert lesa["gzsl"]["map"] == pytest.approx(
        (1 + 0 + 1 + 1 / 3 + 5 / 12) / 5, abs=1e-12
    )
    # BiAM: P/R@1 of the three images. Its mAP is the pooled AP: a label's
    # pool is every annotated entry of the images annotated for it.
    assert (biam["gzsl"]["p@1"], biam["gzsl"]["r@1"]) == pytest.approx(
        HAND_PRF[1][:2]
    )
    assert biam["zsl"]["p@1"] == pytest.approx(2 / 3)
    assert biam["map_definition"].startswith("BiAM's pooled AP")
    # GZSL. l0, l3, l4 are annotated on rows {0, 1, 2}: the pool is all 13
    # entries, 6 positives; ties grouped, precision at each positive's
    # group end: 0.9 {+,-} 1/2; 0.7 {-,+} 2/5; 0.5 {+,-,+} 4/8 twice;
    # 0.4 + 5/9; 0.3 {-,+} 6/11.
    pool_all = (1 / 2 + 2 / 5 + 2 * 4 / 8 + 5 / 9 + 6 / 11) / 6
    # l1 on rows {0, 1}: 0.9+ 1; 0.8-; 0.7 {-,+} 2/4; 0.5 {+,-} 3/6; 0.4+
    # 4/7.
    pool_01 = (1 + 2 / 4 + 3 / 6 + 4 / 7) / 4
    # l2 on rows {1, 2}: 0.9-; 0.7 {-,+} 1/3; 0.5 {-,+} 2/5; 0.3 {-,+} 3/7.
    pool_12 = (1 / 3 + 2 / 5 + 3 / 7) / 3
    assert biam["gzsl"]["map"] == pytest.approx(
        (3 * pool_all + pool_01 + pool_12) / 5, abs=1e-12
    )
    assert biam["gzsl"]["n_labels_map"] == 5
    # ZSL over l2, l3, l4. l3, l4 on rows {0, 1, 2} (8 entries, 4 +):
    # 0.9-; 0.7+ 1/2; 0.5 {+,-} 2/4; 0.4+ 3/5; 0.3+ 4/6; 0.2 {-,-}.
    # l2 on rows {1, 2}: 0.9-; 0.7+ 1/2; 0.5-; 0.3+ 2/4; 0.2 {-,-}.
    zsl_all = (1 / 2 + 2 / 4 + 3 / 5 + 4 / 6) / 4
    assert biam["zsl"]["map"] == pytest.approx(
        (1 / 2 + 2 * zsl_all) / 3, abs=1e-12
    )
    assert "map_definition" not in lesa


def test_biam_variant_matches_reference():
    scores, labels = random_case(12, n=300, num_labels=30, pos_rate=0.03)
    mask = np.arange(30) % 5 == 0
    result = evaluate_scores(
        scores,
        labels,
        ks=(1, 3),
        unseen_mask=mask,
        variant="biam_openimages",
        block_size=4,
    )
    expected = ref_evaluate(scores, labels, (1, 3), mask, "biam_openimages")
    assert_blocks_close(result, expected)
    keep_zsl = (labels[:, mask] == 1).any(axis=1)
    keep_gzsl = (labels == 1).any(axis=1)
    assert result["zsl"]["n_images"] == keep_zsl.sum() < 300
    assert result["gzsl"]["n_images"] == keep_gzsl.sum() < 300


def biam_compute_ap(predictions, labels):
    """BiAM's `util_openimages.compute_AP`, restated in NumPy.

    Label j: the rows whose entry j is non-zero; all their non-zero
    entries, sorted by descending score; AP = sum of the precision at each
    positive / #positives; 0 (skipped) without a positive.
    """
    ap = np.zeros(predictions.shape[1])
    for j in range(predictions.shape[1]):
        rows = labels[:, j] != 0
        prediction, label = predictions[rows], labels[rows]
        mask = np.abs(label) == 1
        if (label > 0).sum() == 0:
            continue
        binary = np.clip(label[mask], 0, 1)
        order = np.argsort(-prediction[mask])
        hit = (binary[order] == 1).astype(np.float64)
        tp = np.cumsum(hit)
        fp = np.cumsum(1 - hit)
        ap[j] = np.sum(hit * tp / (tp + fp)) / binary.sum()
    return ap


def biam_evaluate_map(scores, labels, cols, gzsl):
    """BiAM's `evaluate_openimages.py` mAP of the label set `cols`."""
    lab, pred = labels[:, cols], scores[:, cols]
    keep = np.clip(lab, 0, 1).sum(1) > 0  # images with a positive
    lab, pred = lab[keep], pred[keep]
    if gzsl:  # labels annotated on a kept image
        annotated = (lab != 0).sum(0) > 0
        lab, pred = lab[:, annotated], pred[:, annotated]
    return float(np.mean(biam_compute_ap(pred, lab)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_biam_variant_is_biams_pooled_ap_without_ties(seed):
    """The released evaluation, restated: equal to 1e-9 on untied scores."""
    rng = np.random.default_rng(seed)
    n, num_labels = 250, 36
    scores = rng.standard_normal((n, num_labels))  # float64: no ties
    labels = np.where(rng.random((n, num_labels)) < 0.1, 1, -1)
    labels[rng.random((n, num_labels)) < 0.6] = 0  # sparse, as Open Images
    labels[:, 4] = 0  # never annotated
    labels[:, 6] = np.minimum(labels[:, 6], 0)  # no positive
    labels[: n // 8] = np.minimum(labels[: n // 8], 0)  # dropped images
    labels = labels.astype(np.int8)
    scores += 0.7 * (labels == 1)
    assert np.unique(scores).size == scores.size
    mask = np.arange(num_labels) % 4 == 0
    result = evaluate_scores(
        scores, labels, ks=(1, 3), unseen_mask=mask,
        variant="biam_openimages", num_threads=2,
    )
    zsl = biam_evaluate_map(scores, labels, mask, gzsl=False)
    gzsl = biam_evaluate_map(scores, labels, np.ones_like(mask), gzsl=True)
    assert result["zsl"]["map"] == pytest.approx(zsl, abs=1e-9)
    assert result["gzsl"]["map"] == pytest.approx(gzsl, abs=1e-9)
    # Not the per-label AP over the kept images that the variant was.
    keep = (labels == 1).any(axis=1)
    annotated = (labels[keep] != 0).any(axis=0)
    per_label = ref_ap(scores[keep], labels[keep])[annotated].mean()
    assert abs(gzsl - per_label) > 1e-3
    plain = evaluate_scores(
        scores, labels, ks=(1,), variant="biam_openimages"
    )
    assert plain["all"]["map"] == pytest.approx(gzsl, abs=1e-9)


def test_biam_variant_without_any_positive():
    scores = np.array([[0.2, 0.1], [0.3, 0.4]], dtype=np.float32)
    labels = np.array([[-1, 1], [-1, 0]], dtype=np.int8)
    result = evaluate_scores(
        scores,
        labels,
        ks=(1,),
        unseen_mask=np.array([True, False]),
        variant="biam_openimages",
    )
    assert result["zsl"] == {
        "map": 0.0,
        "p@1": 0.0,
        "r@1": 0.0,
        "f1@1": 0.0,
        "n_images": 0,
        "n_labels_map": 1,
    }
    assert result["gzsl"]["n_images"] == 1


# ---------------------------------------------------------------------------
# ScoreBuffer.
# ---------------------------------------------------------------------------


def batches(scores, labels, size):
    for start in range(0, len(scores), size):
        yield scores[start : start + size], labels[start : start + size]


@pytest.mark.parametrize("num_images", [None, 250, 100])
@pytest.mark.parametrize("budget", [2**30, 20000, 3000])
def test_score_buffer(num_images, budget, tmp_path):
    scores, labels = random_case(13, n=250, num_labels=20)
    expected = evaluate_scores(scores, labels, ks=(3,))
    spill_dir = tmp_path / "spill"
    with ScoreBuffer(
        num_images=num_images, memory_budget_bytes=budget, spill_dir=spill_dir
    ) as buffer:
        for s, lab in batches(scores, labels, 32):
            buffer.append(s, lab.astype(np.float32))
        assert buffer.count == 250
        out_scores, out_labels = buffer.finalize()
        assert out_scores.dtype == np.float32 and out_labels.dtype == np.int8
        np.testing.assert_array_equal(out_scores, scores)
        np.testing.assert_array_equal(out_labels, labels)
        assert evaluate_scores(out_scores, out_labels, ks=(3,)) == expected
        spilled = budget < 250 * 20 * 5
        assert buffer.spilled == spilled
        assert isinstance(out_scores, np.memmap) == spilled
        paths = buffer.spill_paths
        assert all(os.path.exists(p) for p in paths)
        assert len(paths) == (2 if spilled else 0)
        if spilled:
            assert not out_scores.flags.writeable
        with pytest.raises(RuntimeError, match="after finalize"):
            buffer.append(scores[:1], labels[:1])
        del out_scores, out_labels
    assert not any(os.path.exists(p) for p in paths)
    assert spill_dir.exists() == spilled  # a user directory is kept


def test_score_buffer_default_dir_is_removed():
    scores, labels = random_case(14, n=64, num_labels=12)
    buffer = ScoreBuffer(memory_budget_bytes=0)
    buffer.append(scores, labels)
    directory = os.path.dirname(buffer.spill_paths[0])
    assert os.path.isdir(directory)
    got_scores, got_labels = buffer.finalize()
    np.testing.assert_array_equal(got_scores, scores)
    del got_scores, got_labels
    buffer.close()
    assert not os.path.exists(directory)
    with pytest.raises(RuntimeError, match="after close"):
        buffer.finalize()


def test_score_buffer_errors():
    buffer = ScoreBuffer(num_labels=3)
    with pytest.raises(ValueError, match="`scores_batch` must have 3"):
        buffer.append(np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="`scores_batch` must be a 2-D"):
        buffer.append(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="`labels_batch` must only contain"):
        buffer.append(np.zeros((2, 3)), np.full((2, 3), 2))
    with pytest.raises(ValueError, match="`labels_batch` must have the same"):
        buffer.append(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no rows"):
        buffer.finalize()
    with pytest.raises(ValueError, match="`memory_budget_bytes`"):
        ScoreBuffer(memory_budget_bytes=-1)
    with pytest.raises(ValueError, match="`num_images`"):
        ScoreBuffer(num_images=0)


# ---------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------


def test_validation_errors():
    scores, labels = HAND_SCORES, HAND_LABELS
    with pytest.raises(ValueError, match=r"`scores` must be a 2-D.*\(5,\)"):
        evaluate_scores(scores[0], labels[0])
    with pytest.raises(ValueError, match=r"`labels` must have the same shape"):
        evaluate_scores(scores, labels[:2])
    with pytest.raises(ValueError, match="at least one image"):
        evaluate_scores(scores[:0], labels[:0])
    with pytest.raises(ValueError, match="`k` must be a positive integer"):
        precision_recall_f1_at_k(scores, labels, 0)
    with pytest.raises(ValueError, match=r"Received: k=6"):
        precision_recall_f1_at_k(scores, labels, 6)
    with pytest.raises(ValueError, match=r"Received: k=True"):
        top_k_indices(scores, True)
    with pytest.raises(ValueError, match=r"Received: k=1.5"):
        top_k_indices(scores, 1.5)
    with pytest.raises(ValueError, match=r"`ks` must .*Received: ks=\(3, 6\)"):
        evaluate_scores(scores, labels, ks=(3, 6))
    with pytest.raises(ValueError, match="`ks` must be a non-empty"):
        evaluate_scores(scores, labels, ks=())
    with pytest.raises(ValueError, match=r"`ks` must .*\(4,\)"):
        evaluate_scores(scores, labels, ks=(4,), unseen_mask=HAND_UNSEEN)
    with pytest.raises(ValueError, match="`variant` must be one of"):
        evaluate_scores(scores, labels, variant="biam")
    with pytest.raises(ValueError, match=r"`unseen_mask` must .*shape=\(4,\)"):
        evaluate_scores(scores, labels, ks=(1,), unseen_mask=[True] * 4)
    with pytest.raises(ValueError, match=r"`unseen_mask` must .*dtype=int64"):
        evaluate_scores(
            scores, labels, ks=(1,), unseen_mask=np.array([0, 0, 1, 1, 1])
        )
    with pytest.raises(ValueError, match="at least one unseen"):
        evaluate_scores(scores, labels, ks=(1,), unseen_mask=[False] * 5)
    with pytest.raises(ValueError, match="`block_size` must be a positive"):
        evaluate_scores(scores, labels, ks=(1,), block_size=0)
    with pytest.raises(ValueError, match="`num_threads` must be a positive"):
        mean_average_precision(scores, labels, num_threads=0)
    with pytest.raises(ValueError, match="`scores` must be a real-valued"):
        evaluate_scores(scores.astype(str), labels)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("variant", ["lesa", "biam_openimages"])
def test_non_finite_scores_rejected(bad, variant):
    scores = HAND_SCORES.copy()
    scores[1, 2] = bad
    scores[2, 1] = bad  # an unannotated entry: still rejected
    pattern = (
        r"`scores` must contain only finite values. Received: scores with "
        r"2 non-finite value\(s\), the first at \[1, 2\]"
    )
    with pytest.raises(ValueError, match=pattern):
        evaluate_scores(scores, HAND_LABELS, ks=(1,), variant=variant)
    for fn in (
        lambda: precision_recall_f1_at_k(scores, HAND_LABELS, 1),
        lambda: average_precision_per_label(scores, HAND_LABELS),
        lambda: top_k_indices(scores, 1),
    ):
        with pytest.raises(ValueError, match=pattern):
            fn()
    only_unannotated = HAND_SCORES.copy()
    only_unannotated[0, 2] = bad
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\)"):
        evaluate_scores(only_unannotated, HAND_LABELS, ks=(1,))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.float32])
def test_bad_labels_rejected(dtype):
    labels = HAND_LABELS.astype(dtype)
    labels[2, 3] = 2
    labels[0, 4] = -3
    pattern = (
        r"`labels` must only contain -1, 0 and \+1. Received: labels with 2 "
        r"value\(s\) outside \{-1, 0, 1\}, the first at \[0, 4\]"
    )
    with pytest.raises(ValueError, match=pattern):
        evaluate_scores(HAND_SCORES, labels, ks=(1,))
    with pytest.raises(ValueError, match=pattern):
        precision_recall_f1_at_k(HAND_SCORES, labels, 1)
    if dtype == np.float32:
        labels = HAND_LABELS.astype(dtype)
        labels[1, 1] = 0.5
        with pytest.raises(ValueError, match=r"the first at \[1, 1\] \(0.5\)"):
            average_precision_per_label(HAND_SCORES, labels)
