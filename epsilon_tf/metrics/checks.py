"""Checks of the metrics' inputs: score and label arrays, K, counts.

Each check raises a `ValueError` that names the argument, what it must be
and what was received (for bad values: how many and the first position).
Large arrays (possibly `np.memmap`) are checked in row blocks of about
`ROW_BLOCK_BYTES`, the same blocks `ranking_metrics` works in.
"""

import numpy as np

# Bytes of one row block (validation, positives, top-K).
ROW_BLOCK_BYTES = 2 * 2**20


def as_score_array(scores, name="scores"):
    """`scores` as a 2-D floating ndarray (memmaps stay memory-mapped)."""
    if isinstance(scores, np.memmap):
        scores = scores.view(np.ndarray)
    else:
        scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array [num_images, num_labels]. "
            f"Received: {name}.shape={scores.shape}"
        )
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(
            f"`{name}` must hold at least one image and one label. "
            f"Received: {name}.shape={scores.shape}"
        )
    if scores.dtype == np.float16:
        scores = scores.astype(np.float32)
    elif scores.dtype.kind in "biu":
        scores = scores.astype(np.float64)
    elif scores.dtype.kind != "f":
        raise ValueError(
            f"`{name}` must be a real-valued array. "
            f"Received: {name}.dtype={scores.dtype}"
        )
    return scores


def block_rows(row_bytes):
    """Rows of `row_bytes` bytes each in one row block (at least 1)."""
    return max(1, ROW_BLOCK_BYTES // max(1, row_bytes))


def rows_per_block(array):
    """Rows of the 2-D `array` in one row block (at least 1)."""
    return block_rows(array.shape[1] * array.dtype.itemsize)


def raise_non_finite(scores, start=0, name="scores"):
    """Raises naming the count and first position of NaN/inf (if any)."""
    step = rows_per_block(scores)
    count, first = 0, None
    for s in range(start, scores.shape[0], step):
        bad = ~np.isfinite(scores[s : s + step])
        c = int(np.count_nonzero(bad))
        if c and first is None:
            i, j = np.unravel_index(int(np.argmax(bad)), bad.shape)
            first = (s + int(i), int(j))
        count += c
    if first is None:
        return
    raise ValueError(
        f"`{name}` must contain only finite values. Received: {name} with "
        f"{count} non-finite value(s), the first at {list(first)} "
        f"({scores[first]})"
    )


def raise_bad_labels(labels, start=0, name="labels"):
    """Raises naming the count and first position of values not in {-1,0,1}."""
    step = rows_per_block(labels)
    count, first, value = 0, None, None
    for s in range(start, labels.shape[0], step):
        block = np.asarray(labels[s : s + step])
        bad = ~((block == -1) | (block == 0) | (block == 1))
        c = int(np.count_nonzero(bad))
        if c and first is None:
            i, j = np.unravel_index(int(np.argmax(bad)), bad.shape)
            first = (s + int(i), int(j))
            value = block[i, j]
        count += c
    raise ValueError(
        f"`{name}` must only contain -1, 0 and +1. Received: {name} with "
        f"{count} value(s) outside {{-1, 0, 1}}, the first at "
        f"{list(first)} ({value})"
    )


def as_label_array(labels, shape, name="labels", check_int8=True):
    """`labels` as int8 [shape], validated; int8 inputs are not copied.

    With `check_int8=False` an int8 input is returned unchecked (the caller
    checks it, e.g. in `top_k.scan`).
    """
    if isinstance(labels, np.memmap):
        labels = labels.view(np.ndarray)
    else:
        labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise ValueError(
            f"`{name}` must have the same shape as the scores {tuple(shape)}."
            f" Received: {name}.shape={labels.shape}"
        )
    if labels.dtype.kind not in "biuf":
        raise ValueError(
            f"`{name}` must be numeric with values in {{-1, 0, 1}}. "
            f"Received: {name}.dtype={labels.dtype}"
        )
    step = rows_per_block(labels)
    n = labels.shape[0]
    if labels.dtype == np.int8:
        if check_int8:
            for start in range(0, n, step):
                block = labels[start : start + step]
                if block.min() < -1 or block.max() > 1:
                    raise_bad_labels(labels, start, name)
        return labels
    out = np.empty(labels.shape, dtype=np.int8)
    for start in range(0, n, step):
        block = labels[start : start + step]
        if not ((block == -1) | (block == 0) | (block == 1)).all():
            raise_bad_labels(labels, start, name)
        out[start : start + step] = block
    return out


def check_k(k, num_labels, name="k"):
    if (
        isinstance(k, (bool, np.bool_))
        or not isinstance(k, (int, np.integer))
        or k < 1
        or k > num_labels
    ):
        raise ValueError(
            f"`{name}` must be a positive integer <= the number of ranked "
            f"labels ({num_labels}). Received: {name}={k!r}"
        )
    return int(k)


def check_ks(ks, num_labels):
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = (ks,)
    try:
        ks = tuple(ks)
    except TypeError:
        raise ValueError(
            "`ks` must be a non-empty sequence of positive integers. "
            f"Received: ks={ks!r}"
        ) from None
    if not ks:
        raise ValueError(
            "`ks` must be a non-empty sequence of positive integers. "
            f"Received: ks={ks!r}"
        )
    out = []
    for k in ks:
        try:
            out.append(check_k(k, num_labels, "k"))
        except ValueError:
            raise ValueError(
                "`ks` must hold positive integers <= the number of ranked "
                f"labels ({num_labels}). Received: ks={ks!r}"
            ) from None
    return tuple(out)


def check_positive_int_or_none(value, name):
    if value is None:
        return None
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or value < 1
    ):
        raise ValueError(
            f"`{name}` must be a positive integer or None. "
            f"Received: {name}={value!r}"
        )
    return int(value)
