"""Exact, fast multi-label ranking metrics: P/R/F1@K and mAP (LESA protocol).

Pure NumPy (no TensorFlow), exact to the published definitions, and written
for full-size test sets: NUS-WIDE GZSL (107,859 x 1,006) in one to two
seconds on one core, and Open Images GZSL (125,456 x 7,586: 3.8 GB of float32
scores, possibly a `np.memmap`) within a fixed working-memory budget.

Protocol (`variant="lesa"`, the standard numbers of LESA, BiAM and
(ML)^2P on NUS-WIDE; docs/design.md §4):

- `labels` are +1 (present), -1 (absent) or 0 (not annotated).
- P/R/F1@K are micro (global): each image's top-K labels by score are
  taken; TP = top-K entries labelled +1; `P = TP / (num_images * K)`,
  `R = TP / (number of +1 entries)`, `F1 = 2PR / (P + R)` (0 when
  `P + R == 0`). Images without any positive stay in; 0 and -1 both count
  as non-positive.
- Ties in the top-K are broken like a stable descending sort,
  `np.argsort(-scores, kind="stable")`: among equal scores the lower label
  index ranks first. Results equal that straightforward computation
  exactly.
- mAP: for each label, the average precision of scikit-learn's
  `average_precision_score` over the images whose entry for that label is
  +1 or -1 (0 entries dropped); tied scores form one threshold, exactly as
  in scikit-learn. A label without any positive gets AP 0 and still counts
  in the mean.

How it is fast (no scikit-learn, no full argsort):

- One pass over row blocks validates the inputs, lists the positives
  (image, label, score) and does the top-K work below.
- AP: with `p` positives, scikit-learn's step-wise AP equals
  `(1 / p) * sum over positives q of (#positives >= q) / (#annotated >= q)`
  (the precision at the end of q's tie group, weighted by its recall
  step). Labels are processed in column blocks: the block is transposed
  tile by tile into a reused buffer, unannotated entries set to -inf, each
  label's scores sorted once (`np.sort`, SIMD) and `#annotated >= q` read
  with `np.searchsorted`.
- Top-K: per row block, `np.partition` gives the K-th and (K+1)-th largest
  scores. When they differ the top-K is exactly {scores >= K-th} and its
  true positives are the block's +1 entries at or above it; rows where
  they tie are redone on the full row with the lowest-index rule.
- Blocks can run on a thread pool (`num_threads`; NumPy releases the GIL
  while sorting).

Memory: besides the inputs, a per-thread sort buffer of `block_size` label
columns (by default at most `DEFAULT_MEMORY_BUDGET_BYTES` over all
threads), small row blocks, and about 20 bytes per +1 label.

The input checks (and the row-block size) live in `metrics.checks`; the
scan and the top-K in `metrics.top_k`; BiAM's pooled AP in
`metrics.biam_ap`; the thread-pool blocks in `metrics.blocks`;
`metrics.score_buffer.ScoreBuffer` gathers score rows batch by batch.
"""

import threading

import numpy as np

from epsilon_tf.metrics.biam_ap import (
    BIAM_POOLED_AP,
    biam_pooled_average_precision,
)
from epsilon_tf.metrics.blocks import (
    as_slice,
    resolve_threads,
    spans,
    thread_map,
)
from epsilon_tf.metrics.checks import (
    as_label_array,
    as_score_array,
    check_k,
    check_ks,
    check_positive_int_or_none,
    rows_per_block,
)
from epsilon_tf.metrics.top_k import TopK, scan, top_k_block

VARIANTS = ("lesa", "biam_openimages")

# Working memory of the AP sort buffers (all threads together) when no
# `block_size` is given.
DEFAULT_MEMORY_BUDGET_BYTES = 256 * 2**20
# Largest default AP block (labels): wider blocks transpose more slowly.
_MAX_LABEL_BLOCK = 128
# Bytes of one transposition tile (stays in L2).
_TILE_BYTES = 256 * 2**10


def _prf(tp, npos, num_rows, k):
    p = tp / (num_rows * k) if num_rows else 0.0
    r = tp / npos if npos else 0.0
    f1 = 2.0 * p * r / (p + r) if p + r > 0 else 0.0
    return float(p), float(r), float(f1)


# ---------------------------------------------------------------------------
# Average precision.
# ---------------------------------------------------------------------------

_SIGN = np.uint32(0x80000000)
_LOW = np.uint32(0x7FFFFFFF)


def _sortable_u32(bits):
    """Monotone map of float32 bit patterns to uint32 (order-preserving)."""
    negative = bits >> np.uint32(31)
    return bits ^ (_SIGN | (negative * _LOW))


def _unsortable_u32(keys):
    """Inverse of `_sortable_u32`."""
    positive = keys >> np.uint32(31)
    return keys ^ (_SIGN | ((np.uint32(1) - positive) * _LOW))


def _sort_by_label_then_score(col, q):
    """`(col, q)` sorted by label, then by ascending score."""
    if q.dtype == np.float32:
        key = col.astype(np.uint64) << np.uint64(32)
        key |= _sortable_u32(q.view(np.uint32)).astype(np.uint64)
        key.sort()
        col = (key >> np.uint64(32)).astype(np.intp)
        low = (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        return col, _unsortable_u32(low).view(np.float32)
    order = np.lexsort((q, col))
    return col[order].astype(np.intp), q[order]


def _fill_block(scores, labels, cols, keep, buf):
    """Transposes scores[:, cols] into `buf`, unannotated entries -> -inf.

    Tile by tile, so each tile stays in cache. Images outside `keep` count
    as unannotated.
    """
    b, n = buf.shape
    tile = max(8, _TILE_BYTES // (b * buf.dtype.itemsize))
    ninf = np.array(-np.inf, dtype=buf.dtype)
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        s_t = scores[i0:i1, cols]
        unannotated = labels[i0:i1, cols] == 0
        if keep is not None:
            unannotated |= ~keep[i0:i1, None]
        if unannotated.any():
            s_t = np.where(unannotated, ninf, s_t)
        buf[:, i0:i1] = s_t.T


def _average_precision(
    scores, labels, cols, keep, positives, block_size, num_threads
):
    """AP of the labels `cols` (None: all) and their positive counts.

    `positives` = `(col, score)` of every +1 entry of those labels (`col`
    indexes into `cols`). A label's AP is `(1 / p) * sum over its positives
    q of (#positives >= q) / (#annotated >= q)`: the precision at the end
    of q's tie group (one threshold per distinct score, as in
    scikit-learn) times the recall step `1 / p` of each positive in it.
    `#annotated >= q` comes from the label's sorted scores, with the
    unannotated entries (and images outside `keep`) set to -inf.
    """
    n = scores.shape[0]
    col_ids = np.arange(scores.shape[1]) if cols is None else np.asarray(cols)
    num = col_ids.size
    col, q = _sort_by_label_then_score(*positives)
    npos = np.bincount(col, minlength=num)
    ends = np.cumsum(npos)
    starts = ends - npos
    # #positives >= q: up to the end of the label, from the first positive
    # of q's tie group.
    if q.size:
        new_run = np.empty(q.size, dtype=bool)
        new_run[0] = True
        new_run[1:] = (col[1:] != col[:-1]) | (q[1:] != q[:-1])
        run_start = np.maximum.accumulate(
            np.where(new_run, np.arange(q.size), 0)
        )
        positive_ge = (ends[col] - run_start).astype(np.float64)
    ap = np.zeros(num, dtype=np.float64)
    if block_size is None:
        per_label = n * scores.dtype.itemsize + 64
        block_size = DEFAULT_MEMORY_BUDGET_BYTES // (num_threads * per_label)
        block_size = max(1, min(_MAX_LABEL_BLOCK, block_size))
    block_size = min(block_size, num)
    local = threading.local()

    def work(span):
        j0, j1 = span
        labs = np.flatnonzero(npos[j0:j1]) + j0
        if labs.size == 0:
            return
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty((block_size, n), dtype=scores.dtype)
        buf = buf[: j1 - j0]
        _fill_block(scores, labels, as_slice(col_ids[j0:j1]), keep, buf)
        buf.sort(axis=1)  # ascending; unannotated (-inf) first
        for j in labs:
            s, e = starts[j], ends[j]
            annotated_ge = n - np.searchsorted(buf[j - j0], q[s:e], "left")
            ap[j] = np.sum(positive_ge[s:e] / annotated_ge) / (e - s)

    thread_map(work, spans(num, block_size), num_threads)
    return ap, npos


# ---------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------


def top_k_indices(scores, k, num_threads=None):
    """Indices of each image's `k` highest-scoring labels, best first.

    Ties are broken like `np.argsort(-scores, kind="stable")`: among equal
    scores the lower label index ranks first, so the result equals
    `np.argsort(-scores, axis=1, kind="stable")[:, :k]` exactly. Works on
    row blocks with `np.argpartition` and sorts only k + 1 candidates per
    row (full rows only where the k-th and (k+1)-th scores tie).

    Args:
        scores: float array [num_images, num_labels] (or `np.memmap`).
            Must be finite.
        k: int. Number of labels per image, `1 <= k <= num_labels`.
        num_threads: int or None. Worker threads. Defaults to `None`
            (every CPU, at most 8).

    Returns:
        int64 array [num_images, k].

    Example:

    >>> top_k_indices(np.array([[0.1, 0.9, 0.9, 0.3]]), 2)
    array([[1, 2]])
    """
    scores = as_score_array(scores)
    k = check_k(k, scores.shape[1])
    num_threads = resolve_threads(num_threads)
    scan(scores, num_threads=num_threads)
    out = np.empty((scores.shape[0], k), dtype=np.int64)

    def work(span):
        out[span[0] : span[1]] = top_k_block(scores[span[0] : span[1]], k)

    row_spans = spans(scores.shape[0], rows_per_block(scores))
    thread_map(work, row_spans, num_threads)
    return out


def precision_recall_f1_at_k(scores, labels, k, num_threads=None):
    """Micro (global) precision, recall and F1 of each image's top-`k`.

    `P = TP / (num_images * k)`, `R = TP / (number of +1 labels)`,
    `F1 = 2PR / (P + R)` (0 when `P + R == 0`), TP being the top-`k`
    entries labelled +1. Images without positives count; 0 and -1 are both
    non-positive; ties follow `top_k_indices` (lower label index first).

    Args:
        scores: float array [num_images, num_labels] (or `np.memmap`).
            Must be finite.
        labels: array of the same shape with values in {-1, 0, +1}.
        k: int. `1 <= k <= num_labels`.
        num_threads: int or None. Worker threads. Defaults to `None`
            (every CPU, at most 8).

    Returns:
        dict {"p": float, "r": float, "f1": float}, fractions in [0, 1].

    Example:

    >>> precision_recall_f1_at_k(
    ...     np.array([[0.9, 0.1, 0.5]]), np.array([[1, 1, -1]]), k=1)
    {'p': 1.0, 'r': 0.5, 'f1': 0.6666666666666666}
    """
    scores = as_score_array(scores)
    labels = as_label_array(labels, scores.shape, check_int8=False)
    k = check_k(k, scores.shape[1])
    num_threads = resolve_threads(num_threads)
    (pos_img, _, pos_score), (top,) = scan(
        scores, labels, [((k,), None)], num_threads
    )
    tp = top.true_positives()
    rows = top.num_rows
    p, r, f1 = _prf(tp[k], pos_img.size, rows, k)
    return {"p": p, "r": r, "f1": f1}


def average_precision_per_label(
    scores, labels, block_size=None, num_threads=None
):
    """Per-label average precision over the annotated (+1/-1) images.

    Equal, to rounding, to scikit-learn's `average_precision_score` on the
    images whose label is +1 or -1 (0 entries dropped), including its
    handling of tied scores (one threshold per distinct score). A label
    without any positive gets AP 0.

    Args:
        scores: float array [num_images, num_labels] (or `np.memmap`).
            Must be finite.
        labels: array of the same shape with values in {-1, 0, +1}.
        block_size: int or None. Labels sorted at a time (the sort buffer
            holds `block_size * num_images` scores per thread). Defaults to
            `None` (from `DEFAULT_MEMORY_BUDGET_BYTES`, at most 128).
        num_threads: int or None. Worker threads. Defaults to `None`
            (every CPU, at most 8).

    Returns:
        float64 array [num_labels].

    Example:

    >>> average_precision_per_label(
    ...     np.array([[0.9], [0.8], [0.7]]), np.array([[1], [-1], [1]]))
    array([0.83333333])
    """
    scores = as_score_array(scores)
    labels = as_label_array(labels, scores.shape, check_int8=False)
    block_size = check_positive_int_or_none(block_size, "block_size")
    num_threads = resolve_threads(num_threads)
    (_, pos_col, pos_score), _ = scan(scores, labels, (), num_threads)
    ap, _ = _average_precision(
        scores,
        labels,
        None,
        None,
        (pos_col, pos_score),
        block_size,
        num_threads,
    )
    return ap


def mean_average_precision(scores, labels, block_size=None, num_threads=None):
    """Mean over labels of `average_precision_per_label` (LESA mAP).

    Labels without a positive count as AP 0.

    Args:
        scores: float array [num_images, num_labels] (or `np.memmap`).
            Must be finite.
        labels: array of the same shape with values in {-1, 0, +1}.
        block_size: int or None. Labels sorted at a time. Defaults to
            `None` (from `DEFAULT_MEMORY_BUDGET_BYTES`).
        num_threads: int or None. Worker threads. Defaults to `None`.

    Returns:
        float in [0, 1].

    Example:

    >>> mean_average_precision(
    ...     np.array([[0.9, 0.2], [0.1, 0.3]]), np.array([[1, -1], [-1, -1]]))
    0.5
    """
    return float(
        np.mean(
            average_precision_per_label(
                scores, labels, block_size=block_size, num_threads=num_threads
            )
        )
    )


def _metrics_block(ap, tp, npos, num_rows, ks):
    block = {"map": float(np.mean(ap))}
    for k in ks:
        p, r, f1 = _prf(tp[k], npos, num_rows, k)
        block[f"p@{k}"] = p
        block[f"r@{k}"] = r
        block[f"f1@{k}"] = f1
    block["n_images"] = int(num_rows)
    return block


def evaluate_scores(
    scores,
    labels,
    ks=(3, 5),
    unseen_mask=None,
    variant="lesa",
    block_size=None,
    num_threads=None,
):
    """mAP and P/R/F1@K of a score matrix, ZSL and GZSL, exactly.

    `variant="lesa"` (default) is the standard protocol of LESA, BiAM and
    (ML)^2P on NUS-WIDE (see the module docstring): every image counts,
    P/R/F1@K are micro over images and labels, AP is scikit-learn's over
    the +1/-1 entries of each label, labels without a positive count as 0.

    `variant="biam_openimages"` follows BiAM's Open Images evaluation
    (`evaluate_openimages.py` with `util_openimages.compute_AP`) and is NOT
    the standard number. Within each evaluated label set (ZSL: the unseen
    labels; GZSL: all labels) the images without any +1 among those labels
    are dropped first; P/R/F1@K are then computed over the remaining
    images. The mAP is BiAM's pooled AP: for label j, the remaining images
    whose entry for j is annotated (+1/-1) are taken, every annotated entry
    of every evaluated label of those images is pooled, and one AP is
    computed over that pool (so a label's AP depends on the other labels
    of its images); a label without a positive in its pool stays 0. For
    GZSL (and a single "all" block), as BiAM does, labels never annotated
    on the remaining images are left out of the mAP (`n_labels_map` in the
    block says how many count); for ZSL every unseen label counts. Ties:
    BiAM orders tied scores as `torch.sort` leaves them (unspecified);
    ours groups tied scores into one threshold as scikit-learn does, so
    the two agree whenever no two pooled scores tie. ZSL and GZSL may use
    different images, reported as `n_images` in each block.

    Args:
        scores: float array [num_images, num_labels] (or `np.memmap`), all
            labels (GZSL) in column order. Must be finite.
        labels: array of the same shape with values in {-1, 0, +1}.
        ks: tuple of int. The K of P/R/F1@K. Defaults to `(3, 5)`
            (NUS-WIDE; Open Images uses `(10, 20)`).
        unseen_mask: bool array [num_labels] or None. True for the unseen
            labels. When given, the result has a "zsl" block (unseen
            columns only) and a "gzsl" block (all columns); otherwise one
            "all" block. Defaults to `None`.
        variant: str. "lesa" or "biam_openimages". Defaults to "lesa".
        block_size: int or None. Labels sorted at a time for AP (the sort
            buffer holds `block_size * num_images` scores per thread).
            Defaults to `None` (from `DEFAULT_MEMORY_BUDGET_BYTES`, at most
            128).
        num_threads: int or None. Worker threads. Defaults to `None`
            (every CPU, at most 8).

    Returns:
        dict. With `unseen_mask`: `{"zsl": {...}, "gzsl": {...},
        "n_images": int, "n_labels": {"zsl": int, "gzsl": int},
        "variant": str}`; without: `{"all": {...}, "n_images": int,
        "n_labels": {"all": int}, "variant": str}`; "biam_openimages"
        adds `"map_definition": BIAM_POOLED_AP` (BiAM's pooled AP, in
        words). Each block holds "map", "p@k", "r@k", "f1@k" for every k
        (python floats in [0, 1])
        and "n_images" (the images evaluated in that block).

    Example:

    >>> result = evaluate_scores(
    ...     np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4]]),
    ...     np.array([[1, -1, -1], [-1, 1, 0]]),
    ...     ks=(1,),
    ...     unseen_mask=np.array([False, True, True]),
    ... )
    >>> result["gzsl"]["p@1"], result["zsl"]["map"]
    (1.0, 0.5)
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"`variant` must be one of {VARIANTS}. Received: variant="
            f"{variant!r}"
        )
    scores = as_score_array(scores)
    labels = as_label_array(labels, scores.shape, check_int8=False)
    num_images, num_labels = scores.shape
    block_size = check_positive_int_or_none(block_size, "block_size")
    num_threads = resolve_threads(num_threads)
    if unseen_mask is None:
        groups = [("all", None)]
        ks = check_ks(ks, num_labels)
    else:
        mask = np.asarray(unseen_mask)
        if mask.dtype != bool or mask.shape != (num_labels,):
            raise ValueError(
                "`unseen_mask` must be a boolean vector with one entry per "
                f"label ({num_labels}). Received: unseen_mask with "
                f"shape={mask.shape} and dtype={mask.dtype}"
            )
        unseen = np.flatnonzero(mask)
        if unseen.size == 0:
            raise ValueError(
                "`unseen_mask` must mark at least one unseen label. "
                "Received: unseen_mask with no True entry"
            )
        ks = check_ks(ks, unseen.size)
        groups = [("zsl", unseen), ("gzsl", None)]

    top_k = []
    if variant == "lesa":
        # Every image counts: the top-K thresholds come with the first pass.
        top_k = [
            (ks, None if cols is None else as_slice(cols))
            for _, cols in groups
        ]
    (img, col, q), tops = scan(scores, labels, top_k, num_threads)
    if variant == "lesa":
        # A label's AP does not depend on the other labels: one pass over
        # all of them serves ZSL and GZSL.
        ap_all, _ = _average_precision(
            scores, labels, None, None, (col, q), block_size, num_threads
        )
    result = {}
    n_labels = {}
    for index, (name, cols) in enumerate(groups):
        if cols is None:
            n_labels[name] = num_labels
            g_img, g_col_all, g_q = img, col, q
        else:
            n_labels[name] = int(cols.size)
            in_group = mask[col]
            g_img, g_col_all, g_q = img[in_group], col[in_group], q[in_group]
        if variant == "lesa":
            ap = ap_all if cols is None else ap_all[cols]
            top = tops[index]
        else:
            # Only the images with a +1 among these labels.
            keep = np.zeros(num_images, dtype=bool)
            keep[g_img] = True
            ap, annotated = biam_pooled_average_precision(
                scores, labels, cols, keep, num_threads
            )
            top = TopK(
                scores,
                ks,
                None if cols is None else as_slice(cols),
                np.flatnonzero(keep),
            )
            top.run(scores, labels, num_threads)
            top.add_positives(g_img, g_col_all, g_q)
            if cols is None:
                ap = ap[annotated]
        tp = top.true_positives()
        result[name] = _metrics_block(ap, tp, g_img.size, top.num_rows, ks)
        if variant != "lesa":
            result[name]["n_labels_map"] = int(len(ap))
    result["n_images"] = int(num_images)
    result["n_labels"] = n_labels
    result["variant"] = variant
    if variant != "lesa":
        result["map_definition"] = BIAM_POOLED_AP
    return result
