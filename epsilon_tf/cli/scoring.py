"""The TensorFlow side of `eval.py`: the test data and the model's scores.

`cli/evaluate.py` imports this module only when it scores a model (its
`--predictions` mode loads no TensorFlow at all).
"""

import os

import keras
import tensorflow as tf

import epsilon_tf.layers  # noqa: F401  (registers the custom layers)
from epsilon_tf.data.pipeline import input_errors
from epsilon_tf.data.sources import make_source
from epsilon_tf.models import with_labels
from epsilon_tf.training import run_dir as run_dir_lib
from epsilon_tf.training import run_lock
from epsilon_tf.training.evaluation import evaluate_split, forward_scores
from epsilon_tf.visualization.examples import write_examples  # noqa: F401


def load_source(data_config, progress):
    """The `DatasetSource` of a `DataConfig`."""
    return make_source(data_config, progress=progress)


def load_keras_model(model_dir):
    """The `model.keras` of a training directory."""
    path = run_dir_lib.RunDir(model_dir).keras_model
    if not os.path.exists(path):
        raise FileNotFoundError(run_lock.missing_model_message(model_dir))
    busy = run_lock.holder(model_dir)
    if busy is not None:
        # model.keras is renamed into place whole: a finished file.
        print(
            f"Note: {run_lock.holder_text(busy)}; evaluating its finished "
            f"model {path}",
            flush=True,
        )
    return keras.saving.load_model(path)


def keras_scores_fn(model, label_space):
    """Scores of a batch of features over `label_space`'s labels."""
    return forward_scores(with_labels(model, label_space.vectors))


def saved_model_scores_fn(saved_model_dir, label_space):
    """Scores of a batch through an export's `score_labels` signature."""
    if not os.path.exists(os.path.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(
            f"No SavedModel at {saved_model_dir} (expected saved_model.pb; "
            "give the numbered version directory)"
        )
    try:
        loaded = tf.saved_model.load(saved_model_dir)
    except (ValueError, OSError, tf.errors.OpError) as e:
        # A damaged saved_model.pb: TensorFlow's message may not name it.
        message = " ".join(str(getattr(e, "message", None) or e).split())
        raise ValueError(
            f"{saved_model_dir} is not a loadable SavedModel: {message}"
        ) from None
    if "score_labels" not in loaded.signatures:
        raise ValueError(
            f"{saved_model_dir} has no `score_labels` signature; export it "
            "with `python -m epsilon_tf.export`"
        )
    signature = loaded.signatures["score_labels"]
    vectors = tf.constant(label_space.vectors)

    def scores_fn(features):
        return signature(features=features, label_embeddings=vectors)[
            "scores"
        ]

    return scores_fn


def evaluate_test_split(scores_fn, source, **kwargs):
    """`evaluation.evaluate_split` of the source's test split; NaN/Inf
    features end in a message naming the image."""
    with input_errors():
        return evaluate_split(
            scores_fn, source.split("test"), source.label_space,
            ks=source.eval_ks, **kwargs,
        )
