"""What `eval.py` does, with plain arguments (no flags)."""

import dataclasses
import os

import numpy as np

from epsilon_tf.config import write_json
from epsilon_tf.metrics import evaluate_scores


def load_predictions(path):
    """Reads and checks a predictions `.npz` (scores, labels, unseen_mask).

    Raises:
        FileNotFoundError / ValueError naming the file and what is wrong.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Predictions file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ValueError(
            f"{path}: not a readable .npz of plain arrays ({e})"
        ) from e
    except Exception as e:  # zipfile.BadZipFile, OSError, EOFError
        raise ValueError(f"{path}: not a valid .npz file ({e})") from e
    with data:
        keys = set(data.files)
        missing = {"scores", "labels"} - keys
        if missing:
            raise ValueError(
                f"{path}: missing array(s) {sorted(missing)}; expected "
                f"`scores` [images, labels] and `labels` (+1/-1/0), "
                f"optionally `unseen_mask`. Found: {sorted(keys)}"
            )
        try:
            scores = np.asarray(data["scores"])
            labels = np.asarray(data["labels"])
            unseen = data["unseen_mask"] if "unseen_mask" in keys else None
        except ValueError as e:  # object arrays need pickle: refused
            raise ValueError(
                f"{path}: not a readable .npz of plain arrays ({e})"
            ) from e
    if scores.ndim != 2:
        raise ValueError(
            f"{path}: `scores` must be 2-D [images, labels]. "
            f"Received: shape={scores.shape}"
        )
    if labels.shape != scores.shape:
        raise ValueError(
            f"{path}: `labels` must have the shape of `scores` "
            f"{scores.shape}. Received: shape={labels.shape}"
        )
    if not np.issubdtype(scores.dtype, np.number):
        raise ValueError(
            f"{path}: `scores` must be numeric. Received: dtype={scores.dtype}"
        )
    if unseen is not None:
        unseen = np.asarray(unseen)
        if unseen.shape != (scores.shape[1],):
            raise ValueError(
                f"{path}: `unseen_mask` must have one entry per label "
                f"({scores.shape[1]}). Received: shape={unseen.shape}"
            )
        if unseen.dtype != bool:
            if not np.isin(unseen, (0, 1)).all():
                raise ValueError(
                    f"{path}: `unseen_mask` must be boolean (or 0/1)"
                )
            unseen = unseen.astype(bool)
    return scores.astype(np.float32, copy=False), labels, unseen


def print_metrics(result, ks, title):
    blocks = [b for b in ("zsl", "gzsl", "all") if b in result]
    cols = ["map"] + [f"{m}@{k}" for k in ks for m in ("p", "r", "f1")]
    print(title)
    head = f"{'setting':<8} {'labels':>6} " + " ".join(f"{c:>7}" for c in cols)
    print(head)
    print("-" * len(head))
    for b in blocks:
        print(
            f"{b.upper():<8} {result['n_labels'][b]:>6} "
            + " ".join(f"{100 * result[b][c]:7.2f}" for c in cols)
        )
    print(f"(values in %, {result['n_images']} images, "
          f"variant={result.get('variant', 'lesa')})", flush=True)
    if "map_definition" in result:
        print(f"mAP: {result['map_definition']}", flush=True)


def _source(data_config, progress):
    from epsilon_tf.data.sources import make_source

    return make_source(data_config, progress=progress)


def _load_keras_model(model_dir):
    import keras

    import epsilon_tf.layers  # noqa: F401  (registers the custom layers)

    path = os.path.join(model_dir, "model.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No trained model at {path}; train first (train.py "
            f"--model_dir={model_dir})"
        )
    return keras.saving.load_model(path)


def _keras_scores_fn(model_dir, label_space, model=None):
    from epsilon_tf.models import with_labels
    from epsilon_tf.training.evaluation import forward_scores

    model = model if model is not None else _load_keras_model(model_dir)
    return forward_scores(with_labels(model, label_space.vectors))


def _saved_model_scores_fn(saved_model_dir, label_space):
    import tensorflow as tf

    if not os.path.exists(os.path.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(
            f"No SavedModel at {saved_model_dir} (expected saved_model.pb; "
            "give the numbered version directory)"
        )
    loaded = tf.saved_model.load(saved_model_dir)
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


def _export_precision(saved_model_dir):
    """The `precision` an export recorded, or None (no export info)."""
    from epsilon_tf.export.serving import read_export_info

    info = read_export_info(saved_model_dir)
    return None if info is None else info.get("precision", "float32")


def run_evaluation(
    mode,
    path,
    data_config=None,
    ks=None,
    variant="lesa",
    metrics_out=None,
    batch_size=256,
    memory_budget_bytes=2 * 2**30,
    progress=True,
    examples=0,
    examples_out=None,
    source=None,
):
    """Evaluates and prints; writes the metrics JSON when asked.

    Args:
        mode: "model_dir", "saved_model" or "predictions".
        path: the directory or file of that mode.
        data_config: `DataConfig` of the evaluation data (not for
            "predictions").
        ks: tuple of int or None (the dataset's default K).
        variant: "lesa" or "biam_openimages".
        metrics_out: str or None. JSON output path.
        examples: int. Also draw this many test images, paper-style (top
            labels beside the GPA maps; `epsilon_tf.visualization.examples`).
            Needs mode "model_dir": only the Keras model gives the maps.
        examples_out: str or None. Folder of the example PNGs (default
            `<model_dir>/examples`).
        source: `DatasetSource` or None. The data, instead of building it
            from `data_config`.

    Returns:
        The metrics dict.
    """
    if examples and mode != "model_dir":
        raise ValueError(
            f"Example pictures need the group-assignment maps of the Keras "
            f"model: use --model_dir (the {mode} mode has no maps)"
        )
    if mode == "predictions":
        scores, labels, unseen = load_predictions(path)
        result = evaluate_scores(
            scores, labels, ks=tuple(ks or (3, 5)), unseen_mask=unseen,
            variant=variant,
        )
        print_metrics(result, ks or (3, 5), f"Metrics of {path}")
    else:
        from epsilon_tf.training.evaluation import evaluate_split

        if source is None:
            source = _source(data_config, progress)
        if ks:
            source = dataclasses.replace(source, eval_ks=tuple(ks))
        space = source.label_space
        model = None
        title = f"{source.name} test split, {path}"
        if mode == "model_dir":
            model = _load_keras_model(path)
            scores_fn = _keras_scores_fn(path, space, model)
        elif mode == "saved_model":
            scores_fn = _saved_model_scores_fn(path, space)
            precision = _export_precision(path)
            if precision == "bfloat16":
                # Not the model's float32 numbers: say so wherever they go.
                title += " (bfloat16 export: approximate scores)"
        else:
            raise ValueError(f"Unknown mode {mode!r}")
        from epsilon_tf.data.pipeline import input_errors

        with input_errors():  # NaN/Inf features: a message naming the image
            result = evaluate_split(
                scores_fn,
                source.split("test"),
                space,
                ks=source.eval_ks,
                batch_size=batch_size,
                variant=variant,
                memory_budget_bytes=memory_budget_bytes,
                progress=progress,
            )
        if mode == "saved_model":
            result["export_precision"] = precision
        print_metrics(result, source.eval_ks, title)
        if examples:
            from epsilon_tf.visualization.examples import write_examples

            out = examples_out or os.path.join(path, "examples")
            written = write_examples(
                model, source.split("test"), space, out, int(examples),
                batch_size=batch_size,
            )
            result["examples"] = written
            print(f"Wrote {len(written)} example pictures to {out}")
    if metrics_out:
        os.makedirs(os.path.dirname(os.path.abspath(metrics_out)),
                    exist_ok=True)
        write_json(metrics_out, result)
    return result
