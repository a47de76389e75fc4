"""Images -> region features in the project's native TFRecord format.

Runs a frozen `keras.applications` backbone over a folder of images and
writes one native split (`epsilon_tf.data.readers.native_writer`). VGG19
`block5_conv4` at 224x224 with VGG preprocessing (the default) gives the
196x512 features of the LESA/BiAM releases.

    python -m epsilon_tf.tools.extract_features \\
        --images_dir=photos/ --labels=labels.csv \\
        --label_space_dir=runs/demo/label_space --label_set=all \\
        --output_dir=features/ --split=test --weights=imagenet

Labels: a CSV with a header holding `image` and `labels` (the present
label names, separated by ";") and optionally `negative_labels` (labels
known to be absent); or a JSON object mapping each image file name to a
list of present names, or to `{"positive": [...], "negative": [...]}`.
Labels that are not listed are -1 (absent) by default, or 0 (unknown) with
`--unlisted=unknown`. Column order and names come from the label space:
its seen labels for `--label_set=seen`, all its labels for `all`.
"""

import argparse
import csv
import json
import os
import sys
import time

import numpy as np

from epsilon_tf.cli import common

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


def label_vector(positives, negatives, index, unlisted, where):
    """The +1/-1/0 vector of one image over the label columns `index`."""
    vector = np.full(len(index), -1 if unlisted == "negative" else 0,
                     np.int8)
    for names, value in ((negatives, -1), (positives, 1)):
        unknown = [n for n in names if n not in index]
        if unknown:
            raise KeyError(
                f"{where}: unknown label name(s) {unknown[:5]}; they are not "
                "in the label space's columns"
            )
        for n in names:
            vector[index[n]] = value
    return vector


def _load_image(path, image_size):
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
):
    """Extracts features of every labelled image and writes a native split.

    Args:
        images_dir: str. Folder of the images named in the label file.
        labels_path: str. CSV or JSON label file (see the module doc).
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
        progress: bool. Print progress.

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
    rows = read_label_file(labels_path)
    if not rows:
        raise ValueError(f"{labels_path}: no images listed")
    index = {n: i for i, n in enumerate(label_names)}
    items = []
    for name, (pos, neg) in rows.items():
        path = os.path.join(images_dir, name)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{labels_path}: image {name!r} not found in {images_dir}"
            )
        items.append(
            (name, path,
             label_vector(pos, neg, index, unlisted,
                          f"{labels_path}, image {name!r}"))
        )
    # Every image and label checked: now TensorFlow.
    common.import_tensorflow_quietly()
    from epsilon_tf.data.readers.native_writer import NativeWriter
    from epsilon_tf.export.backbones import make_backbone

    model, preprocess = make_backbone(backbone, weights, image_size)
    feature_shape = tuple(model.output_shape[1:])
    start = time.time()
    with NativeWriter(
        output_dir, split, feature_shape, label_names=list(label_names),
        feature_dtype=feature_dtype, examples_per_shard=examples_per_shard,
        label_set=label_set, overwrite=overwrite,
    ) as writer:
        for begin in range(0, len(items), batch_size):
            chunk = items[begin:begin + batch_size]
            images = np.stack([_load_image(p, image_size) for _, p, _ in chunk])
            tokens = model(preprocess(images), training=False).numpy()
            for (name, _, labels), features in zip(chunk, tokens):
                writer.write(name, features, labels)
            if progress:
                done = begin + len(chunk)
                print(
                    f"\r{done}/{len(items)} images "
                    f"({done / max(time.time() - start, 1e-9):.1f} img/s)",
                    end="", file=sys.stderr, flush=True,
                )
    if progress:
        print(file=sys.stderr)
    return writer.metadata()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--images_dir", required=True)
    parser.add_argument("--labels", required=True,
                        help="CSV or JSON label file.")
    parser.add_argument("--label_space_dir", required=True,
                        help="A LabelSpace directory (e.g. MODEL_DIR/"
                        "label_space, or a native data directory).")
    parser.add_argument("--label_set", choices=("seen", "all"),
                        default="all")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--backbone", default="vgg19")
    parser.add_argument("--weights", default="imagenet",
                        help='"imagenet", "none" or a weights file.')
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
    if os.path.isdir(args.labels):
        raise common.CommandLineError(
            f"--labels: {args.labels} is a directory, not a CSV or JSON file"
        )
    if args.debug:
        common.prepare(["--debug"])
    from epsilon_tf.labels import LabelSpace

    space = LabelSpace.load(args.label_space_dir)
    names = (
        space.names if args.label_set == "all"
        else space.subset("seen").names
    )
    meta = extract_features(
        args.images_dir, args.labels, names, args.output_dir, args.split,
        label_set=args.label_set, backbone=args.backbone,
        weights=None if args.weights.lower() == "none" else args.weights,
        image_size=args.image_size, batch_size=args.batch_size,
        feature_dtype=args.feature_dtype, unlisted=args.unlisted,
        overwrite=args.overwrite,
    )
    print(f"Wrote {meta['num_examples']} examples of shape "
          f"{tuple(meta['feature_shape'])} to {args.output_dir}")
    return 0


if __name__ == "__main__":
    with common.clean_exit(PROGRAM):
        sys.exit(main())
