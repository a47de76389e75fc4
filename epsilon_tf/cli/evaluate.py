"""What `eval.py` does, with plain arguments (no flags).

TensorFlow, Keras and what imports them come with `cli/scoring.py`,
imported only when a model is scored: evaluating a `--predictions` score
matrix loads no TensorFlow at all.
"""

import dataclasses
import json
import os

import numpy as np

from epsilon_tf.cli.own_data import describe_native
from epsilon_tf.config import DataConfig, write_json
from epsilon_tf.data.training_checks import check_ks
from epsilon_tf.export.versions import read_export_info
from epsilon_tf.metrics import evaluate_scores
from epsilon_tf.metrics.columns import settings_table
from epsilon_tf.training import run_dir as run_dir_lib

_NPZ_EXPECTED = (
    "expected an .npz archive of `scores` [images, labels] and `labels` "
    "(+1/-1/0), optionally `unseen_mask` (np.savez(path, scores=..., "
    "labels=...))"
)


def load_predictions(path):
    """Reads and checks a predictions `.npz` (scores, labels, unseen_mask).

    Raises:
        FileNotFoundError / ValueError naming the file and what is wrong.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Predictions file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; {_NPZ_EXPECTED}")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise ValueError(
            f"{path} is a single .npy array, not an .npz archive; "
            f"{_NPZ_EXPECTED}"
        )
    if not magic.startswith(b"PK"):
        raise ValueError(f"{path} is not an .npz archive; {_NPZ_EXPECTED}")
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError:
        raise ValueError(
            f"{path}: not a readable .npz of plain (non-object) arrays; "
            f"{_NPZ_EXPECTED}"
        ) from None
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
        except ValueError:  # object arrays need pickle: refused
            raise ValueError(
                f"{path}: not a readable .npz of plain arrays (an array "
                "holds Python objects); scores and labels must be numeric"
            ) from None
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


DATA_FIELDS = (
    "dataset", "data_format", "cache_dir", "data_dir", "train_files",
    "test_files", "label_dir", "word_vectors", "feature_shape",
    "skip_corrupt", "names_file",
)


def training_dir_of(mode, path):
    """The training directory of an evaluated model, or None.

    `--model_dir` is one; a `--saved_model` version directory is one when
    it lies in `RUN/export/<version>` next to the run's `config.json`.
    """
    if mode == "model_dir":
        return path
    run = run_dir_lib.of_export_version(path)
    return None if run is None else run.path


def run_data_config(mode, path, flag_config, given=()):
    """The `DataConfig` to evaluate on: the run's own, then the flags'.

    Args:
        mode: "model_dir" or "saved_model".
        path: its directory.
        flag_config: `DataConfig` from the flags.
        given: names of the data flags given on the command line; they
            override the run's fields.

    Returns:
        `DataConfig`, with `.origin` set to a description of where it came
        from (printed by `run_evaluation`).
    """
    run = training_dir_of(mode, path)
    config_path = None if run is None else run_dir_lib.RunDir(run).config
    recorded = None
    if config_path and os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            try:
                recorded = json.load(f).get("DataConfig")
            except json.JSONDecodeError as e:
                raise ValueError(f"{config_path} is not valid JSON: {e}") from e
    if not recorded:
        cfg = flag_config
        origin = "the data flags"
        if mode == "model_dir" and not given:
            origin += (
                f" ({config_path or path} records no data: a run from "
                "before this was recorded; pass the data flags)"
            )
        cfg.origin = origin
        return cfg
    known = {f for f in DATA_FIELDS if f in recorded}
    fields = {k: recorded[k] for k in known}
    if "feature_shape" in fields:
        fields["feature_shape"] = tuple(fields["feature_shape"])
    # Only the test split is evaluated: the run's training files are not
    # needed (and may have moved).
    fields["train_files"] = None
    for name in given:
        fields[name] = getattr(flag_config, name)
    cfg = DataConfig(**fields)
    overridden = sorted(set(given))
    cfg.origin = f"the run's data (from {config_path})" + (
        f", with {', '.join('--' + n for n in overridden)} from the command "
        "line" if overridden else ""
    )
    return cfg


def describe_data(cfg):
    """One line naming the data of a `DataConfig`."""
    parts = [f"dataset={cfg.dataset}"]
    shape = cfg.feature_shape
    if cfg.dataset == "synthetic" and not cfg.data_dir:
        from epsilon_tf.data.worlds.synthetic import SyntheticConfig

        parts.append(f"built-in benchmark (cache {cfg.cache_dir})")
        # The world's shape (what `make_source` builds), not the unused
        # --feature_shape.
        shape = SyntheticConfig().feature_shape
    elif cfg.data_format == "native":
        # Its sidecar's shape and labels, not the unused flag defaults.
        return describe_native(cfg.data_dir)
    else:
        parts.append(f"format={cfg.data_format}")
        parts.append(f"test files {cfg.test_files}")
        if cfg.label_dir:
            parts.append(f"labels {cfg.label_dir}")
        if cfg.word_vectors:
            parts.append(f"word vectors {cfg.word_vectors}")
    parts.append("features " + "x".join(str(v) for v in shape))
    return ", ".join(parts)


def _check_shape(what, expected, source):
    got = tuple(int(v) for v in source.feature_shape)
    expected = tuple(int(v) for v in expected)
    if got != expected:
        raise ValueError(
            f"{what} takes features of shape {expected[0]}x{expected[1]} "
            f"(regions x channels) but the test data has "
            f"{got[0]}x{got[1]} (--feature_shape, --dataset, --test_files); "
            "evaluate it on the data it was trained for"
        )


def _check_labels(what, expected_dim, label_space):
    if expected_dim is not None and label_space.embedding_dim != expected_dim:
        raise ValueError(
            f"{what} takes {expected_dim}-d label embeddings but the test "
            f"data's word vectors are {label_space.embedding_dim}-d "
            "(--word_vectors, --label_dir)"
        )


def print_metrics(result, ks, title):
    print(title)
    for line in settings_table(result, ks):
        print(line)
    print(f"(values in %, {result['n_images']} images, "
          f"variant={result.get('variant', 'lesa')})", flush=True)
    if "map_definition" in result:
        print(f"mAP: {result['map_definition']}", flush=True)


def _export_precision(saved_model_dir):
    """The `precision` an export recorded, or None (no export info)."""
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
        try:
            result = evaluate_scores(
                scores, labels, ks=tuple(ks or (3, 5)), unseen_mask=unseen,
                variant=variant,
            )
        except ValueError as e:  # NaN scores, bad labels: name the file
            raise ValueError(f"--predictions {path}: {e}") from None
        print_metrics(result, ks or (3, 5), f"Metrics of {path}")
    else:
        from epsilon_tf.cli import scoring  # TensorFlow: only from here on

        if source is None:
            if data_config is not None:
                print(
                    f"Evaluating {path} on {describe_data(data_config)}: "
                    f"{getattr(data_config, 'origin', 'the data flags')}",
                    flush=True,
                )
            source = scoring.load_source(data_config, progress)
        if ks:
            source = dataclasses.replace(source, eval_ks=tuple(ks))
        if "test" not in source.splits:
            raise ValueError(
                "The evaluation data has no test split (--test_files, or a "
                "'test' split in --data_dir)"
            )
        # K against the ZSL/GZSL label counts, before any scoring.
        check_ks(source.eval_ks, source.label_space, bool(ks),
                 "the test data's label space", validation=False)
        space = source.label_space
        model = None
        title = f"{source.name} test split, {path}"
        if mode == "model_dir":
            model = scoring.load_keras_model(path)
            _check_shape(
                f"The model of {path}", model.input_shape[1:], source
            )
            scores_fn = scoring.keras_scores_fn(model, space)
        elif mode == "saved_model":
            info = read_export_info(path) or {}
            if info.get("feature_shape"):
                _check_shape(
                    f"The SavedModel {path}", info["feature_shape"], source
                )
            _check_labels(
                f"The SavedModel {path}", info.get("embedding_dim"), space
            )
            scores_fn = scoring.saved_model_scores_fn(path, space)
            precision = _export_precision(path)
            if precision == "bfloat16":
                # Not the model's float32 numbers: say so wherever they go.
                title += " (bfloat16 export: approximate scores)"
        else:
            raise ValueError(f"Unknown mode {mode!r}")
        result = scoring.evaluate_test_split(
            scores_fn, source, batch_size=batch_size, variant=variant,
            memory_budget_bytes=memory_budget_bytes, progress=progress,
        )
        if mode == "saved_model":
            result["export_precision"] = precision
        print_metrics(result, source.eval_ks, title)
        if examples:
            out = examples_out or run_dir_lib.RunDir(path).examples
            written = scoring.write_examples(
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
