"""How complete a region map is: the share of a label's true regions it ranks
first (the measured form of the Epsilon paper's Figure 1 claim).

For one image and one label placed on k of its P regions, a model's map
over the P regions is complete when its k highest regions are the label's
k regions. The share is (true regions among the map's top k) / k: 1 for
the truth itself, k / P in expectation for a map that ranks the regions at
random, which is also what a constant map gets (ties are split evenly).

NumPy only; nothing here knows where the maps or the truth come from.
"""

import numpy as np


def _check(maps, truth):
    maps = np.asarray(maps, np.float64)
    truth = np.asarray(truth)
    if truth.dtype != bool:
        raise ValueError(
            f"`truth` must be a bool array. Received: dtype={truth.dtype}"
        )
    if maps.ndim != 2 or maps.shape != truth.shape:
        raise ValueError(
            "`maps` and `truth` must both be [pairs, regions] of one shape. "
            f"Received: maps {maps.shape}, truth {truth.shape}"
        )
    if not np.all(np.isfinite(maps)):
        bad = int(np.flatnonzero(~np.isfinite(maps).all(axis=1))[0])
        raise ValueError(f"`maps` row {bad} holds a NaN or infinite value")
    k = truth.sum(axis=1)
    if np.any(k == 0):
        bad = int(np.flatnonzero(k == 0)[0])
        raise ValueError(
            f"`truth` row {bad} marks no region: every pair needs at least "
            "one true region"
        )
    return maps, truth, k


def top_k_shares(maps, truth):
    """Each pair's share of its k true regions among the map's top k.

    A region tied with the k-th highest value counts fractionally: the
    free top-k slots are shared among the tied regions, so the result is
    the expectation over random tie-breaking (a constant map gets k / P).

    Args:
        maps: float array [M, P]. One map over the P regions per pair
            (image, label); higher is "more the label".
        truth: bool array [M, P]. The regions the label lies on (at least
            one per pair).

    Returns:
        float64 array [M] in [0, 1].

    Example:

    >>> top_k_shares([[0.9, 0.1, 0.5, 0.2]], [[True, False, False, True]])
    array([0.5])
    """
    maps, truth, k = _check(maps, truth)
    rows = np.arange(maps.shape[0])
    ordered = -np.sort(-maps, axis=1)
    kth = ordered[rows, k - 1][:, None]
    above = maps > kth
    tied = maps == kth
    slots = k - above.sum(axis=1)
    true_tied = (tied & truth).sum(axis=1)
    expected = (above & truth).sum(axis=1) + slots * true_tied / tied.sum(
        axis=1
    )
    return expected / k


def completeness(maps, truth):
    """The mean over pairs of `top_k_shares(maps, truth)`.

    Args:
        maps: float array [M, P] (see `top_k_shares`).
        truth: bool array [M, P].

    Returns:
        float in [0, 1]: 1 when every map ranks its label's regions first.
    """
    return float(np.mean(top_k_shares(maps, truth)))


def chance_completeness(truth):
    """The expected completeness of maps that rank regions at random.

    Args:
        truth: bool array [M, P] (at least one true region per row).

    Returns:
        float: the mean over pairs of k / P.
    """
    truth = np.asarray(truth)
    _, truth, k = _check(np.zeros(truth.shape), truth)
    return float(np.mean(k / truth.shape[1]))
