"""The row-block scan of a score matrix and its exact top-K.

`scan` makes one pass over row blocks: it validates the scores and
labels, lists every +1 entry and fills each `TopK` with the images' K-th
largest scores. `TopK` counts the true positives of every image's top-K
with the stable-sort tie rule (among equal scores the lower label index
ranks first); `top_k_block` returns the indices themselves.
`epsilon_tf.metrics.ranking_metrics` builds the public metrics on them.
"""

import threading

import numpy as np

from epsilon_tf.metrics.blocks import concat, num_cols, spans, thread_map
from epsilon_tf.metrics.checks import (
    block_rows,
    raise_bad_labels,
    raise_non_finite,
    rows_per_block,
)


def scan(scores, labels=None, top_k=(), num_threads=1):
    """One pass over row blocks: validation, positives and top-K thresholds.

    Validates `scores` (finite) and `labels` (in {-1, 0, 1}), lists every
    +1 entry and, for each `(ks, cols)` in `top_k`, fills a `TopK` with
    each image's K-th largest scores over the labels `cols` (None: all).

    Returns `((img, col, score), [TopK, ...])`: the +1 entries in
    row-major order (intp, intp, scores dtype; empty without `labels`).
    """
    n = scores.shape[0]
    groups = [TopK(scores, ks, cols, None) for ks, cols in top_k]
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

    results = thread_map(work, spans(n, step), num_threads)
    if labels is None:
        return None, groups
    for t, group in enumerate(groups):
        group.tp = np.sum([r[3][t] for r in results], axis=0)
    positives = (
        concat([r[0] for r in results], np.intp),
        concat([r[1] for r in results], np.intp),
        concat([r[2] for r in results], scores.dtype),
    )
    return positives, groups


def stable_top_mask(block, kth, k):
    """Mask of each row's top-`k`, given its k-th largest value `kth`.

    Scores above `kth` are in; among scores equal to it, the lowest label
    indices fill the remaining places (the stable-sort rule).
    """
    kth = kth[:, None]
    above = block > kth
    equal = block == kth
    need = k - np.count_nonzero(above, axis=1)
    return above | (equal & (np.cumsum(equal, axis=1) <= need[:, None]))


def top_k_block(block, k):
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
        chosen = stable_top_mask(sub, vals[redo, k - 1], k)
        idx = np.nonzero(chosen)[1].reshape(redo.size, k)
        sel = np.take_along_axis(sub, idx, axis=1)
        order = np.argsort(-sel, axis=1, kind="stable")
        cand[redo, :k] = np.take_along_axis(idx, order, axis=1)
    return cand[:, :k]


class TopK:
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
        self.num_labels = num_cols(scores, cols)
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
                chosen = stable_top_mask(block[redo], kth[redo], k)
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

        results = thread_map(work, spans(self.num_rows, size), num_threads)
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
