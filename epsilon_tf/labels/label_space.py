"""`LabelSpace`: the names, word vectors and seen/unseen split of labels."""

import dataclasses
import json
import os

import numpy as np


def l2_normalize_rows(matrix, epsilon=1e-12):
    """Returns `matrix` (float32) with every row scaled to unit L2 norm."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, epsilon)


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """Names, word vectors and the seen/unseen split of a label vocabulary.

    The order of `names` is the column order of every label vector and score
    matrix that refers to this space. `seen` and `unseen` index into it; for
    the standard benchmarks the seen labels come first.

    Args:
        names: tuple of str. One name per label.
        vectors: float32 array [K, E]. Word vectors, not necessarily
            normalized (the model L2-normalizes rows before scoring).
        seen: int array. Indices of the labels used for training.
        unseen: int array. Indices of the labels never used for training.

    Example:

    >>> space = LabelSpace.from_arrays(["cat", "dog"], np.eye(2), seen=[0])
    >>> space.subset("unseen").names
    ('dog',)
    """

    names: tuple
    vectors: np.ndarray
    seen: np.ndarray
    unseen: np.ndarray

    def __post_init__(self):
        vectors = np.asarray(self.vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(
                "`vectors` must be a 2-D array [num_labels, embedding_dim]. "
                f"Received: shape={vectors.shape}"
            )
        if len(self.names) != vectors.shape[0]:
            raise ValueError(
                "`names` and `vectors` must describe the same labels. "
                f"Received: {len(self.names)} names and "
                f"{vectors.shape[0]} vectors"
            )
        if not np.all(np.isfinite(vectors)):
            bad = np.flatnonzero(~np.all(np.isfinite(vectors), axis=1))
            raise ValueError(
                "Word vectors must be finite. Received NaN/Inf in the rows "
                f"of labels {[self.names[i] for i in bad[:5]]}"
            )
        norms = np.linalg.norm(vectors, axis=1)
        if np.any(norms == 0):
            bad = np.flatnonzero(norms == 0)
            raise ValueError(
                "Word vectors must be non-zero (they are L2-normalized). "
                f"Received zero vectors for {[self.names[i] for i in bad[:5]]}"
            )
        seen = np.asarray(self.seen, dtype=np.int64).reshape(-1)
        unseen = np.asarray(self.unseen, dtype=np.int64).reshape(-1)
        k = vectors.shape[0]
        for name, idx in (("seen", seen), ("unseen", unseen)):
            if idx.size and (idx.min() < 0 or idx.max() >= k):
                raise ValueError(
                    f"`{name}` indices must lie in [0, {k}). "
                    f"Received: min={idx.min()}, max={idx.max()}"
                )
        if np.intersect1d(seen, unseen).size:
            raise ValueError(
                "A label cannot be both seen and unseen. Received overlap: "
                f"{np.intersect1d(seen, unseen)[:5].tolist()}"
            )
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "seen", seen)
        object.__setattr__(self, "unseen", unseen)

    @classmethod
    def from_arrays(cls, names, vectors, seen=None, unseen=None):
        """Builds a space; `unseen` defaults to every label not in `seen`."""
        k = len(names)
        seen = np.arange(k) if seen is None else np.asarray(seen)
        if unseen is None:
            unseen = np.setdiff1d(np.arange(k), seen)
        return cls(tuple(names), vectors, seen, unseen)

    @property
    def num_labels(self):
        return len(self.names)

    @property
    def embedding_dim(self):
        return int(self.vectors.shape[1])

    @property
    def unseen_mask(self):
        """Bool array [K]: True for the unseen labels."""
        mask = np.zeros(self.num_labels, dtype=bool)
        mask[self.unseen] = True
        return mask

    def normalized_vectors(self):
        """Float32 [K, E], every row L2-normalized."""
        return l2_normalize_rows(self.vectors)

    def subset(self, which):
        """Returns the space restricted to `"seen"`, `"unseen"` or `"all"`.

        For `"all"` (GZSL) the labels keep their order. For `"seen"` every
        label is seen; for `"unseen"` every label is unseen.
        """
        if which == "all":
            return self
        if which == "seen":
            idx = self.seen
            return LabelSpace.from_arrays(
                [self.names[i] for i in idx], self.vectors[idx], seen=None
            )
        if which == "unseen":
            idx = self.unseen
            return LabelSpace(
                tuple(self.names[i] for i in idx),
                self.vectors[idx],
                np.zeros(0, np.int64),
                np.arange(len(idx)),
            )
        raise ValueError(
            "`which` must be one of 'seen', 'unseen', 'all'. "
            f"Received: which={which!r}"
        )

    def index_of(self, names):
        """Indices of `names`; unknown names raise a `KeyError` naming them."""
        lookup = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in lookup]
        if missing:
            raise KeyError(
                f"Unknown label names {missing[:10]} "
                f"({len(missing)} in all); the label space has "
                f"{self.num_labels} labels"
            )
        return np.asarray([lookup[n] for n in names], dtype=np.int64)

    def save(self, directory):
        """Writes `label_space.json` + `label_vectors.npy` to `directory`."""
        os.makedirs(directory, exist_ok=True)
        np.save(os.path.join(directory, "label_vectors.npy"), self.vectors)
        meta = {
            "names": list(self.names),
            "seen": self.seen.tolist(),
            "unseen": self.unseen.tolist(),
        }
        tmp = os.path.join(directory, "label_space.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f)
        os.replace(tmp, os.path.join(directory, "label_space.json"))

    @classmethod
    def load(cls, directory):
        """Reads a space written by `save`."""
        meta_path = os.path.join(directory, "label_space.json")
        vec_path = os.path.join(directory, "label_vectors.npy")
        for path in (meta_path, vec_path):
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"Label space file not found: {path} (expected the "
                    "files written by LabelSpace.save)"
                )
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        vectors = np.load(vec_path, allow_pickle=False)
        return cls(tuple(meta["names"]), vectors, meta["seen"], meta["unseen"])
