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

The input checks (and the row-block size) live in `metrics.checks`;
`metrics.score_buffer.ScoreBuffer` gathers score rows batch by batch.
"""

import concurrent.futures
import os
import threading

import numpy as np

from epsilon_tf.metrics.checks import (
    as_label_array,
    as_score_array,
    block_rows,
    check_k,
    check_ks,
    check_positive_int_or_none,
    raise_bad_labels,
    raise_non_finite,
    rows_per_block,
)

VARIANTS = ("lesa", "biam_openimages")
# What "map" means under `variant="biam_openimages"`, in its results.
BIAM_POOLED_AP = (
    "BiAM's pooled AP (util_openimages.compute_AP): per label, one AP over "
    "every annotated entry of the images annotated for it"
)

# Working memory of the AP sort buffers (all threads together) when no
# `block_size` is given.
DEFAULT_MEMORY_BUDGET_BYTES = 256 * 2**20
# Largest default AP block (labels): wider blocks transpose more slowly.
_MAX_LABEL_BLOCK = 128
# Bytes of one transposition tile (stays in L2).
_TILE_BYTES = 256 * 2**10


# ---------------------------------------------------------------------------
# Scan.
# ---------------------------------------------------------------------------


def _resolve_threads(num_threads):
    """`num_threads`, or by default every CPU (at most 8).

    NumPy's sorts and partitions release the GIL, so label blocks run in
    parallel: on this project's 2-core machine 2 threads took 0.82 s
    against 1.29 s for 1 at NUS-WIDE GZSL size (BUILD_NOTES.md). On a
    machine busy with other work, pass `num_threads=1`.
    """
    num_threads = check_positive_int_or_none(num_threads, "num_threads")
    if num_threads is None:
        num_threads = max(1, min(8, os.cpu_count() or 1))
    return num_threads


def _scan(scores, labels=None, top_k=(), num_threads=1):
    """One pass over row blocks: validation, positives and top-K thresholds.

    Validates `scores` (finite) and `labels` (in {-1, 0, 1}), lists every
    +1 entry and, for each `(ks, cols)` in `top_k`, fills a `_TopK` with
    each image's K-th largest scores over the labels `cols` (None: all).

    Returns `((img, col, score), [_TopK, ...])`: the +1 entries in
    row-major order (intp, intp, scores dtype; empty without `labels`).
    """
    n = scores.shape[0]
    groups = [_TopK(scores, ks, cols, None) for ks, cols in top_k]
    step = rows_per_block(scores)
    local = threading.local()

    def work(span):
        a, b = span
        s_b = scores[a:b]
        # One reduction: NaN/inf make the sum non-finite (an overflow of
        # finite values is told apart by the exact check).
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.add.reduce(s_b, axis=None)
        if not np.isfinite(total) and not np.isfinite(s_b).all():
            raise_non_finite(scores)
        if labels is None:
            return None
        l_b = labels[a:b]
        if l_b.min() < -1 or l_b.max() > 1:
            raise_bad_labels(labels)
        bufs = getattr(local, "bufs", None)
        if bufs is None:
            bufs = local.bufs = [g.new_buffer(step) for g in groups]
        flat = np.flatnonzero(l_b == 1)
        img, col = np.divmod(flat, scores.shape[1])
        # 1-D indexing is much faster than 2-D fancy indexing.
        q = s_b.reshape(-1)[flat]
        # True positives of this block's top-K, while it is in cache.
        tp = [
            g.fill(s_b, l_b, a, buf) + g.count(img, col, q, a)
            for g, buf in zip(groups, bufs, strict=True)
        ]
        img += a
        return img, col, q, tp

    results = _map(work, _spans(n, step), num_threads)
    if labels is None:
        return None, groups
    for t, group in enumerate(groups):
        group.tp = np.sum([r[3][t] for r in results], axis=0)
    positives = (
        _concat([r[0] for r in results], np.intp),
        _concat([r[1] for r in results], np.intp),
        _concat([r[2] for r in results], scores.dtype),
    )
    return positives, groups


def _concat(parts, dtype):
    if not parts:
        return np.empty(0, dtype=dtype)
    return np.concatenate(parts)


# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------


def _map(fn, items, num_threads):
    """`[fn(x) for x in items]`, on a thread pool when `num_threads > 1`."""
    items = list(items)
    if num_threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    workers = min(num_threads, len(items))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def _spans(total, size):
    return [(s, min(total, s + size)) for s in range(0, total, size)]


def _as_slice(index):
    """A slice equal to the increasing index array `index` when contiguous."""
    if index.size and index[-1] - index[0] == index.size - 1:
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _num_cols(array, cols):
    if cols is None:
        return array.shape[1]
    if isinstance(cols, slice):
        return len(range(*cols.indices(array.shape[1])))
    return len(cols)


# ---------------------------------------------------------------------------
# Top-K.
# ---------------------------------------------------------------------------


def _stable_top_mask(block, kth, k):
    """Mask of each row's top-`k`, given its k-th largest value `kth`.

    Scores above `kth` are in; among scores equal to it, the lowest label
    indices fill the remaining places (the stable-sort rule).
    """
    kth = kth[:, None]
    above = block > kth
    equal = block == kth
    need = k - np.count_nonzero(above, axis=1)
    return above | (equal & (np.cumsum(equal, axis=1) <= need[:, None]))


def _top_k_block(block, k):
    """Top-`k` label indices of each row of `block`, stable tie-break."""
    rows, num_labels = block.shape
    m = k + 1
    if m >= num_labels:
        return np.argsort(-block, axis=1, kind="stable")[:, :k]
    # The m largest (unordered, ties at the boundary arbitrary) ...
    cand = np.argpartition(block, num_labels - m, axis=1)[:, num_labels - m :]
    # ... ordered by (-score, index).
    cand.sort(axis=1)
    vals = np.take_along_axis(block, cand, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    cand = np.take_along_axis(cand, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    # Every score above the m-th largest is a candidate, so the first k
    # candidates are exact unless the k-th ties with the m-th: then equal
    # scores outside the candidates may have lower indices. Redo those rows
    # with the lowest-index rule.
    redo = np.flatnonzero(vals[:, k - 1] == vals[:, m - 1])
    if redo.size:
        sub = block[redo]
        chosen = _stable_top_mask(sub, vals[redo, k - 1], k)
        idx = np.nonzero(chosen)[1].reshape(redo.size, k)
        sel = np.take_along_axis(sub, idx, axis=1)
        order = np.argsort(-sel, axis=1, kind="stable")
        cand[redo, :k] = np.take_along_axis(idx, order, axis=1)
    return cand[:, :k]


class _TopK:
    """Top-K true positives over the labels `cols` (None: all), per K.

    `fill` handles a row block: `np.partition` of a reused copy gives each
    image's K-th and (K+1)-th largest scores. When the (K+1)-th is
    smaller, the top-K is exactly {scores >= K-th}, so its true positives
    are the +1 entries at or above that threshold (`count`). Images where
    they tie are counted at once on their full rows with the lowest-index
    rule (the stable-sort tie-break), and their threshold is set to +inf
    so that `count` skips them. `tp` accumulates the counts per K.
    """

    def __init__(self, scores, ks, cols, rows):
        self.ks = ks
        self.cols = cols
        self.rows = rows  # None: every image; else sorted image indices.
        self.num_labels = _num_cols(scores, cols)
        self.num_rows = scores.shape[0] if rows is None else len(rows)
        self.dtype = scores.dtype
        self.thresholds = np.empty((self.num_rows, len(ks)), self.dtype)
        self.tp = np.zeros(len(ks), dtype=np.int64)
        self.label_mask = None
        if cols is not None:
            self.label_mask = np.zeros(scores.shape[1], dtype=bool)
            self.label_mask[cols] = True

    def count(self, row, col, score, start=0):
        """TP per K among +1 entries (row, label, score).

        `row` indexes the rows of this object from `start`; `col` is a label
        of the whole score matrix (entries outside `cols` are ignored).
        """
        if self.label_mask is not None:
            inside = self.label_mask[col]
            row, score = row[inside], score[inside]
        thresholds = self.thresholds[start:][row]
        return np.array(
            [
                np.count_nonzero(score >= thresholds[:, t])
                for t in range(len(self.ks))
            ],
            dtype=np.int64,
        )

    def new_buffer(self, rows):
        return np.empty((rows, self.num_labels), dtype=self.dtype)

    def fill(self, s_b, l_b, start, buf):
        """Rows `start:start + len(s_b)`; returns their redone TP per K."""
        block = s_b if self.cols is None else s_b[:, self.cols]
        num_labels = self.num_labels
        kmax = max(self.ks)
        top = buf[: block.shape[0]]
        np.copyto(top, block)
        if kmax >= num_labels:
            top.sort(axis=1)
        else:
            m = kmax + 1
            top.partition(num_labels - m, axis=1)
            top = top[:, num_labels - m :]
            top.sort(axis=1)
        top = top[:, ::-1]  # descending
        thresholds = self.thresholds[start : start + block.shape[0]]
        redo_tp = np.zeros(len(self.ks), dtype=np.int64)
        for t, k in enumerate(self.ks):
            kth = top[:, k - 1]
            thresholds[:, t] = kth
            if k == top.shape[1]:
                continue  # every label is in the top-K
            redo = np.flatnonzero(top[:, k] == kth)
            if redo.size:
                chosen = _stable_top_mask(block[redo], kth[redo], k)
                lab = l_b[redo]
                if self.cols is not None:
                    lab = lab[:, self.cols]
                redo_tp[t] = np.count_nonzero(chosen & (lab == 1))
                thresholds[redo, t] = np.inf
        return redo_tp

    def run(self, scores, labels, num_threads):
        """Fills and counts the images `self.rows` (a subset)."""
        if self.num_rows == 0:
            return self
        size = block_rows(self.num_labels * self.dtype.itemsize)
        local = threading.local()

        def work(span):
            a, b = span
            r = self.rows[a:b]
            buf = getattr(local, "buf", None)
            if buf is None:
                buf = local.buf = self.new_buffer(min(size, self.num_rows))
            return self.fill(scores[r], labels[r], a, buf)

        results = _map(work, _spans(self.num_rows, size), num_threads)
        self.tp = np.sum(results, axis=0, dtype=np.int64)
        return self

    def add_positives(self, pos_img, pos_col, pos_score):
        """Counts the +1 entries (image, label, score) of `self.rows`."""
        if self.num_rows:
            row = np.searchsorted(self.rows, pos_img)
            self.tp = self.tp + self.count(row, pos_col, pos_score)
        return self

    def true_positives(self):
        return {k: int(tp) for k, tp in zip(self.ks, self.tp, strict=True)}


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
        _fill_block(scores, labels, _as_slice(col_ids[j0:j1]), keep, buf)
        buf.sort(axis=1)  # ascending; unannotated (-inf) first
        for j in labs:
            s, e = starts[j], ends[j]
            annotated_ge = n - np.searchsorted(buf[j - j0], q[s:e], "left")
            ap[j] = np.sum(positive_ge[s:e] / annotated_ge) / (e - s)

    _map(work, _spans(num, block_size), num_threads)
    return ap, npos


def _annotated_entries(scores, labels, cols, rows):
    """Every annotated (+1/-1) entry of the images `rows` over `cols`.

    Returns `(score, positive, col, row_len)`: the entries in row-major
    order (score in the scores' dtype, positive bool, col indexing into
    `cols`) and the number of entries of each of those images.
    """
    cols = slice(None) if cols is None else _as_slice(cols)
    step = rows_per_block(scores)
    parts = []
    for a in range(0, rows.size, step):
        r = _as_slice(rows[a : a + step])
        l_b = np.asarray(labels[r][:, cols])
        flat = np.flatnonzero(l_b)
        row, col = np.divmod(flat, l_b.shape[1])
        s_b = np.asarray(scores[r][:, cols])
        parts.append(
            (
                s_b.reshape(-1)[flat],
                l_b.reshape(-1)[flat] == 1,
                col,
                np.bincount(row, minlength=l_b.shape[0]),
            )
        )
    return (
        _concat([p[0] for p in parts], scores.dtype),
        _concat([p[1] for p in parts], bool),
        _concat([p[2] for p in parts], np.intp),
        _concat([p[3] for p in parts], np.intp),
    )


def _pooled_ap(score, positive):
    """AP of one pool of entries, tied scores grouped as scikit-learn does.

    `(1 / p) * sum over positives q of (#positives >= q) / (#entries >= q)`.
    """
    q = score[positive]
    if q.size == 0:
        return 0.0
    entries = np.sort(score)
    entries_ge = score.size - np.searchsorted(entries, q, "left")
    positives_ge = q.size - np.searchsorted(np.sort(q), q, "left")
    return float(np.sum(positives_ge / entries_ge) / q.size)


def _biam_pooled_average_precision(scores, labels, cols, keep, num_threads):
    """BiAM's Open Images AP (`util_openimages.compute_AP`), per label.

    For label j the images kept (`keep`) whose entry for j is annotated
    are taken; every annotated entry of every label in `cols` of those
    images is pooled, and one AP is computed over that pool (`_pooled_ap`).
    A label without a positive in its pool (in particular one annotated
    on no kept image) gets 0.

    Cost: the pools hold `sum over images of (annotated entries)^2`
    entries; labels annotated on the same images share one pool, so a
    fully annotated matrix costs one sort.

    Returns:
        `(ap, annotated)`: float64 [num cols] and bool [num cols], True for
        the labels annotated on at least one kept image.
    """
    rows = np.flatnonzero(keep)
    num = _num_cols(scores, cols)
    score, positive, col, row_len = _annotated_entries(
        scores, labels, cols, rows
    )
    row_start = np.cumsum(row_len) - row_len
    entry_row = np.repeat(np.arange(rows.size), row_len)
    by_col = np.argsort(col, kind="stable")  # rows ascending within a label
    col_rows = entry_row[by_col]
    col_end = np.cumsum(np.bincount(col, minlength=num))
    col_start = np.concatenate([[0], col_end[:-1]])
    pools = {}  # the images of a pool -> the labels sharing it
    for j in range(num):
        pool_rows = col_rows[col_start[j] : col_end[j]]
        if pool_rows.size:
            pools.setdefault(pool_rows.tobytes(), (pool_rows, []))[1].append(j)
    ap = np.zeros(num, dtype=np.float64)

    def work(pool):
        pool_rows, members = pool
        lengths = row_len[pool_rows]
        offsets = np.cumsum(lengths) - lengths
        index = np.repeat(row_start[pool_rows] - offsets, lengths)
        index += np.arange(index.size)
        ap[members] = _pooled_ap(score[index], positive[index])

    _map(work, pools.values(), num_threads)
    return ap, col_end > col_start


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
    num_threads = _resolve_threads(num_threads)
    _scan(scores, num_threads=num_threads)
    out = np.empty((scores.shape[0], k), dtype=np.int64)

    def work(span):
        out[span[0] : span[1]] = _top_k_block(scores[span[0] : span[1]], k)

    _map(work, _spans(scores.shape[0], rows_per_block(scores)), num_threads)
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
    num_threads = _resolve_threads(num_threads)
    (pos_img, _, pos_score), (top,) = _scan(
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
    num_threads = _resolve_threads(num_threads)
    (_, pos_col, pos_score), _ = _scan(scores, labels, (), num_threads)
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
    num_threads = _resolve_threads(num_threads)
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
            (ks, None if cols is None else _as_slice(cols))
            for _, cols in groups
        ]
    (img, col, q), tops = _scan(scores, labels, top_k, num_threads)
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
            ap, annotated = _biam_pooled_average_precision(
                scores, labels, cols, keep, num_threads
            )
            top = _TopK(
                scores,
                ks,
                None if cols is None else _as_slice(cols),
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
