"""The built-in benchmark: a seeded, NUS-WIDE-like synthetic world.

The world is generated from `SyntheticConfig` alone, deterministically:

- **Labels and themes.** `num_seen + num_unseen` labels, each belonging to
  one of `num_themes` themes (balanced; every theme gets unseen labels when
  there are at least as many unseen labels as themes). Names look like
  `"t03_label017"` (theme 3, label 17 of the space); seen labels come first.
- **Word vectors** (`embedding_dim`): a direction shared by every label (as
  GloVe vectors share one), plus the label's theme direction, plus a
  label-specific part. Labels of one theme therefore cluster.
- **Visual prototypes** (`channels`): a fixed random linear map of the word
  vector plus a smaller label-specific random part, so the word vector
  explains most but not all of a label's appearance; unseen labels are
  recognizable from their word vectors, imperfectly.
- **Images**: `grid_shape` region maps of `channels` features. Each image
  picks 1-2 themes, then 1-5 labels, mostly from those themes (a few at
  random). Most images show one broadly used unseen label (a "concept",
  like NUS-WIDE's 81 concepts); a few show none. Every label is either an
  *object* (1-4 contiguous regions, strong) or a *scene* (diffuse, weak,
  over every region); the kind is fixed per label. Background: per-region
  noise plus a per-image nuisance direction; the map goes through a ReLU,
  like VGG `conv5` features.
- **Annotations** are noisy like Flickr tags for the seen labels (missing
  tags, false tags, a few unknown entries) and clean for the unseen labels
  (human-annotated, like NUS-WIDE's concepts). Training splits carry the
  seen labels only; test splits carry every label.

The realism knobs are fixed by that description and are *not* tuned to
favour any model: the world is what it is.

`synthetic_source` writes the world once into the project's native TFRecord
format under `cache_dir/<config hash>/` and returns a `DatasetSource`.
"""

import dataclasses
import functools
import hashlib
import json

import numpy as np

from epsilon_tf import _validation as check
from epsilon_tf.data.worlds.world_cache import (
    GridWorld,
    WorldSpec,
    cached_world_source,
    check_split,
    chunked_examples,
    unit_rows,
)
from epsilon_tf.labels import LabelSpace

# Bump when the generator changes in a way that changes its output: the
# cache key includes it, so stale caches are never reused.
GENERATOR_VERSION = 1

# Images generated per random stream; part of the generator, not the config.
_CHUNK_SIZE = 256

_SPLIT_CODES = {"train": 1, "test": 2}
_WORLD_CODE = 0


@dataclasses.dataclass(frozen=True)
class SyntheticConfig(GridWorld):
    """Sizes and realism settings of the synthetic world.

    The defaults write in well under 20 s and let a small model train in a
    couple of minutes on two CPU cores.

    Args:
        num_themes: int. Number of themes labels belong to. Defaults to 12.
        num_seen: int. Number of seen (training) labels. Defaults to 250.
        num_unseen: int. Number of unseen labels. Defaults to 40.
        embedding_dim: int. Word-vector dimension. Defaults to 64.
        grid_shape: tuple (rows, cols). Region grid of a feature map; the
            map has `rows * cols` regions. Defaults to (7, 7).
        channels: int. Feature channels per region. Defaults to 64.
        num_train: int. Training images. Defaults to 6000.
        num_test: int. Test images. Defaults to 2000.
        seed: int. Seed of everything. Defaults to 0.
        common_weight: float. Weight of the direction shared by every word
            vector. Defaults to 0.3.
        theme_weight: float. Weight of the theme direction in a word
            vector. Defaults to 0.8.
        label_word_weight: float. Weight of the label-specific part of a
            word vector. Defaults to 0.6.
        visual_residual: float. Norm of the label-specific random part of a
            visual prototype relative to the (unit) word-vector-driven part.
            Defaults to 0.5 (the word vector explains ~80% of it).
        object_fraction: float. Probability that a label is an object
            (else a scene). Defaults to 0.6.
        max_object_regions: int. Objects cover 1..this many contiguous
            regions. Defaults to 4.
        object_amplitude: float. Strength of an object on a region.
            Defaults to 3.0.
        object_jitter: float. Per-instance variation of an object's
            appearance (relative norm). Defaults to 0.3.
        scene_amplitude: float. Strength of a scene on every region.
            Defaults to 0.8.
        region_noise: float. Per-channel std of the region noise.
            Defaults to 0.35.
        nuisance_amplitude: float. Std of the per-image nuisance direction
            added to every region. Defaults to 1.0.
        relu: bool. Apply a ReLU to the feature map. Defaults to True.
        max_themes_per_image: int. Images pick 1..this many themes.
            Defaults to 2.
        max_labels_per_image: int. Images show 1..this many labels.
            Defaults to 5.
        off_theme_prob: float. Probability that a label is drawn from the
            whole vocabulary instead of the image's themes. Defaults to 0.1.
        concept_prob: float. Probability that an image shows an unseen
            label drawn first (NUS-WIDE's concepts are common); other draws
            may add more. Defaults to 0.9.
        popularity_sigma: float. Log-normal spread of label popularity.
            Defaults to 0.75.
        missing_tag_prob: float. A present seen label is annotated -1.
            Defaults to 0.15.
        false_tag_prob: float. An absent seen label is annotated +1.
            Defaults to 0.001.
        unknown_prob: float. A seen-label entry is annotated 0.
            Defaults to 0.02.

    Example:

    >>> config = SyntheticConfig(num_train=500, num_test=200)
    >>> config.feature_shape
    (49, 64)
    """

    num_themes: int = 12
    num_seen: int = 250
    num_unseen: int = 40
    embedding_dim: int = 64
    grid_shape: tuple = (7, 7)
    channels: int = 64
    num_train: int = 6000
    num_test: int = 2000
    seed: int = 0
    common_weight: float = 0.3
    theme_weight: float = 0.8
    label_word_weight: float = 0.6
    visual_residual: float = 0.5
    object_fraction: float = 0.6
    max_object_regions: int = 4
    object_amplitude: float = 3.0
    object_jitter: float = 0.3
    scene_amplitude: float = 0.8
    region_noise: float = 0.35
    nuisance_amplitude: float = 1.0
    relu: bool = True
    max_themes_per_image: int = 2
    max_labels_per_image: int = 5
    off_theme_prob: float = 0.1
    concept_prob: float = 0.9
    popularity_sigma: float = 0.75
    missing_tag_prob: float = 0.15
    false_tag_prob: float = 0.001
    unknown_prob: float = 0.02

    def __post_init__(self):
        object.__setattr__(self, "grid_shape", tuple(self.grid_shape))
        for name in (
            "num_themes",
            "num_seen",
            "num_unseen",
            "embedding_dim",
            "channels",
            "num_train",
            "num_test",
            "max_object_regions",
            "max_themes_per_image",
            "max_labels_per_image",
        ):
            check.positive_int(name, getattr(self, name))
        self._check_grid()
        if self.max_themes_per_image > self.num_themes:
            raise ValueError(
                "`max_themes_per_image` cannot exceed `num_themes`. "
                f"Received: max_themes_per_image={self.max_themes_per_image}"
                f", num_themes={self.num_themes}"
            )
        if self.max_labels_per_image > self.num_labels:
            raise ValueError(
                "`max_labels_per_image` cannot exceed the number of labels. "
                f"Received: max_labels_per_image={self.max_labels_per_image}"
            )
        for name in (
            "object_fraction",
            "off_theme_prob",
            "concept_prob",
            "missing_tag_prob",
            "false_tag_prob",
            "unknown_prob",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(
                    f"`{name}` must be a probability in [0, 1]. "
                    f"Received: {name}={value!r}"
                )
        for name in (
            "common_weight",
            "theme_weight",
            "label_word_weight",
            "visual_residual",
            "object_amplitude",
            "object_jitter",
            "scene_amplitude",
            "region_noise",
            "nuisance_amplitude",
            "popularity_sigma",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(
                    f"`{name}` must be a non-negative number. "
                    f"Received: {name}={value!r}"
                )

    @property
    def num_labels(self):
        return self.num_seen + self.num_unseen

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["grid_shape"] = list(self.grid_shape)
        return d

    def cache_key(self):
        """A short hash of the config and the generator version."""
        payload = json.dumps(
            {"generator_version": GENERATOR_VERSION, **self.to_dict()},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class SyntheticWorld:
    """The fixed parameters of a synthetic world (not the images).

    Args:
        config: `SyntheticConfig`.
        names: tuple of str. Label names, seen first.
        word_vectors: float32 [K, E].
        visual_map: float32 [C, E]. The linear map from word space to
            channel space that drives the visual prototypes.
        prototypes: float32 [K, C]. Unit-norm visual prototypes.
        themes: int [K]. Theme of each label.
        is_object: bool [K]. True for object labels, False for scenes.
        popularity: float [K]. Relative sampling weight of each label.
    """

    config: SyntheticConfig
    names: tuple
    word_vectors: np.ndarray
    visual_map: np.ndarray
    prototypes: np.ndarray
    themes: np.ndarray
    is_object: np.ndarray
    popularity: np.ndarray


@functools.lru_cache(maxsize=8)
def synthetic_world(config):
    """Builds the `SyntheticWorld` of `config` (deterministic, cached)."""
    c = config
    rng = np.random.default_rng(np.random.SeedSequence([c.seed, _WORLD_CODE]))
    k, e, ch = c.num_labels, c.embedding_dim, c.channels
    themes = np.concatenate(
        [
            rng.permutation(np.arange(c.num_seen) % c.num_themes),
            rng.permutation(np.arange(c.num_unseen) % c.num_themes),
        ]
    )
    common = unit_rows(rng.standard_normal(e))
    theme_dirs = unit_rows(rng.standard_normal((c.num_themes, e)))
    specific = unit_rows(rng.standard_normal((k, e)))
    word_vectors = (
        c.common_weight * common
        + c.theme_weight * theme_dirs[themes]
        + c.label_word_weight * specific
    )
    visual_map = rng.standard_normal((ch, e)) / np.sqrt(e)
    driven = unit_rows(word_vectors @ visual_map.T)
    residual = unit_rows(rng.standard_normal((k, ch)))
    prototypes = unit_rows(driven + c.visual_residual * residual)
    is_object = rng.random(k) < c.object_fraction
    popularity = rng.lognormal(0.0, c.popularity_sigma, size=k)
    tw = max(2, len(str(c.num_themes - 1)))
    lw = max(3, len(str(k - 1)))
    names = tuple(f"t{themes[i]:0{tw}d}_label{i:0{lw}d}" for i in range(k))
    world = SyntheticWorld(
        config=c,
        names=names,
        word_vectors=word_vectors.astype(np.float32),
        visual_map=visual_map.astype(np.float32),
        prototypes=prototypes.astype(np.float32),
        themes=themes.astype(np.int64),
        is_object=is_object,
        popularity=popularity,
    )
    for arr in (
        world.word_vectors,
        world.visual_map,
        world.prototypes,
        world.themes,
        world.is_object,
        world.popularity,
    ):
        arr.setflags(write=False)
    return world


def synthetic_label_space(config=None):
    """The `LabelSpace` of the world: names, word vectors, seen first."""
    config = SyntheticConfig() if config is None else config
    world = synthetic_world(config)
    return LabelSpace.from_arrays(
        world.names, world.word_vectors, seen=np.arange(config.num_seen)
    )


class _Sampler:
    """Draws the present labels of one image."""

    def __init__(self, world):
        c = world.config
        self.c = c
        self.pop = world.popularity / world.popularity.sum()
        self.theme_labels = [
            np.flatnonzero(world.themes == t) for t in range(c.num_themes)
        ]
        unseen = np.arange(c.num_seen, c.num_labels)
        self.all_unseen = unseen
        self.theme_unseen = [
            unseen[world.themes[unseen] == t] for t in range(c.num_themes)
        ]

    def _draw(self, rng, candidates):
        p = self.pop[candidates]
        return int(candidates[rng.choice(len(candidates), p=p / p.sum())])

    def sample(self, rng):
        c = self.c
        n_themes = int(rng.integers(1, c.max_themes_per_image + 1))
        themes = rng.choice(c.num_themes, size=n_themes, replace=False)
        n_labels = int(rng.integers(1, c.max_labels_per_image + 1))
        pool = np.concatenate([self.theme_labels[t] for t in themes])
        present = []
        if rng.random() < c.concept_prob and self.all_unseen.size:
            concepts = np.concatenate([self.theme_unseen[t] for t in themes])
            if concepts.size == 0:
                concepts = self.all_unseen
            present.append(self._draw(rng, concepts))
        everything = np.arange(c.num_labels)
        for _ in range(8 * c.max_labels_per_image):
            if len(present) >= n_labels:
                break
            if rng.random() < c.off_theme_prob:
                label = self._draw(rng, everything)
            else:
                label = self._draw(rng, pool)
            if label not in present:
                present.append(label)
        return present


def _contiguous_regions(rng, grid_shape, size):
    """`size` distinct 4-connected cells of the grid, as flat indices."""
    rows, cols = grid_shape
    start = (int(rng.integers(rows)), int(rng.integers(cols)))
    cells = [start]
    for _ in range(size - 1):
        frontier = []
        for r, q in cells:
            for nr, nq in ((r - 1, q), (r + 1, q), (r, q - 1), (r, q + 1)):
                if 0 <= nr < rows and 0 <= nq < cols:
                    if (nr, nq) not in cells and (nr, nq) not in frontier:
                        frontier.append((nr, nq))
        if not frontier:
            break
        cells.append(frontier[int(rng.integers(len(frontier)))])
    return [r * cols + q for r, q in cells]


def _annotate_seen(rng, present_mask, c):
    """Flickr-like noisy +1/-1/0 annotations of the seen labels."""
    labels = np.where(present_mask, 1, -1).astype(np.int8)
    u = rng.random(present_mask.shape)
    missing = present_mask & (u < c.missing_tag_prob)
    false = ~present_mask & (u < c.false_tag_prob)
    labels[missing] = -1
    labels[false] = 1
    unknown = rng.random(present_mask.shape) < c.unknown_prob
    labels[unknown] = 0
    return labels


def _generate_chunk(world, split, chunk_index, count):
    c = world.config
    rng = np.random.default_rng(
        np.random.SeedSequence([c.seed, _SPLIT_CODES[split], chunk_index])
    )
    sampler = _Sampler(world)
    n, ch = c.num_regions, c.channels
    feats = rng.standard_normal((count, n, ch), dtype=np.float32)
    feats *= np.float32(c.region_noise)
    nuisance = unit_rows(rng.standard_normal((count, ch)))
    nuisance *= c.nuisance_amplitude * rng.standard_normal((count, 1))
    feats += nuisance[:, None, :].astype(np.float32)
    present = np.zeros((count, c.num_labels), dtype=bool)
    for i in range(count):
        for label in sampler.sample(rng):
            present[i, label] = True
            proto = world.prototypes[label]
            if world.is_object[label]:
                size = int(rng.integers(1, c.max_object_regions + 1))
                regions = _contiguous_regions(rng, c.grid_shape, size)
                look = proto + c.object_jitter * unit_rows(
                    rng.standard_normal(ch)
                )
                look = unit_rows(look)
                amps = c.object_amplitude * rng.uniform(
                    0.7, 1.3, size=(len(regions), 1)
                )
                feats[i, regions] += (amps * look).astype(np.float32)
            else:
                amps = (
                    c.scene_amplitude
                    * rng.uniform(0.7, 1.3)
                    * rng.uniform(0.5, 1.5, size=(n, 1))
                )
                feats[i] += (amps * proto).astype(np.float32)
    if c.relu:
        np.maximum(feats, 0.0, out=feats)
    seen_labels = _annotate_seen(rng, present[:, : c.num_seen], c)
    if split == "train":
        labels = seen_labels
    else:
        unseen = np.where(present[:, c.num_seen :], 1, -1).astype(np.int8)
        labels = np.concatenate([seen_labels, unseen], axis=1)
    return feats, labels, present


def generate_split(config, split, return_present=False):
    """Yields the examples of one split, deterministically.

    Images are generated in chunks of a fixed size from split- and
    chunk-specific seeds, so memory stays bounded and the output depends
    on `config` only.

    Args:
        config: `SyntheticConfig`.
        split: str. "train" (labels over the seen labels) or "test"
            (labels over every label, seen first).
        return_present: bool. Also yield the true (noise-free) presence of
            every label as a bool [K] array. Defaults to False.

    Yields:
        `(image_id, features, labels)`: str, float32 [N, C], int8 [K'];
        with `return_present`, a fourth item, bool [K].

    Example:

    >>> config = SyntheticConfig(num_train=10, num_test=10)
    >>> image_id, features, labels = next(generate_split(config, "train"))
    >>> features.shape, labels.shape
    ((49, 64), (250,))
    """
    check_split(split)
    world = synthetic_world(config)
    yield from chunked_examples(
        split,
        config.num_examples(split),
        _CHUNK_SIZE,
        functools.partial(_generate_chunk, world, split),
        return_present,
    )


def synthetic_source(cache_dir, config=None, progress=True):
    """The synthetic benchmark as a `DatasetSource`, written once.

    The world of `config` is written in the native TFRecord format (float16
    features, uncompressed) under `cache_dir/<config.cache_key()>/`: a
    "train" split (labels over the seen labels) and a "test" split (labels
    over every label), plus the label space (`LabelSpace.save`). A complete
    cache is reused as is; an incomplete one is deleted and rebuilt.
    Writing goes to a temporary sibling directory that is renamed into
    place at the end.

    Args:
        cache_dir: str. Directory holding the cached worlds.
        config: `SyntheticConfig` or None (the defaults).
        progress: bool. Print progress while writing. Defaults to True.

    Returns:
        `DatasetSource` named "synthetic", `eval_ks=(3, 5)`.

    Example:

    >>> source = synthetic_source("/tmp/epsilon_cache")
    >>> source.split("train").dataset()
    """
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise ValueError(
            "`config` must be a `SyntheticConfig` or None. "
            f"Received: config={config!r}"
        )
    spec = WorldSpec(
        name="synthetic",
        cache_key=config.cache_key(),
        label_space=synthetic_label_space(config),
        feature_shape=config.feature_shape,
        num_examples={s: config.num_examples(s) for s in _SPLIT_CODES},
        generate=functools.partial(generate_split, config),
        eval_ks=(3, 5),
    )
    return cached_world_source(cache_dir, spec, progress)
