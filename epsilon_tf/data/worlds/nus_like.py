"""The realistic built-in benchmark: NUS-WIDE's labels on generated images.

`nus_like` keeps everything about NUS-WIDE that can be had without its
images: the real vocabulary (the 925 seen Flickr tags and the 81 unseen
concepts of `TagList1k.txt` / `Concepts81.txt`), the real GloVe-300 vectors
of the LESA release, and the release's feature shape (VGG19 `conv5_4` at
224x224: 14x14 regions of 512 ReLU channels). The images are generated,
from what real images and their features are like. The world was designed
once from the description below and committed before any model was tuned
on it (BUILD_NOTES.md, "The realistic benchmark"); it is never changed to
favour a model.

- **What a label looks like.** A label's visual prototype (a direction in
  the 512 channels, before the ReLU) is a fixed random two-layer network
  of its L2-normalized GloVe vector plus a label-specific random part of
  the same norm: the word vector explains about half of a label's
  appearance, non-linearly, so unseen labels are recognizable from their
  vectors, imperfectly. Each label has two appearance modes (like "apple"
  the fruit and the logo) that share the word-driven part.
- **Objects and scenes.** A label is an *object* (a blob a few regions wide
  at a random place, strong) or a *scene* (diffuse, weaker, over a band of
  rows such as the sky at the top or a field at the bottom, with smooth
  spatial variation). Each instance varies in appearance, size and
  strength.
- **Co-occurrence.** An image has one or two contexts; each starts from an
  anchor label (most often one of the 81 concepts, which are common,
  drawn by a log-normal popularity) and adds labels with a probability
  that grows steeply with their GloVe similarity to the anchor (and with
  the square root of their popularity): beaches come with palms, surf and
  sand. Some images show no concept.
- **Clutter and nuisance.** Images also hold unnamed things (objects that
  are in no vocabulary), a per-image style direction, per-region noise, a
  negative bias that makes the maps sparse after the ReLU, and a per-image
  exposure gain; values are non-negative with a heavy tail, like VGG's.
- **Tags are noisy, concepts are clean.** A quarter of the seen tags are
  not visual at all ("nikon", "explore"): they are attached at random by
  popularity. A visible thing is tagged only about half the time, and
  images get spurious tags of things not shown. The 81 concepts are
  annotated exactly (+1/-1), as NUS-WIDE's human annotations are. There
  are no 0 entries (the LESA release has none after the 75 concept tags
  are dropped). The test split's seen labels are tags too, as in LESA's
  GZSL protocol.

Write-once cache: `nus_like_source` writes the world under
`cache_dir/<key>/` (`epsilon_tf.data.worlds.world_cache`); the key covers the
config, the generator version and the bytes of the label files.
"""

import dataclasses
import functools
import hashlib
import json
import os

import numpy as np

from epsilon_tf import _validation as check
from epsilon_tf.data.readers import label_files
from epsilon_tf.data.worlds.world_cache import (
    GridWorld,
    WorldSpec,
    cached_world_source,
    check_split,
    chunked_examples,
    unit_rows,
)
from epsilon_tf.labels.label_space import l2_normalize_rows

GENERATOR_VERSION = 1
_CHUNK_SIZE = 128
_SPLIT_CODES = {"train": 1, "test": 2}
_WORLD_CODE = 0
LABEL_FILES = (
    "TagList1k.txt",
    "Concepts81.txt",
    "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300",
)


def default_label_dir():
    """`$EPSILON_SHARED_DATA/nus_wide`, else `../shared/data/nus_wide`.

    The second is relative to the project checkout (the directory holding
    the `epsilon_tf` package).

    Returns:
        str or None (not present).
    """
    shared = os.environ.get("EPSILON_SHARED_DATA")
    if not shared:
        package = os.path.dirname(os.path.abspath(__file__))
        shared = os.path.join(package, *[".."] * 4, "shared", "data")
    path = os.path.normpath(os.path.join(shared, "nus_wide"))
    return path if os.path.isdir(path) else None


@dataclasses.dataclass(frozen=True)
class NusLikeConfig(GridWorld):
    """Sizes and realism settings of the NUS-WIDE-like world.

    The realism settings were fixed once from the module's description;
    the sizes may be changed (tests use small worlds).

    Args:
        label_dir: str. Directory with `TagList1k.txt`, `Concepts81.txt`
            and the GloVe pickle (`../shared/data/nus_wide`, or the LESA
            release's `data/NUS_WIDE`). Required.
        num_train: int. Training images. Defaults to 8000.
        num_test: int. Test images. Defaults to 2000.
        grid_shape: tuple (rows, cols) of regions. Defaults to (14, 14).
        channels: int. Feature channels. Defaults to 512.
        seed: int. Seed of everything. Defaults to 0.

    Example:

    >>> config = NusLikeConfig(label_dir="../shared/data/nus_wide")
    >>> config.feature_shape
    (196, 512)
    """

    label_dir: str
    num_train: int = 8000
    num_test: int = 2000
    grid_shape: tuple = (14, 14)
    channels: int = 512
    seed: int = 0
    # Realism settings (see the module docstring); not tuned to any model.
    visual_residual: float = 1.0
    mode_residual: float = 0.5
    hidden_units: int = 256
    non_visual_fraction: float = 0.25
    object_fraction: float = 0.55
    popularity_sigma: float = 1.0
    cooccurrence_sharpness: float = 15.0
    concept_anchor_prob: float = 0.85
    second_context_prob: float = 0.35
    mean_extra_labels: float = 3.0
    max_labels_per_context: int = 6
    object_amplitude: float = 3.0
    scene_amplitude: float = 1.0
    instance_jitter: float = 0.45
    clutter_mean: float = 1.5
    num_clutter_prototypes: int = 300
    style_amplitude: float = 0.8
    region_noise: float = 0.6
    bias: float = -0.8
    exposure_sigma: float = 0.3
    feature_scale: float = 4.0
    tag_prob: float = 0.5
    mean_non_visual_tags: float = 1.5
    mean_spurious_tags: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "grid_shape", tuple(self.grid_shape))
        if not isinstance(self.label_dir, (str, os.PathLike)):
            raise ValueError(
                "`label_dir` must be a directory path. "
                f"Received: label_dir={self.label_dir!r}"
            )
        for name in ("num_train", "num_test", "channels", "hidden_units",
                     "max_labels_per_context", "num_clutter_prototypes"):
            check.positive_int(name, getattr(self, name))
        self._check_grid()

    def label_paths(self):
        """The three label files, checked to exist."""
        paths = [os.path.join(self.label_dir, n) for n in LABEL_FILES]
        for path in paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"The nus_like benchmark needs {os.path.basename(path)} "
                    f"in --label_dir={self.label_dir} (the NUS-WIDE label "
                    "lists and GloVe pickle, e.g. ../shared/data/nus_wide)"
                )
        return paths

    def cache_key(self):
        """A short hash of the config, generator and label-file bytes."""
        d = dataclasses.asdict(self)
        d.pop("label_dir")
        d["grid_shape"] = list(self.grid_shape)
        digest = hashlib.sha256()
        digest.update(
            json.dumps({"generator_version": GENERATOR_VERSION, **d},
                       sort_keys=True).encode("utf-8")
        )
        for path in self.label_paths():
            with open(path, "rb") as f:
                digest.update(f.read())
        return "nus_like-" + digest.hexdigest()[:16]




@dataclasses.dataclass(frozen=True)
class NusLikeWorld:
    """The fixed parameters of the world (not the images).

    Args:
        config: `NusLikeConfig`.
        label_space: `LabelSpace` (925 seen tags, then 81 concepts).
        modes: float32 [K, 2, C]. Unit pre-activation prototypes of the two
            appearance modes of every label.
        clutter: float32 [P, C]. Prototypes of unnamed things.
        is_object: bool [K].
        is_visual: bool [K]. False for the non-visual tags.
        popularity: float [K].
        scene_row: float [K]. Centre row (0 top, 1 bottom) of a scene's band.
        unit_vectors: float32 [K, E]. L2-normalized word vectors.
    """

    config: NusLikeConfig
    label_space: object
    modes: np.ndarray
    clutter: np.ndarray
    is_object: np.ndarray
    is_visual: np.ndarray
    popularity: np.ndarray
    scene_row: np.ndarray
    unit_vectors: np.ndarray


@functools.lru_cache(maxsize=4)
def nus_like_world(config):
    """Builds the `NusLikeWorld` of `config` (deterministic, cached)."""
    c = config
    tags, concepts, vectors = c.label_paths()
    space = label_files.nus_wide_label_space(tags, concepts, vectors)
    rng = np.random.default_rng(np.random.SeedSequence([c.seed, _WORLD_CODE]))
    k = len(space.names)
    num_seen = len(space.seen)
    unit = l2_normalize_rows(space.vectors).astype(np.float64)
    e = unit.shape[1]
    # A fixed random two-layer network: word space -> channel space.
    # Centring and scaling the inputs only sets the tanh's operating
    # range (a shift of the first layer's bias); unit-variance pre-acts.
    w1 = rng.standard_normal((e, c.hidden_units))
    b1 = 0.5 * rng.standard_normal(c.hidden_units)
    w2 = rng.standard_normal((c.hidden_units, c.channels))
    centred = unit - unit.mean(axis=0)
    hidden = np.tanh(centred / np.std(centred) @ w1 / np.sqrt(e) + b1)
    driven = unit_rows(hidden @ w2)
    label_part = unit_rows(rng.standard_normal((k, c.channels)))
    base = driven + c.visual_residual * label_part
    mode_parts = unit_rows(rng.standard_normal((k, 2, c.channels)))
    modes = unit_rows(base[:, None, :] + c.mode_residual * mode_parts)
    clutter = unit_rows(rng.standard_normal((c.num_clutter_prototypes,
                                         c.channels)))
    is_visual = np.ones(k, dtype=bool)
    is_visual[:num_seen] = rng.random(num_seen) >= c.non_visual_fraction
    is_object = rng.random(k) < c.object_fraction
    popularity = rng.lognormal(0.0, c.popularity_sigma, size=k)
    scene_row = rng.uniform(0.0, 1.0, size=k)
    world = NusLikeWorld(
        config=c,
        label_space=space,
        modes=modes.astype(np.float32),
        clutter=clutter.astype(np.float32),
        is_object=is_object,
        is_visual=is_visual,
        popularity=popularity,
        scene_row=scene_row,
        unit_vectors=unit.astype(np.float32),
    )
    for arr in (world.modes, world.clutter, world.is_object, world.is_visual,
                world.popularity, world.scene_row, world.unit_vectors):
        arr.setflags(write=False)
    return world


class _Sampler:
    """Draws the visible labels of one image."""

    def __init__(self, world):
        c = world.config
        self.c = c
        space = world.label_space
        self.visual = np.flatnonzero(world.is_visual)
        self.concepts = np.asarray(space.unseen)
        self.non_visual = np.flatnonzero(~world.is_visual)
        self.pop = world.popularity
        self.unit = world.unit_vectors

    def _pick(self, rng, candidates, weights):
        p = weights / weights.sum()
        return int(candidates[rng.choice(len(candidates), p=p)])

    def visible(self, rng):
        c = self.c
        present = []
        contexts = 2 if rng.random() < c.second_context_prob else 1
        for _ in range(contexts):
            if rng.random() < c.concept_anchor_prob:
                pool = self.concepts
            else:
                pool = self.visual
            anchor = self._pick(rng, pool, self.pop[pool])
            if anchor not in present:
                present.append(anchor)
            sim = self.unit[self.visual] @ self.unit[anchor]
            weights = np.sqrt(self.pop[self.visual]) * np.exp(
                c.cooccurrence_sharpness * (sim - 1.0)
            )
            extra = min(int(rng.poisson(c.mean_extra_labels)),
                        c.max_labels_per_context - 1)
            for _ in range(extra):
                weights[np.isin(self.visual, present)] = 0.0
                present.append(self._pick(rng, self.visual, weights))
        return present

    def non_visual_tags(self, rng):
        n = int(rng.poisson(self.c.mean_non_visual_tags))
        if n == 0 or self.non_visual.size == 0:
            return []
        w = self.pop[self.non_visual]
        return [self._pick(rng, self.non_visual, w) for _ in range(n)]


def _object_map(rng, rows, cols):
    """A blob's amplitude over the region grid (peak 1)."""
    r0 = rng.normal(0.5, 0.22) * (rows - 1)
    c0 = rng.normal(0.5, 0.22) * (cols - 1)
    radius = rng.uniform(0.06, 0.22) * max(rows, cols)
    rr, cc = np.mgrid[0:rows, 0:cols]
    d2 = ((rr - r0) ** 2 + (cc - c0) ** 2) / (2 * radius**2)
    amp = np.exp(-d2)
    amp[amp < 0.05] = 0.0
    return amp.reshape(-1)


def _scene_map(rng, rows, cols, centre_row):
    """A diffuse band over rows with smooth variation (mean about 1)."""
    width = rng.uniform(0.25, 0.6)
    centre = np.clip(centre_row + rng.normal(0, 0.1), 0, 1)
    y = np.linspace(0, 1, rows)[:, None]
    band = 1.0 / (1.0 + np.exp((np.abs(y - centre) - width) / 0.08))
    fx = rng.uniform(0.5, 2.0)
    phase = rng.uniform(0, 2 * np.pi)
    x = np.linspace(0, 1, cols)[None, :]
    wave = 1.0 + 0.3 * np.sin(2 * np.pi * fx * x + phase)
    return (band * wave).reshape(-1)


def compose_images(world, sampler, rng, count, n, placements=None):
    """The pre-activation region maps of `count` images and what they show.

    Shared by nus_like and the family's members (`family.py`), in the
    same order of random draws: noise, bias and style, then per image the
    visible labels (`sampler`), clutter, each thing's look and place, and
    the tags.

    Args:
        world: `NusLikeWorld`.
        sampler: `_Sampler` of `world`.
        rng: `np.random.Generator`, the chunk's stream.
        count: int. Images.
        n: int. Patch regions per image (rows * cols of the grid).
        placements: list or None. When given, one `(image, label,
            spatial)` tuple is appended per visible label placed on an
            image: `image` the row in this chunk, `label` the label's index,
            `spatial` float64 [n] its amplitude over the regions (0 where
            the thing is absent). Recording draws nothing: the returned
            arrays are the same with or without it.

    Returns:
        `(pre [count, n, C] float32, visible [count, K] bool, tags [count,
        seen] bool)`.
    """
    c = world.config
    rows, cols = c.grid_shape
    ch = c.channels
    k = len(world.label_space.names)
    num_seen = len(world.label_space.seen)
    pre = rng.standard_normal((count, n, ch), dtype=np.float32)
    pre *= np.float32(c.region_noise)
    pre += np.float32(c.bias)
    style = unit_rows(rng.standard_normal((count, ch)))
    style *= c.style_amplitude * rng.standard_normal((count, 1))
    pre += style[:, None, :].astype(np.float32)
    visible = np.zeros((count, k), dtype=bool)
    tags = np.zeros((count, num_seen), dtype=bool)
    for i in range(count):
        things = [(label, world.modes[label, rng.integers(2)])
                  for label in sampler.visible(rng)]
        for label, _ in things:
            visible[i, label] = True
        for _ in range(int(rng.poisson(c.clutter_mean))):
            things.append((-1, world.clutter[rng.integers(len(world.clutter))]))
        for label, proto in things:
            look = unit_rows(proto + c.instance_jitter
                         * unit_rows(rng.standard_normal(ch)))
            if label < 0 or world.is_object[label]:
                amp = c.object_amplitude * rng.uniform(0.6, 1.4)
                spatial = amp * _object_map(rng, rows, cols)
            else:
                amp = c.scene_amplitude * rng.uniform(0.6, 1.4)
                spatial = amp * _scene_map(rng, rows, cols,
                                           world.scene_row[label])
            pre[i] += np.outer(spatial, look).astype(np.float32)
            if placements is not None and label >= 0:
                placements.append((i, int(label), spatial))
        seen_visible = np.flatnonzero(visible[i, :num_seen])
        tagged = seen_visible[rng.random(seen_visible.size) < c.tag_prob]
        tags[i, tagged] = True
        tags[i, sampler.non_visual_tags(rng)] = True
        for _ in range(int(rng.poisson(c.mean_spurious_tags))):
            tags[i, rng.integers(num_seen)] = True
    return pre, visible, tags


def _generate_chunk(world, split, chunk_index, count, placements=None):
    c = world.config
    rng = np.random.default_rng(
        np.random.SeedSequence([c.seed, _SPLIT_CODES[split], chunk_index])
    )
    num_seen = len(world.label_space.seen)
    pre, visible, tags = compose_images(
        world, _Sampler(world), rng, count, c.num_regions, placements
    )
    np.maximum(pre, 0.0, out=pre)
    gain = c.feature_scale * rng.lognormal(0.0, c.exposure_sigma, count)
    pre *= gain[:, None, None].astype(np.float32)
    seen_labels = np.where(tags, 1, -1).astype(np.int8)
    if split == "train":
        labels = seen_labels
    else:
        unseen = np.where(visible[:, num_seen:], 1, -1).astype(np.int8)
        labels = np.concatenate([seen_labels, unseen], axis=1)
    return pre, labels, visible


def generate_split(config, split, return_visible=False):
    """Yields the examples of one split, deterministically.

    Args:
        config: `NusLikeConfig`.
        split: str. "train" (labels over the 925 seen tags) or "test"
            (labels over all 1,006 labels, seen first).
        return_visible: bool. Also yield the true visibility of every
            label as a bool [K] array. Defaults to False.

    Yields:
        `(image_id, features, labels)`: str, float32 [N, C], int8 [K'];
        with `return_visible`, a fourth item, bool [K].
    """
    check_split(split)
    world = nus_like_world(config)
    yield from chunked_examples(
        split,
        config.num_examples(split),
        _CHUNK_SIZE,
        functools.partial(_generate_chunk, world, split),
        return_visible,
    )


def nus_like_source(cache_dir, config, progress=True):
    """The NUS-WIDE-like benchmark as a `DatasetSource`, written once.

    Args:
        cache_dir: str. Directory holding the cached worlds.
        config: `NusLikeConfig`.
        progress: bool. Print progress while writing. Defaults to True.

    Returns:
        `DatasetSource` named "nus_like", `eval_ks=(3, 5)`.
    """
    if not isinstance(config, NusLikeConfig):
        raise ValueError(
            "`config` must be a `NusLikeConfig`. "
            f"Received: config={config!r}"
        )
    spec = WorldSpec(
        name="nus_like",
        cache_key=config.cache_key(),
        label_space=nus_like_world(config).label_space,
        feature_shape=config.feature_shape,
        num_examples={s: config.num_examples(s) for s in _SPLIT_CODES},
        generate=functools.partial(generate_split, config),
        eval_ks=(3, 5),
    )
    return cached_world_source(cache_dir, spec, progress)
