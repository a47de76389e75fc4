"""Random Fourier features of the word vectors: a copy of a data directory
whose label vectors are `[w, a * rff(w)]`.

The probe of docs/worlds.md, "Random Fourier features of the word
vectors" (session 33, not built into the package). Every model here
scores a label linearly in its unit word vector `w`; where a label's
appearance is a non-linear function of `w`, no image map can make an
unseen label's score non-linear in it. A fixed, untrained map of `w`
into more dimensions can: with

    phi(w) = [w, a * sqrt(2 / D) * cos(w R / (l * m) + b)]

(`w` unit-normalized, `R` [E, D] standard normal, `b` uniform on
[0, 2 pi), both drawn from `--seed`; `m` the root median squared distance
between the seen labels' unit vectors), the inner product of two
labels' second halves approximates `a^2 exp(-|w - w'|^2 / (2 (l m)^2))`,
a Gaussian kernel of length scale `l` in units of the vocabulary's typical
distance. The model, ESZSL and the scoring read `phi(w)` as if it were the
word vector: nothing in the package changes.

The script copies a directory the package reads as native data, the
label-held-out task of `tune_release_shaped` or a cached world, into
`--dest`: the records and metadata as symbolic links, `label_vectors.npy`
replaced by `phi`. Then, on the held-out task (validation only):

    python -m research.label_features_probe \\
        --source=cache/research/heldout-8000-0-resnet_scenes \\
        --dest=cache/rff/heldout-8000-0-resnet_scenes --weight=0.5
    python -m research.tune_release_shaped --member=resnet_scenes \\
        --runs=preset --work_dir=cache/rff

and on a cached world's test split, as `train.py` reads native data:

    python -m research.label_features_probe \\
        --source=cache/resnet_scenes-d0a26f0a4e0239e3 \\
        --dest=cache/rff/resnet_scenes --weight=0.5
    python train.py --dataset=nus_wide --data_format=native \\
        --data_dir=cache/rff/resnet_scenes --model_dir=runs/rff

Read a world's copy through `--data_dir` only: given as the
`--cache_dir` of its member, the copy fails the world's check (its vectors
are not the world's) and the world is written again over it. The ESZSL
such a run prints is fitted on `phi` too (a different baseline from the
package's linear one); docs/worlds.md compares Epsilon with the linear
ESZSL of the original directory.
"""

import argparse
import os
import sys

import numpy as np

from epsilon_tf.labels import LabelSpace


def _unit(rows):
    rows = np.asarray(rows, np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True),
                             1e-12)


def median_distance(vectors):
    """Root median squared distance between distinct unit rows."""
    u = _unit(vectors)
    sq = (u ** 2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None] - 2 * u @ u.T, 0.0)
    return float(np.sqrt(np.median(d2[d2 > 1e-12])))


def rff_label_vectors(vectors, seen, width=1000, length=0.5, weight=0.5,
                      seed=0):
    """`[w, weight * sqrt(2 / width) * cos(w R / (length * m) + b)]`.

    Args:
        vectors: array [K, E], word vectors of every label.
        seen: indices of the seen labels (they set the distance `m`).
        width: int. D, the number of random features.
        length: float. Kernel length scale, in units of `m`.
        weight: float. `a`, the features' weight beside `w`.
        seed: int. Draws `R` and `b`.

    Returns:
        float32 [K, E + D].
    """
    u = _unit(vectors)
    scale = length * median_distance(u[np.asarray(seen)])
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((u.shape[1], width))
    b = rng.uniform(0.0, 2 * np.pi, width)
    features = weight * np.sqrt(2.0 / width) * np.cos(u @ r / scale + b)
    return np.concatenate([u, features], 1).astype(np.float32)


def copy_with_features(source, dest, **kwargs):
    """`source` (a native data directory) as `dest`, its records linked
    and its label vectors replaced by `rff_label_vectors`."""
    space = LabelSpace.load(source)
    os.makedirs(dest, exist_ok=True)
    for name in sorted(os.listdir(source)):
        target = os.path.join(dest, name)
        if name != "label_vectors.npy" and not os.path.lexists(target):
            os.symlink(os.path.abspath(os.path.join(source, name)), target)
    expanded = rff_label_vectors(space.vectors, space.seen, **kwargs)
    np.save(os.path.join(dest, "label_vectors.npy"), expanded)
    return expanded


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True,
                        help="Native data directory (a task or a world).")
    parser.add_argument("--dest", required=True)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--length", type=float, default=0.5)
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        expanded = copy_with_features(
            args.source, args.dest, width=args.width, length=args.length,
            weight=args.weight, seed=args.seed)
    except (OSError, ValueError) as e:
        print(f"label_features_probe: error: --source={args.source}: "
              f"expected a native data directory's label space: {e}",
              file=sys.stderr)
        return 2
    print(f"{args.dest}: {expanded.shape[0]} labels, word vectors "
          f"{expanded.shape[1]}-d (width {args.width}, length "
          f"{args.length:g}, weight {args.weight:g}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
