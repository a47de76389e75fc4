"""BiAM's pooled average precision (`variant="biam_openimages"`).

BiAM's Open Images evaluation (`util_openimages.compute_AP`) computes,
for each label, one AP over every annotated entry of the images annotated
for it. Not the standard LESA number; `ranking_metrics.evaluate_scores`
uses it only on request.
"""

import numpy as np

from epsilon_tf.metrics.blocks import as_slice, concat, num_cols, thread_map
from epsilon_tf.metrics.checks import rows_per_block

# What "map" means under `variant="biam_openimages"`, in its results.
BIAM_POOLED_AP = (
    "BiAM's pooled AP (util_openimages.compute_AP): per label, one AP over "
    "every annotated entry of the images annotated for it"
)


def _annotated_entries(scores, labels, cols, rows):
    """Every annotated (+1/-1) entry of the images `rows` over `cols`.

    Returns `(score, positive, col, row_len)`: the entries in row-major
    order (score in the scores' dtype, positive bool, col indexing into
    `cols`) and the number of entries of each of those images.
    """
    cols = slice(None) if cols is None else as_slice(cols)
    step = rows_per_block(scores)
    parts = []
    for a in range(0, rows.size, step):
        r = as_slice(rows[a : a + step])
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
        concat([p[0] for p in parts], scores.dtype),
        concat([p[1] for p in parts], bool),
        concat([p[2] for p in parts], np.intp),
        concat([p[3] for p in parts], np.intp),
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


def biam_pooled_average_precision(scores, labels, cols, keep, num_threads):
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
    num = num_cols(scores, cols)
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

    thread_map(work, pools.values(), num_threads)
    return ap, col_end > col_start
