"""What the LESA and BiAM releases' files share: sizes and label layout.

Both releases store VGG19 conv5_4 features of 196 regions x 512 channels,
the NUS-WIDE seen tags and unseen concepts, and Open Images' seen labels
plus a 2,594-long unseen vector of which `top_400_unseen.csv` picks the
evaluated ones. A split named "test" gives labels over the whole label
space (seen values then unseen ones, arranged in the space's order); any
other split gives the seen labels.
"""

import numpy as np

DEFAULT_FEATURE_SHAPE = (196, 512)
NUS_WIDE_NUM_TAGS = 1000
OPEN_IMAGES_NUM_UNSEEN = 2594


def label_set_for(split):
    """The label set of a split: "all" for "test", "seen" for any other."""
    if not isinstance(split, str) or not split:
        raise ValueError(
            f"`split` must be a non-empty str. Received: split={split!r}"
        )
    return "all" if split == "test" else "seen"


def space_permutation(label_space):
    """Gather indices putting `[seen values, unseen values]` in space order.

    Returns None when the space already lists its seen labels first and
    its unseen labels after them, in index order.
    """
    order = np.concatenate([label_space.seen, label_space.unseen])
    if sorted(order.tolist()) != list(range(label_space.num_labels)):
        raise ValueError(
            "The label space's seen and unseen indices must together cover "
            f"every label once. Received {len(label_space.seen)} seen + "
            f"{len(label_space.unseen)} unseen for "
            f"{label_space.num_labels} labels"
        )
    perm = np.argsort(order)
    return None if np.array_equal(perm, np.arange(len(perm))) else perm


def check_top_unseen(top_unseen_indices, label_space, num_unseen_total):
    """The evaluated unseen columns as int64, checked against the space.

    Args:
        top_unseen_indices: ints. Indices into the release's full unseen
            list (2,594 for Open Images) of the evaluated unseen labels.
        label_space: `LabelSpace`. Must have one unseen label per index.
        num_unseen_total: int. Length of the full unseen list.
    """
    top = np.asarray(top_unseen_indices, dtype=np.int64).reshape(-1)
    if len(top) != len(label_space.unseen):
        raise ValueError(
            "`top_unseen_indices` must have one entry per unseen label. "
            f"Received {len(top)} entries for {len(label_space.unseen)} "
            "unseen labels"
        )
    if top.size and (top.min() < 0 or top.max() >= num_unseen_total):
        raise ValueError(
            "`top_unseen_indices` must lie in [0, num_unseen_total="
            f"{num_unseen_total}). Received: min={top.min()}, "
            f"max={top.max()}"
        )
    return top
