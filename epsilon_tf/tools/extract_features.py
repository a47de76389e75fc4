"""Images -> region features in the project's native TFRecord format.

Runs a frozen `keras.applications` backbone over a folder of images and
writes one native split (`epsilon_tf.data.readers.native_writer`). VGG19
`block5_conv4` at 224x224 with VGG preprocessing (the default) gives the
196x512 features of the LESA/BiAM releases.

    python -m epsilon_tf.tools.extract_features \\
        --images_dir=photos/ --labels=labels.csv \\
        --label_space_dir=my_labels --output_dir=features/ --split=train

The label space (`--label_space_dir`, e.g. from
`epsilon_tf.tools.make_label_space` or a run's `label_space/`) is written
beside the features (`features/label_space.json`), so `train.py
--data_format=native --data_dir=features/` reads both. A training split
(`--split=train`) holds the seen labels (`--label_set=seen`, its default
there; `all` is refused for it, before anything is written); other splits
default to `all`. Without `--labels` every image of the folder is written
with unknown (0) labels: features to tag, not to train or evaluate on.
`--weights=none` builds the backbone with random weights from `--seed`
(the same on every call, so separate runs give the same features); it is
for tests only.

Labels: a CSV with a header holding `image` and `labels` (the present
label names, separated by ";") and optionally `negative_labels` (labels
known to be absent); or a JSON object mapping each image file name to a
list of present names, or to `{"positive": [...], "negative": [...]}`.
Labels that are not listed are -1 (absent) by default, or 0 (unknown) with
`--unlisted=unknown`. Column order and names come from the label space:
its seen labels for `--label_set=seen`, all its labels for `all`. A
split of seen labels skips the unseen labels a label file mentions (as the
benchmarks' training splits do: the image stays, with its seen labels), so
one label file can serve every split.
"""

import argparse
import csv
import json
import os
import sys
import time

import numpy as np

from epsilon_tf.cli import common
from epsilon_tf.labels import LabelSpace

PROGRAM = "python -m epsilon_tf.tools.extract_features"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def read_label_file(path):
    """`{image_name: (positives, negatives)}` from a CSV or JSON file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Label file not found: {path}")
    rows = {}
    if path.lower().endswith(".json"):
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(
                f"{path}: expected a JSON object mapping image names to "
                f"label lists. Received: {type(data).__name__}"
            )
        for name, value in data.items():
            if isinstance(value, list):
                rows[name] = (list(value), [])
            elif isinstance(value, dict):
                rows[name] = (
                    list(value.get("positive", [])),
                    list(value.get("negative", [])),
                )
            else:
                raise ValueError(
                    f"{path}: entry {name!r} must be a list of names or "
                    '{"positive": [...], "negative": [...]}'
                )
        return rows
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "image" not in fields or "labels" not in fields:
            raise ValueError(
                f"{path}: the CSV header must name the columns `image` and "
                f"`labels` (optionally `negative_labels`). Received: {fields}"
            )
        for line, row in enumerate(reader, start=2):
            name = (row["image"] or "").strip()
            if not name:
                raise ValueError(f"{path}, line {line}: empty `image` cell")
            if name in rows:
                raise ValueError(
                    f"{path}, line {line}: image {name!r} listed twice"
                )

            def split_names(cell):
                return [n.strip() for n in (cell or "").split(";")
                        if n.strip()]

            rows[name] = (
                split_names(row["labels"]),
                split_names(row.get("negative_labels")),
            )
    return rows


def label_vector(positives, negatives, index, unlisted, where,
                 ignored=()):
    """The +1/-1/0 vector of one image over the label columns `index`.

    Names in `ignored` (a training split's unseen labels: they are not
    among its columns, and the image keeps its seen labels) are skipped.
    """
    vector = np.full(len(index), -1 if unlisted == "negative" else 0,
                     np.int8)
    for names, value in ((negatives, -1), (positives, 1)):
        names = [n for n in names if n not in ignored]
        unknown = [n for n in names if n not in index]
        if unknown:
            raise KeyError(
                f"{where}: unknown label name(s) {unknown[:5]}; they are not "
                "in the label space's columns"
            )
        for n in names:
            vector[index[n]] = value
    return vector


def list_images(images_dir):
    """The image files of a folder (by extension), sorted by name."""
    return sorted(
        n for n in os.listdir(images_dir)
        if n.lower().endswith(IMAGE_EXTENSIONS)
        and os.path.isfile(os.path.join(images_dir, n))
    )


def load_image(path, image_size):
    import tensorflow as tf

    data = tf.io.read_file(path)
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(
            f"{path}: not a decodable JPEG/PNG/BMP/GIF image ({e.message})"
        ) from None
    image = tf.image.resize(tf.cast(image, tf.float32),
                            (image_size, image_size))
    return image.numpy()


class Progress:
    """`done/total images (rate)`: redrawn with "\\r" in a terminal, else
    one line per update (so log files keep their lines apart)."""

    def __init__(self, total, stream=None, every_seconds=10.0):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every_seconds
        self.start = time.time()
        self.last = None

    def update(self, done):
        now = time.time()
        text = (f"{done}/{self.total} images "
                f"({done / max(now - self.start, 1e-9):.1f} img/s)")
        if self.tty:
            print(f"\r{text}", end="", file=self.stream, flush=True)
        elif (self.last is None or done == self.total
              or now - self.last >= self.every):
            print(text, file=self.stream, flush=True)
            self.last = now

    def close(self):
        if self.tty:
            print(file=self.stream, flush=True)


def image_batches(paths, model, preprocess, image_size, batch_size=16,
                  progress=True):
    """Yields `(first index, features [b, N, C])` per batch of images."""
    bar = Progress(len(paths)) if progress else None
    for begin in range(0, len(paths), batch_size):
        chunk = paths[begin:begin + batch_size]
        images = np.stack([load_image(p, image_size) for p in chunk])
        yield begin, model(preprocess(images), training=False).numpy()
        if bar is not None:
            bar.update(begin + len(chunk))
    if bar is not None:
        bar.close()


def extract_features(
    images_dir,
    labels_path,
    label_names,
    output_dir,
    split,
    label_set="seen",
    backbone="vgg19",
    weights=None,
    image_size=224,
    batch_size=16,
    feature_dtype="float16",
    unlisted="negative",
    examples_per_shard=1024,
    overwrite=False,
    progress=True,
    seed=0,
    ignored_labels=(),
):
    """Extracts features of every labelled image and writes a native split.

    Args:
        images_dir: str. Folder of the images named in the label file.
        labels_path: str or None. CSV or JSON label file (see the module
            doc); None: every image of `images_dir`, labels 0 (unknown).
        label_names: sequence of str. The label columns, in order.
        output_dir: str. Native-format output folder.
        split: str. Split name ("train", "test", ...).
        label_set: str. "seen" or "all".
        backbone: str. Registered backbone name (`make_backbone`).
        weights: str or None. "imagenet", None or a weights file path.
        image_size: int. Input side of the backbone.
        batch_size: int. Images per backbone call.
        feature_dtype: str. "float16" or "float32".
        unlisted: str. "negative" (-1) or "unknown" (0) for labels an
            image's row does not mention.
        examples_per_shard: int. Examples per TFRecord shard.
        overwrite: bool. Replace an existing split.
        progress: bool. Print progress (to stderr).
        seed: int. Seed of the random weights when `weights` is None.
        ignored_labels: collection of str. Label names the label file may
            mention that are not columns (the unseen labels, for a split
            of seen labels): skipped.

    Returns:
        dict, the written split's sidecar.
    """
    if unlisted not in ("negative", "unknown"):
        raise ValueError(
            "`unlisted` must be 'negative' or 'unknown'. "
            f"Received: unlisted={unlisted!r}"
        )
    if not os.path.isdir(images_dir):
        raise FileNotFoundError(f"`images_dir` not found: {images_dir}")
    index = {n: i for i, n in enumerate(label_names)}
    items = []
    if labels_path is None:
        for name in list_images(images_dir):
            items.append((name, os.path.join(images_dir, name),
                          np.zeros(len(label_names), np.int8)))
        if not items:
            raise FileNotFoundError(
                f"{images_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
    else:
        rows = read_label_file(labels_path)
        if not rows:
            raise ValueError(f"{labels_path}: no images listed")
    for name, (pos, neg) in ({} if labels_path is None else rows).items():
        path = os.path.join(images_dir, name)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{labels_path}: image {name!r} not found in {images_dir}"
            )
        items.append(
            (name, path,
             label_vector(pos, neg, index, unlisted,
                          f"{labels_path}, image {name!r}",
                          ignored=frozenset(ignored_labels)))
        )
    # Every image and label checked: now TensorFlow.
    common.import_tensorflow_quietly()
    from epsilon_tf.data.readers.native_writer import NativeWriter
    from epsilon_tf.export.backbones import make_backbone

    model, preprocess = make_backbone(backbone, weights, image_size, seed)
    feature_shape = tuple(model.output_shape[1:])
    with NativeWriter(
        output_dir, split, feature_shape, label_names=list(label_names),
        feature_dtype=feature_dtype, examples_per_shard=examples_per_shard,
        label_set=label_set, overwrite=overwrite,
    ) as writer:
        paths = [p for _, p, _ in items]
        for begin, tokens in image_batches(
            paths, model, preprocess, image_size, batch_size, progress
        ):
            for offset, features in enumerate(tokens):
                name, _, labels = items[begin + offset]
                writer.write(name, features, labels)
    return writer.metadata()


def check_label_set(split, label_set):
    """The split's label set: `seen` for "train" by default, else `all`.

    Raises:
        CommandLineError: `--label_set=all` for the training split (the
            trainer learns from the seen labels only; a training split of
            all labels fails at its first step).
    """
    if label_set is None:
        return "seen" if split == "train" else "all"
    if split == "train" and label_set != "seen":
        raise common.CommandLineError(
            f"--label_set={label_set} with --split=train: a training split "
            "holds the seen labels only (train.py learns from them); use "
            "--label_set=seen (its default) or another --split"
        )
    return label_set


def place_label_space(space, output_dir, source_dir):
    """Checks that `output_dir` holds no other label space (before writing).

    Returns True when `space` must still be saved there.

    Raises:
        CommandLineError: `output_dir` holds a different label space.
    """
    if not os.path.exists(os.path.join(output_dir, "label_space.json")):
        return True
    there = LabelSpace.load(output_dir)
    same = (
        there.names == space.names
        and np.array_equal(there.seen, space.seen)
        and there.vectors.shape == space.vectors.shape
        and np.allclose(there.vectors, space.vectors)
    )
    if not same:
        raise common.CommandLineError(
            f"--output_dir: {output_dir} holds the features of another "
            f"label space ({there.num_labels} labels) than --label_space_dir"
            f"={source_dir} ({space.num_labels} labels); use another "
            "--output_dir"
        )
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--images_dir", required=True)
    parser.add_argument("--labels", default=None,
                        help="CSV or JSON label file; without it every "
                        "image of --images_dir, labels unknown.")
    parser.add_argument("--label_space_dir", required=True,
                        help="A LabelSpace directory (from "
                        "epsilon_tf.tools.make_label_space, a run's "
                        "label_space/, or a native data directory).")
    parser.add_argument("--label_set", choices=("seen", "all"),
                        default=None,
                        help="seen (default for --split=train) or all "
                        "(default for other splits).")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--backbone", default="vgg19")
    parser.add_argument("--weights", default="imagenet",
                        help='"imagenet", "none" (random, seeded: tests '
                        'only) or a weights file.')
    parser.add_argument("--seed", type=int, default=0,
                        help="Seed of the random weights of --weights=none.")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--feature_dtype", choices=("float16", "float32"),
                        default="float16")
    parser.add_argument("--unlisted", choices=("negative", "unknown"),
                        default="negative")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(common.DEBUG_FLAG, action="store_true",
                        help="Show tracebacks and TensorFlow's logs.")
    args = parser.parse_args(argv)
    common.check(args.batch_size >= 1, "batch_size", args.batch_size,
                 "a positive integer")
    common.check(args.image_size >= 32, "image_size", args.image_size,
                 "at least 32 (pixels)")
    for flag in ("images_dir", "label_space_dir"):
        value = getattr(args, flag)
        if not os.path.isdir(value):
            raise common.CommandLineError(
                f"--{flag}: {value} is not a directory"
                + (" (it is a file)" if os.path.exists(value)
                   else " (not found)")
            )
    if args.labels is not None and os.path.isdir(args.labels):
        raise common.CommandLineError(
            f"--labels: {args.labels} is a directory, not a CSV or JSON file"
        )
    label_set = check_label_set(args.split, args.label_set)
    if args.labels is None and args.split == "train":
        raise common.CommandLineError(
            "--split=train needs --labels: a training split without labels "
            "teaches nothing"
        )
    if args.debug:
        common.prepare(["--debug"])
    space = LabelSpace.load(args.label_space_dir)
    save_space = place_label_space(space, args.output_dir,
                                   args.label_space_dir)
    names = (
        space.names if label_set == "all" else space.subset("seen").names
    )
    weights = None if args.weights.lower() == "none" else args.weights
    if weights is None:
        print(
            f"{PROGRAM}: warning: --weights=none: a backbone with random "
            f"weights (seed {args.seed}), for tests only; its features "
            "carry no meaning",
            file=sys.stderr, flush=True,
        )
    unseen = (
        [space.names[i] for i in space.unseen] if label_set == "seen"
        else []
    )
    meta = extract_features(
        args.images_dir, args.labels, names, args.output_dir, args.split,
        ignored_labels=unseen,
        label_set=label_set, backbone=args.backbone, weights=weights,
        image_size=args.image_size, batch_size=args.batch_size,
        feature_dtype=args.feature_dtype, unlisted=args.unlisted,
        overwrite=args.overwrite, seed=args.seed,
    )
    if save_space:
        space.save(args.output_dir)
    print(f"Wrote {meta['num_examples']} examples of shape "
          f"{tuple(meta['feature_shape'])} ({label_set} labels) to "
          f"{args.output_dir}, with its label space")
    return 0


def run_main():
    """Console script `epsilon-extract-features`."""
    with common.clean_exit(PROGRAM):
        sys.exit(main())


if __name__ == "__main__":
    run_main()
