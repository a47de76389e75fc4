"""Images (or features) in, tags out: the top-k labels of every image.

    python -m epsilon_tf.tools.tag --images_dir=new_photos/ \\
        --model=runs/mine/export/1 --output=tags.csv

(or `epsilon-tag ...`). `--model` is a SavedModel version directory
(`RUN/export/<version>`, scored through its `score_labels` signature), an
export base (`RUN/export`, its newest version) or a training directory
(`RUN`, its `model.keras`). The vocabulary is the model's own (the
exported labels, or the run's `label_space/`) unless another is given:
`--label_space=DIR` (from `epsilon_tf.tools.make_label_space`) or
`--names=FILE --vectors=FILE` (the same inputs as `make_label_space`).
Its vectors must have the model's word-vector width.

Images go through the backbone given by `--backbone`, `--weights`,
`--seed` and `--image_size`, which must be the ones the training features
were extracted with (`extract_features`' flags, same defaults). Instead
of images, `--features` takes a native data directory (`--split`) or an
`.npy` array [images, regions, channels].

`--server=HOST:PORT` scores through TF Serving's REST API (`POST
/v1/models/<--model_name>:predict`, signature `score_labels`, the
columnar `inputs` request; the reply's `outputs` hold the scores) instead
of loading the model here; `--model` is then not needed unless the
vocabulary is the model's own (read from its files).

The output (`--output`, `.csv` or `.json`) holds, for each image, its
`--top_k` labels, best first, with their scores and `unseen`: true for a
label the model was not trained on (not among the seen labels of the
model's own vocabulary). CSV columns: `image,rank,label,score,unseen`.
"""

import argparse
import csv
import json
import os
import sys

import numpy as np

from epsilon_tf.cli import common
from epsilon_tf.errors import CommandLineError, InputDataError
from epsilon_tf.labels import LabelSpace
from epsilon_tf.tools.extract_features import image_batches, list_images
from epsilon_tf.tools.make_label_space import make_label_space

PROGRAM = "epsilon-tag"
LABELS_ASSET = os.path.join("assets", "labels.txt")
UNSEEN_ASSET = os.path.join("assets", "unseen.txt")


def resolve_model(path):
    """`("saved_model" | "run", directory)` of a `--model` path.

    Raises:
        CommandLineError: the path is none of a SavedModel version, an
            export base with versions or a training directory.
    """
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return "saved_model", path
    if os.path.exists(os.path.join(path, "model.keras")):
        return "run", path
    if os.path.isdir(path):
        versions = sorted(
            (int(n) for n in os.listdir(path)
             if n.isdigit()
             and os.path.exists(os.path.join(path, n, "saved_model.pb"))),
        )
        if versions:
            return "saved_model", os.path.join(path, str(versions[-1]))
    raise CommandLineError(
        f"--model: {path} is neither a SavedModel version directory "
        "(saved_model.pb), an export base with numbered versions nor a "
        "training directory (model.keras)"
        + ("" if os.path.exists(path) else " (not found)")
    )


def exported_label_space(version_dir, loaded=None):
    """The vocabulary of an export: names, unseen marks and vectors."""
    names_path = os.path.join(version_dir, LABELS_ASSET)
    unseen_path = os.path.join(version_dir, UNSEEN_ASSET)
    for path in (names_path, unseen_path):
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} not found: {version_dir} is not an epsilon_tf "
                "export (give the vocabulary with --label_space)"
            )
    with open(names_path, encoding="utf-8") as f:
        names = [line.rstrip("\n") for line in f]
    with open(unseen_path, encoding="utf-8") as f:
        unseen = np.asarray([int(line) for line in f if line.strip()], bool)
    if loaded is None:
        import tensorflow as tf

        loaded = tf.saved_model.load(version_dir)
    vectors = np.asarray(loaded.label_embeddings.numpy(), np.float32)
    return LabelSpace(
        tuple(names), vectors, np.flatnonzero(~unseen),
        np.flatnonzero(unseen),
    )


class Scorer:
    """Scores features [b, N, C] over a vocabulary's vectors.

    Attributes:
        feature_shape: tuple (N, C) the model takes.
        width: int. The model's word-vector width.
        label_space: `LabelSpace`. The model's own vocabulary (None when
            scoring through a server without `--model`).
    """

    def __init__(self, kind, directory):
        common.import_tensorflow_quietly()
        import tensorflow as tf

        self.kind = kind
        if kind == "saved_model":
            loaded = tf.saved_model.load(directory)
            if "score_labels" not in loaded.signatures:
                raise ValueError(
                    f"--model: {directory} has no `score_labels` signature "
                    "(export it with python -m epsilon_tf.export)"
                )
            self._signature = loaded.signatures["score_labels"]
            spec = self._signature.structured_input_signature[1]
            self.feature_shape = tuple(spec["features"].shape[1:])
            self.width = int(spec["label_embeddings"].shape[1])
            self.label_space = exported_label_space(directory, loaded)
            self._loaded = loaded
        else:
            import keras

            import epsilon_tf.layers  # noqa: F401 (registers the layers)

            self._model = keras.saving.load_model(
                os.path.join(directory, "model.keras")
            )
            self.feature_shape = tuple(self._model.inputs[0].shape[1:])
            self.label_space = LabelSpace.load(
                os.path.join(directory, "label_space")
            )
            self.width = self.label_space.embedding_dim
        self._vectors = None

    def use(self, label_space):
        """Scores `label_space`'s labels from now on."""
        import tensorflow as tf

        check_width(label_space, self.width)
        if self.kind == "saved_model":
            self._vectors = tf.constant(label_space.vectors)
        else:
            from epsilon_tf.models import with_labels

            model = with_labels(self._model, label_space.vectors)
            self._fn = tf.function(
                lambda x: model(x, training=False)["scores"],
                reduce_retracing=True,
            )

    def __call__(self, features):
        import tensorflow as tf

        x = tf.constant(np.asarray(features, np.float32))
        if self.kind == "saved_model":
            out = self._signature(features=x, label_embeddings=self._vectors)
            return out["scores"].numpy()
        return np.asarray(self._fn(x), np.float32)


class RestScorer:
    """Scores through TF Serving's REST predict API (`score_labels`)."""

    def __init__(self, server, model_name, timeout=60.0):
        from epsilon_tf.export import client

        self._client = client
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise CommandLineError(
                f"--server must be HOST:PORT (TF Serving's REST port, "
                f"8501 by default). Received: --server={server}"
            )
        self.url = client.rest_url(host, int(port), model_name)
        self.timeout = timeout
        self._vectors = None

    def use(self, label_space):
        self._vectors = label_space.vectors

    def __call__(self, features):
        body = self._client.rest_request_body(
            {"features": np.asarray(features, np.float32),
             "label_embeddings": self._vectors},
            signature_name="score_labels", format="inputs",
        )
        reply = self._client.predict_via_rest(self.url, body, self.timeout)
        outputs = reply.get("outputs")
        if isinstance(outputs, dict):
            outputs = outputs.get("scores")
        if outputs is None:
            raise ValueError(
                f"{self.url}: the reply holds no `outputs` (TF Serving's "
                f"columnar response). Received keys: {sorted(reply)}"
            )
        return np.asarray(outputs, np.float32)


def check_width(label_space, width):
    if label_space.embedding_dim != width:
        raise InputDataError(
            f"The vocabulary's vectors have {label_space.embedding_dim} "
            f"dimensions but the model scores {width}-dimensional word "
            "vectors: give vectors of the kind the model was trained with"
        )


def unseen_marks(vocabulary, model_space):
    """True for each label of `vocabulary` the model was not trained on.

    With the model's own vocabulary known, a label is unseen when it is
    not one of its seen labels; otherwise the vocabulary's own marks.
    """
    if model_space is None:
        return vocabulary.unseen_mask
    trained = {model_space.names[i] for i in model_space.seen}
    return np.asarray([n not in trained for n in vocabulary.names], bool)


def feature_batches(args, feature_shape, batch_size):
    """Yields `(image names, features [b, N, C])` of the input."""
    if args.features:
        yield from _stored_features(args.features, args.split, batch_size)
        return
    from epsilon_tf.export.backbones import make_backbone

    names = list_images(args.images_dir)
    if not names:
        raise InputDataError(f"--images_dir: {args.images_dir} holds no "
                             "images (.jpg, .jpeg, .png, .bmp, .gif)")
    weights = None if args.weights.lower() == "none" else args.weights
    model, preprocess = make_backbone(
        args.backbone, weights, args.image_size, args.seed
    )
    produced = tuple(model.output_shape[1:])
    if feature_shape is not None and produced != tuple(feature_shape):
        raise InputDataError(
            f"--backbone={args.backbone} at --image_size={args.image_size} "
            f"gives features {produced[0]}x{produced[1]} but the model "
            f"takes {feature_shape[0]}x{feature_shape[1]}: use the backbone "
            "and image size the training features were extracted with"
        )
    paths = [os.path.join(args.images_dir, n) for n in names]
    for begin, tokens in image_batches(
        paths, model, preprocess, args.image_size, batch_size, args.progress
    ):
        yield names[begin:begin + len(tokens)], tokens


def _stored_features(path, split, batch_size):
    if path.lower().endswith(".npy"):
        array = np.load(path, allow_pickle=False)
        if array.ndim != 3:
            raise InputDataError(
                f"--features: {path} must hold [images, regions, channels]. "
                f"Received: shape={array.shape}"
            )
        for begin in range(0, len(array), batch_size):
            chunk = array[begin:begin + batch_size]
            yield [str(begin + i) for i in range(len(chunk))], chunk
        return
    from epsilon_tf.data.native_tfrecord import native_split

    reader = native_split(path, split)
    for batch in reader.dataset().batch(batch_size):
        yield ([i.decode("utf-8") for i in batch["image_id"].numpy()],
               batch["features"].numpy())


def top_labels(scores, names, unseen, k):
    """Per image: `[(name, score, unseen), ...]`, best first."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [
        [(names[j], float(scores[i, j]), bool(unseen[j])) for j in row]
        for i, row in enumerate(order)
    ]


def write_tags(path, tagged, meta):
    """Writes `[(image, [(label, score, unseen), ...]), ...]` as CSV/JSON."""
    tmp = f"{path}.tmp"
    if path.lower().endswith(".json"):
        doc = dict(meta, images=[
            {"image": image,
             "labels": [{"label": n, "score": s, "unseen": u}
                        for n, s, u in labels]}
            for image, labels in tagged
        ])
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
    else:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "rank", "label", "score", "unseen"])
            for image, labels in tagged:
                for rank, (n, s, u) in enumerate(labels, start=1):
                    writer.writerow([image, rank, n, f"{s:.6f}", int(u)])
    os.replace(tmp, path)


def _parser():
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--images_dir", default=None)
    parser.add_argument("--features", default=None,
                        help="A native data directory (with --split) or an "
                        ".npy [images, regions, channels], instead of "
                        "--images_dir.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default=None,
                        help="SavedModel version, export base or training "
                        "directory.")
    parser.add_argument("--server", default=None,
                        help="HOST:PORT of TF Serving's REST API.")
    parser.add_argument("--model_name", default="epsilon",
                        help="The served model's name (with --server).")
    parser.add_argument("--label_space", default=None,
                        help="Vocabulary: a label space directory.")
    parser.add_argument("--names", default=None,
                        help="Vocabulary: label names file (with "
                        "--vectors; see make_label_space).")
    parser.add_argument("--vectors", default=None)
    parser.add_argument("--unseen", default=None,
                        help="With --names: comma-separated unseen names.")
    parser.add_argument("--output", required=True,
                        help="tags.csv or tags.json")
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--backbone", default="vgg19")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--no_progress", dest="progress",
                        action="store_false")
    parser.add_argument(common.DEBUG_FLAG, action="store_true",
                        help="Show tracebacks and TensorFlow's logs.")
    return parser


def _check_args(args):
    if (args.images_dir is None) == (args.features is None):
        raise CommandLineError(
            "Give --images_dir (images) or --features (a native data "
            "directory or .npy), one of them"
        )
    if args.images_dir is not None and not os.path.isdir(args.images_dir):
        raise CommandLineError(
            f"--images_dir: {args.images_dir} is not a directory"
        )
    if args.features is not None and not os.path.exists(args.features):
        raise CommandLineError(f"--features: not found: {args.features}")
    if args.model is None and args.server is None:
        raise CommandLineError("Give --model (or --server)")
    if args.server is not None and args.model is None and not (
        args.label_space or args.names
    ):
        raise CommandLineError(
            "--server without --model needs the vocabulary: --label_space "
            "or --names with --vectors"
        )
    if bool(args.names) != bool(args.vectors):
        raise CommandLineError("--names and --vectors go together")
    if args.label_space and args.names:
        raise CommandLineError("Give --label_space or --names, not both")
    if args.unseen is not None and not args.names:
        raise CommandLineError("--unseen goes with --names")
    for flag in ("label_space", "names", "vectors"):
        value = getattr(args, flag)
        if value and not os.path.exists(value):
            raise CommandLineError(f"--{flag}: not found: {value}")
    common.check(args.top_k >= 1, "top_k", args.top_k, "a positive integer")
    common.check(args.batch_size >= 1, "batch_size", args.batch_size,
                 "a positive integer")
    common.check(args.image_size >= 32, "image_size", args.image_size,
                 "at least 32 (pixels)")
    if not args.output.lower().endswith((".csv", ".json")):
        raise CommandLineError(
            f"--output must end in .csv or .json. Received: {args.output}"
        )
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise CommandLineError(
            f"--output: the directory {out_dir} does not exist"
        )


def tag(args):
    """Runs the command for parsed `args`; returns the rows written."""
    vocabulary = None
    if args.label_space:
        vocabulary = LabelSpace.load(args.label_space)
    elif args.names:
        unseen = None
        if args.unseen is not None:
            unseen = [n.strip() for n in args.unseen.split(",") if n.strip()]
        vocabulary = make_label_space(args.names, args.vectors, unseen)
    model = None
    if args.model is not None:
        model = Scorer(*resolve_model(args.model))
    scorer = model if args.server is None else RestScorer(
        args.server, args.model_name
    )
    if vocabulary is None:
        vocabulary = model.label_space
    if model is not None:
        check_width(vocabulary, model.width)
    scorer.use(vocabulary)
    unseen = unseen_marks(
        vocabulary, None if model is None else model.label_space
    )
    shape = None if model is None else model.feature_shape
    k = min(args.top_k, vocabulary.num_labels)
    tagged = []
    for images, features in feature_batches(args, shape, args.batch_size):
        scores = scorer(features)
        tagged.extend(zip(images, top_labels(
            scores, vocabulary.names, unseen, k
        )))
    write_tags(args.output, tagged, {
        "model": args.model, "server": args.server,
        "num_labels": vocabulary.num_labels,
        "num_unseen": int(unseen.sum()), "top_k": k,
    })
    return tagged


def main(argv=None):
    args = _parser().parse_args(argv)
    _check_args(args)
    if args.debug:
        common.prepare(["--debug"])
    tagged = tag(args)
    print(f"Tagged {len(tagged)} images: top {args.top_k} labels each "
          f"in {args.output}")
    return 0


def run_main():
    """Console script `epsilon-tag`."""
    with common.clean_exit(PROGRAM):
        sys.exit(main())


if __name__ == "__main__":
    run_main()
