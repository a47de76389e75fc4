"""What `epsilon-tag` does once its flags are checked (TensorFlow loaded).

`tag(args)` reads the model and the vocabulary, turns images (or stored
features) into features, scores them (here or through TF Serving's REST
API) and writes the top labels; see `epsilon_tf.tools.tag` for the
command and its flags.
"""

import csv
import json
import os

import keras
import numpy as np
import tensorflow as tf

import epsilon_tf.layers  # noqa: F401 (registers the layers for load_model)
from epsilon_tf.data.readers.native_tfrecord import native_split
from epsilon_tf.errors import CommandLineError, InputDataError
from epsilon_tf.export import client
from epsilon_tf.export.backbones import make_backbone
from epsilon_tf.labels import LabelSpace
from epsilon_tf.models import with_labels
from epsilon_tf.tools.extract_features import image_batches, list_images
from epsilon_tf.tools.make_label_space import make_label_space
from epsilon_tf.training.run_dir import RunDir

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
    if os.path.exists(RunDir(path).keras_model):
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
            run = RunDir(directory)
            self._model = keras.saving.load_model(run.keras_model)
            self.feature_shape = tuple(self._model.inputs[0].shape[1:])
            self.label_space = LabelSpace.load(run.label_space)
            self.width = self.label_space.embedding_dim
        self._vectors = None

    def use(self, label_space):
        """Scores `label_space`'s labels from now on."""
        check_width(label_space, self.width)
        if self.kind == "saved_model":
            self._vectors = tf.constant(label_space.vectors)
        else:
            model = with_labels(self._model, label_space.vectors)
            self._fn = tf.function(
                lambda x: model(x, training=False)["scores"],
                reduce_retracing=True,
            )

    def __call__(self, features):
        x = tf.constant(np.asarray(features, np.float32))
        if self.kind == "saved_model":
            out = self._signature(features=x, label_embeddings=self._vectors)
            return out["scores"].numpy()
        return np.asarray(self._fn(x), np.float32)


class RestScorer:
    """Scores through TF Serving's REST predict API (`score_labels`)."""

    def __init__(self, server, model_name, timeout=60.0):
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
        body = client.rest_request_body(
            {"features": np.asarray(features, np.float32),
             "label_embeddings": self._vectors},
            signature_name="score_labels", format="inputs",
        )
        reply = client.predict_via_rest(self.url, body, self.timeout)
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
