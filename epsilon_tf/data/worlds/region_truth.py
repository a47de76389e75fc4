"""Where each object label lies in a generated image: the region truth.

The generator of every release-shaped world (`nus_like` and the family's
members) places each visible label on the region grid: an *object* as a
blob a few regions wide (`nus_like._object_map`, amplitude cut to 0 below
5% of its peak), a *scene* as a diffuse band over rows. Which kind a label
is was drawn once per world (`NusLikeWorld.is_object`, a share
`object_fraction` of the labels); scenes cover most of a band of rows and
are not localized, so they have no region truth here.

`object_regions` re-runs the very chunk generator that wrote the records
(`nus_like._generate_chunk` or `family._generate_chunk`, same seeds, same
draws) and asks it to record each placement as it is made
(`compose_images(..., placements=...)`), so the truth is the records' own
by construction; the records are unchanged (recording draws nothing).

Regions are indexed row-major over the `grid_shape` patches. A member with
a CLS token (`vit_tokens`) stores it as token 0 before the patches, so
patch region r is the record's token r + 1 (`RegionTruth.token_offset`).
"""

import dataclasses

import numpy as np

from epsilon_tf import _validation as check
from epsilon_tf.data.worlds import family, nus_like
from epsilon_tf.data.worlds.world_cache import check_split


@dataclasses.dataclass(frozen=True)
class RegionTruth:
    """The true regions of every (image, object label) pair of a split.

    Args:
        image_index: int [M]. The image's position in the split (its id is
            `<split>_<index:06d>`, the records' order).
        label: int [M]. The label's index in the world's label space (seen
            labels first, then the unseen ones).
        amplitude: float32 [M, P]. The label's amplitude on each patch
            region (P = rows * cols of `grid_shape`) relative to its
            largest on the grid: 1 at the blob's strongest region, 0 where
            it was not placed.
        grid_shape: (rows, cols) of the P regions.
        token_offset: int. 1 when the records hold a CLS token before the
            patches, else 0.
        dropped: int. Visible object labels whose blob fell entirely off
            the grid (no region above the cut): not in the pairs.
    """

    image_index: np.ndarray
    label: np.ndarray
    amplitude: np.ndarray
    grid_shape: tuple
    token_offset: int
    dropped: int

    @property
    def num_pairs(self):
        return int(self.label.shape[0])

    @property
    def mask(self):
        """bool [M, P]: every region the label was placed on."""
        return self.amplitude > 0

    def core(self, share):
        """bool [M, P]: the regions at `share` of the blob's largest or more.

        `core(0.5)` is the blob's half-maximum area; every pair keeps at
        least its strongest region.
        """
        share = float(share)
        if not 0.0 < share <= 1.0:
            raise ValueError(
                f"`share` must be in (0, 1]. Received: share={share!r}"
            )
        return self.amplitude >= np.float32(share)

    def regions(self, pair):
        """The region indices (row-major) of pair `pair`."""
        return np.flatnonzero(self.mask[pair])


def world_of(config):
    """The `NusLikeWorld` of a `NusLikeConfig` or `FamilyConfig`."""
    if isinstance(config, family.FamilyConfig):
        return family.family_world(config)
    if isinstance(config, nus_like.NusLikeConfig):
        return nus_like.nus_like_world(config)
    raise ValueError(
        "`config` must be a `NusLikeConfig` or `FamilyConfig` (a world of "
        f"the family). Received: {type(config).__name__}"
    )


def _chunk_generator(config):
    if isinstance(config, family.FamilyConfig):
        return family._generate_chunk
    return nus_like._generate_chunk


def object_regions(config, split="test", num_images=None):
    """The region truth of every visible object label of a split's images.

    Args:
        config: `NusLikeConfig` or `FamilyConfig` (e.g.
            `family.member_config(name, label_dir, num_test=...)`): the
            config the records were written with.
        split: str. "test" (default) or "train".
        num_images: int or None. Only the split's first `num_images`
            images (None: all).

    Returns:
        `RegionTruth`, pairs in image order, then in the order the
        generator placed the labels.
    """
    check_split(split)
    world = world_of(config)
    generate_chunk = _chunk_generator(config)
    total = config.num_examples(split)
    if num_images is not None:
        total = min(total, check.positive_int("num_images", num_images))
    rows, cols = config.grid_shape
    chunk = nus_like._CHUNK_SIZE
    images, labels, amplitudes = [], [], []
    dropped = 0
    for chunk_index, start in enumerate(range(0, total, chunk)):
        # The chunk's random stream depends on its size: always generate
        # the whole chunk the records were written from.
        count = min(chunk, config.num_examples(split) - start)
        placed = []
        generate_chunk(world, split, chunk_index, count, placements=placed)
        for i, label, spatial in placed:
            if start + i >= total or not world.is_object[label]:
                continue
            peak = float(np.max(spatial))
            if peak <= 0:
                dropped += 1
                continue
            images.append(start + i)
            labels.append(label)
            amplitudes.append((np.asarray(spatial) / peak).astype(np.float32))
    return RegionTruth(
        image_index=np.asarray(images, np.int64),
        label=np.asarray(labels, np.int64),
        amplitude=(np.stack(amplitudes) if amplitudes
                   else np.zeros((0, rows * cols), np.float32)),
        grid_shape=(rows, cols),
        token_offset=int(getattr(config, "cls_token", False)),
        dropped=dropped,
    )
