"""Scores a split with a model, streamed, and applies the exact protocol."""

import sys
import time

import keras
import numpy as np
import tensorflow as tf

from epsilon_tf.data.pipeline import make_dataset
from epsilon_tf.metrics import ScoreBuffer, evaluate_scores
from epsilon_tf.models import with_labels

# Progress lines when stdout is not a terminal (a log file, CI, a job).
PROGRESS_EVERY_SECONDS = 30.0


def forward_scores(model):
    """A compiled `features -> scores` function of `model`."""

    @tf.function(reduce_retracing=True)
    def scores_fn(features):
        return tf.cast(model(features, training=False)["scores"], tf.float32)

    return scores_fn


def predict_split(
    scores_fn,
    dataset,
    num_examples=None,
    memory_budget_bytes=None,
    progress=True,
    description="scoring",
):
    """Streams `dataset` through `scores_fn` into a `ScoreBuffer`.

    Args:
        scores_fn: callable `features [b, N, C] -> scores [b, K]`.
        dataset: batched dataset of example dicts.
        num_examples: int or None. For the progress bar.
        memory_budget_bytes: int or None. Beyond it scores spill to a
            memory-mapped file (`ScoreBuffer`).
        progress: bool. Show a progress bar.
        description: str. Shown before the progress bar.

    Returns:
        The filled `ScoreBuffer` (call `finalize()` for the arrays; close it
        when done).
    """
    kwargs = {}
    if memory_budget_bytes is not None:
        kwargs["memory_budget_bytes"] = memory_budget_bytes
    if num_examples is not None:
        kwargs["num_images"] = num_examples
    buffer = ScoreBuffer(**kwargs)
    bar = None
    start = last = time.time()
    terminal = sys.stdout.isatty()
    if progress:
        print(description, flush=True)
        if terminal:
            bar = keras.utils.Progbar(num_examples, unit_name="image")
    seen = 0
    for batch in dataset:
        scores = scores_fn(batch["features"]).numpy()
        buffer.append(scores, batch["labels"].numpy())
        seen += scores.shape[0]
        if bar is not None:
            bar.update(seen)
        elif progress and time.time() - last >= PROGRESS_EVERY_SECONDS:
            last = time.time()
            of = f"/{num_examples}" if num_examples else ""
            print(f"  {seen}{of} images, "
                  f"{seen / max(last - start, 1e-9):.1f} images/s",
                  flush=True)
    if bar is not None and num_examples is None:
        bar.update(seen, finalize=True)
    if progress and not terminal:
        seconds = time.time() - start
        print(f"  scored {seen} images in {seconds:.1f}s "
              f"({seen / max(seconds, 1e-9):.1f} images/s)", flush=True)
    return buffer


def evaluate_split(
    scores_fn,
    split_reader,
    label_space,
    ks=(3, 5),
    batch_size=256,
    variant="lesa",
    memory_budget_bytes=None,
    progress=True,
    on_scores=None,
):
    """ZSL and GZSL metrics of `scores_fn` over a test split.

    Args:
        scores_fn: callable `features [b, N, C] -> scores [b, K]` over every
            label of `label_space`, in its order.
        split_reader: `SplitReader` with `label_set="all"`.
        label_space: `LabelSpace`. Its `unseen_mask` selects ZSL columns.
        ks: tuple of int. K of P/R/F1@K.
        batch_size: int. Images per forward pass.
        variant: str. "lesa" (standard) or "biam_openimages".
        memory_budget_bytes: int or None. Spill scores to disk beyond it.
        progress: bool. Progress bar.
        on_scores: callable or None. Called as `on_scores(scores, labels)`
            with the full matrices (possibly memory-mapped) before they are
            released, e.g. to keep a few columns for PR curves.

    Returns:
        The dict of `epsilon_tf.metrics.evaluate_scores` (`zsl`, `gzsl`,
        `n_images`, `n_labels`, `variant`) plus `seconds`.
    """
    if split_reader.label_set != "all":
        raise ValueError(
            f"ZSL/GZSL evaluation needs a split labelled over all labels; "
            f"split {split_reader.name!r} has label_set="
            f"{split_reader.label_set!r}"
        )
    start = time.time()
    buffer = predict_split(
        scores_fn,
        make_dataset(split_reader, batch_size),
        num_examples=split_reader.num_examples,
        memory_budget_bytes=memory_budget_bytes,
        progress=progress,
        description=f"Evaluating on {split_reader.name} "
        f"({label_space.num_labels} labels)",
    )
    with buffer:
        scores, labels = buffer.finalize()
        if scores.shape[1] != label_space.num_labels:
            raise ValueError(
                f"The model produced {scores.shape[1]} scores per image but "
                f"the label space has {label_space.num_labels} labels"
            )
        result = evaluate_scores(
            scores,
            labels,
            ks=tuple(ks),
            unseen_mask=label_space.unseen_mask,
            variant=variant,
        )
        if on_scores is not None:
            on_scores(scores, labels)
    result["seconds"] = time.time() - start
    return result


def evaluate_model(model, split_reader, label_space, **kwargs):
    """`evaluate_split` for a Keras Epsilon model.

    The model is re-pointed at the whole label space (`with_labels`) once;
    ZSL reads the unseen columns of the same GZSL score matrix (a label's
    score does not depend on the other labels).
    """
    gzsl_model = with_labels(model, label_space.vectors)
    return evaluate_split(
        forward_scores(gzsl_model), split_reader, label_space, **kwargs
    )


def seen_label_metrics(scores, labels, ks=(3, 5)):
    """Validation metrics over seen labels: {"map", "p@k", "r@k", "f1@k"}."""
    result = evaluate_scores(
        np.asarray(scores), np.asarray(labels), ks=tuple(ks)
    )
    return result["all"]
