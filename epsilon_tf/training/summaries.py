"""TensorBoard output beyond the per-step scalars.

Runs under `model_dir` (point TensorBoard at `model_dir` or at a folder
of several `model_dir`s to compare runs). Tags are chosen so that the
Time Series and Scalars dashboards (which sort groups by name) open on the
training losses and the test metrics, and the reference numbers (ESZSL,
chance) come last:

- `train/`: `loss/total`, `loss/ranking`, `loss/diversity`,
  `loss/attention` and
  `train/grad_norm`, `train/learning_rate`, `train/fusion_weight` every
  10 steps; weight histograms `weights/<variable path>` at the end of every
  epoch.
- `validation/`: seen-label `validation/map`, `validation/f1@3`, ... every
  epoch, `validation/best_<select_metric>` at the end, and
  `validation/gpa_maps/<image id>` images of a few fixed validation
  images: the mean feature-energy map, then one map per GPA prompt, each
  over the region grid and captioned ("energy", "group 1", ...).
- `test/`: at the end, `test/zsl/<metric>` and `test/gzsl/<metric>` of
  the selected epoch, `zz_baselines/eszsl/...` and `zz_baselines/chance/...`
  when computed, the final ZSL/GZSL table as the markdown text summary
  `test/results`, and precision-recall curves `test/pr_unseen/<label>` for
  the most frequent unseen labels.
- `model_dir` itself: the run's hyper-parameters for the HParams
  dashboard, with the test metrics first (trial ID: the run's folder
  name).

Every scalar carries a description (the "i" of its card).
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.pr_curve import summary as pr_summary

from epsilon_tf.visualization.heatmaps import (
    TILE_SIDE,
    assignment_panel,
    caption_tiles,
    feature_energy,
    infer_grid,
)

ASSIGNMENTS_DESCRIPTION = (
    "GPA group-assignment maps over the region grid, each min-max "
    "normalized: first tile = mean feature energy |x| of each region, then "
    "one tile per group prompt (dark = low, yellow = high)."
)
PR_DESCRIPTION = (
    "Precision-recall on the test split for one unseen label (ZSL), over "
    "the images annotated +1/-1 for it. Scores are min-max scaled per "
    "label to [0, 1] (an order-preserving map, so the curve is that of the "
    "raw scores at 201 thresholds)."
)
# Where the reference numbers go: a group that sorts after every other one.
BASELINES_GROUP = "zz_baselines"
TEXT_TABLE_TAG = "test/results"
_METRIC_WORDS = {
    "map": "mean average precision over the labels (LESA protocol)",
    "p": "precision", "r": "recall", "f1": "F1 of precision and recall",
}
_TRAIN_DESCRIPTIONS = {
    "loss/total": "Training loss of the step (ranking + diversity + "
    "attention), mean over the global batch.",
    "loss/ranking": "Ranking loss of the step (hinge, smooth or listwise).",
    "loss/diversity": "Prompt-diversity regularizer of the step "
    "(lambda included).",
    "loss/attention": "LESA's attention regularizers of the step (weights "
    "included; 0 for Epsilon and BiAM).",
    "train/grad_norm": "Global norm of the gradient before clipping.",
    "train/learning_rate": "Learning rate of the step (warmup, then cosine "
    "decay).",
    "train/fusion_weight": "Fusion weight a = sigmoid(theta): the share of "
    "the local (GPA) scores.",
}


def _metric_phrase(metric):
    if metric == "map":
        return _METRIC_WORDS["map"]
    name, _, k = metric.partition("@")
    if k:
        return f"{_METRIC_WORDS.get(name, name)} of the top {k} labels"
    return metric


def describe(tag):
    """The description of a scalar tag (empty for an unknown one)."""
    if tag in _TRAIN_DESCRIPTIONS:
        return _TRAIN_DESCRIPTIONS[tag]
    parts = tag.split("/")
    settings = {"zsl": "ZSL (unseen labels only)",
                "gzsl": "GZSL (seen and unseen labels)"}
    if parts[0] == "validation":
        metric = parts[-1]
        if metric.startswith("best_"):
            return (f"Best validation {_metric_phrase(metric[5:])} over the "
                    "epochs: the score that selected the epoch.")
        return (f"Validation {_metric_phrase(metric)} on the seen labels of "
                "the held-out training images, every epoch.")
    if parts[0] == "test" and len(parts) == 3:
        return (f"Test {settings.get(parts[1], parts[1])} "
                f"{_metric_phrase(parts[2])}, with the selected epoch's "
                "weights: one value, at the last step.")
    if parts[0] == BASELINES_GROUP and len(parts) == 4:
        who = ("uniformly random scores (the floor)" if parts[1] == "chance"
               else f"the {parts[1].upper()} baseline")
        return (f"Reference: {settings.get(parts[2], parts[2])} "
                f"{_metric_phrase(parts[3])} of {who}, same test split.")
    return ""


# Hyper-parameters that only say where or how loudly a run happens.
_NOT_HPARAMS = {
    "model_dir", "verbose", "export", "export_top_k", "export_precision",
    "progress_every_seconds",
}


def write_scalars(writer, values, step):
    """`tf.summary.scalar` of every item of `values` (no-op for None)."""
    if writer is None:
        return
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.scalar(name, value, description=describe(name) or None)


def write_weight_histograms(writer, model, step):
    """One histogram per trainable variable, named by its path."""
    if writer is None:
        return
    with writer.as_default(step=step):
        for variable in model.trainable_variables:
            tf.summary.histogram(
                f"weights/{variable.path}", tf.convert_to_tensor(variable)
            )


def write_assignment_images(
    writer, model, features, image_ids, step, grid_shape=None
):
    """Images of the GPA assignment maps of a few fixed images.

    Args:
        writer: summary writer or None.
        model: Epsilon model (nothing is written without a GPA branch).
        features: float array [n, N, C].
        image_ids: sequence of n str.
        step: int.
        grid_shape: (rows, cols) or None (see `infer_grid`).
    """
    if writer is None or "assignments" not in model.output:
        return
    outputs = model(tf.convert_to_tensor(features), training=False)
    maps = np.asarray(outputs["assignments"])
    grid = infer_grid(maps.shape[-1], grid_shape)
    energy = feature_energy(features)
    names = ["energy"] + [f"group {g + 1}" for g in range(maps.shape[1])]
    with writer.as_default(step=step):
        for i, image_id in enumerate(image_ids):
            panel = captioned_panel(
                assignment_panel(maps[i], energy[i], grid), names, grid
            )
            tf.summary.image(
                f"validation/gpa_maps/{image_id}",
                panel[None],
                max_outputs=1,
                description=ASSIGNMENTS_DESCRIPTION,
            )


def select_pr_labels(labels, unseen_mask, count):
    """Up to `count` unseen label columns, those with the most positives."""
    labels = np.asarray(labels)
    unseen = np.flatnonzero(np.asarray(unseen_mask))
    if count <= 0 or unseen.size == 0:
        return np.zeros([0], np.int64)
    positives = (labels[:, unseen] > 0).sum(axis=0)
    order = np.argsort(-positives, kind="stable")
    chosen = unseen[order[:count]]
    return np.sort(chosen[positives[order[:count]] > 0])


def pr_curve_data(scores, labels, columns):
    """Per chosen column: (bool labels, [0, 1] predictions, weights)."""
    out = []
    for k in columns:
        s = np.asarray(scores[:, k], np.float64)
        y = np.asarray(labels[:, k])
        lo, hi = float(s.min()), float(s.max())
        scaled = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
        out.append(
            (
                y > 0,
                np.clip(scaled, 0.0, 1.0).astype(np.float32),
                (y != 0).astype(np.float32),  # 0 = not annotated: dropped
            )
        )
    return out


def write_pr_curves(writer, curves, names, step, num_thresholds=201):
    """PR-curve summaries `test/pr_unseen/<name>` (`pr_curve_data` output)."""
    if writer is None:
        return
    with writer.as_default(step=step):
        for (y, p, w), name in zip(curves, names, strict=True):
            pb = pr_summary.pb(
                f"test/pr_unseen/{name}",
                labels=y,
                predictions=p,
                num_thresholds=num_thresholds,
                weights=w,
                description=PR_DESCRIPTION,
            )
            tf.summary.experimental.write_raw_pb(
                pb.SerializeToString(), step=step
            )


def flat_hparams(*configs):
    """`{"Config.field": value}` of the scalar fields of the configs.

    Tuples become strings ("196x512"), None is skipped; paths and output
    switches (`model_dir`, `verbose`, `export`) are left out.
    """
    out = {}
    for config in configs:
        prefix = type(config).__name__.replace("Config", "").lower()
        for field in dataclasses.fields(config):
            if field.name in _NOT_HPARAMS:
                continue
            value = getattr(config, field.name)
            if value is None:
                continue
            if isinstance(value, (tuple, list)):
                value = "x".join(str(v) for v in value)
            if not isinstance(value, (bool, int, float, str)):
                value = str(value)
            out[f"{prefix}/{field.name}"] = value
    return out


def final_metric_scalars(result, select_metric=None):
    """Scalars of a `train_and_evaluate` result, tag -> value.

    `test/zsl/map`, `test/gzsl/f1@3`, ... first, then the reference
    numbers `zz_baselines/<eszsl|chance>/<setting>/<metric>`. The best
    validation score goes to the validation run (`best_validation_scalar`).
    """
    values = {}
    blocks = [("test", result)]
    blocks += [
        (f"{BASELINES_GROUP}/{name}", r)
        for name, r in result.get("baselines", {}).items()
    ]
    if "chance" in result:
        blocks.append((f"{BASELINES_GROUP}/chance", result["chance"]))
    for prefix, block in blocks:
        for setting in ("zsl", "gzsl"):
            for metric, value in block.get(setting, {}).items():
                if metric.startswith("n_") or isinstance(value, bool):
                    continue  # counts, not metrics
                if isinstance(value, (int, float)):
                    values[f"{prefix}/{setting}/{metric}"] = float(value)
    return values


def best_validation_scalar(result, select_metric=None):
    """`{"validation/best_<metric>": score}` (empty without training)."""
    training = result.get("training", {})
    if "best_validation" not in training:
        return {}
    metric = select_metric or training.get("select_metric", "score")
    return {f"validation/best_{metric}": float(training["best_validation"])}


def write_text(writer, tag, markdown, step, description=None):
    """A markdown text summary (the Text dashboard renders it)."""
    if writer is None:
        return
    with writer.as_default(step=step):
        tf.summary.text(tag, markdown, description=description)


def hparams_metric_names(values):
    """The HParams columns: test ZSL, test GZSL, then the best validation.

    Baselines and chance do not depend on the hyper-parameters and are
    left out.
    """
    values = list(values)

    def order(tag):
        parts = tag.split("/")
        setting = parts[1] if len(parts) >= 3 else ""
        metric = parts[-1]
        # mAP first, then the metrics in the order they were computed.
        return ({"zsl": 0, "gzsl": 1}.get(setting, 2), metric != "map",
                values.index(tag))

    tests = sorted((t for t in values if t.startswith("test/")), key=order)
    return [("test", t) for t in tests] + [
        ("validation", t) for t in values if t.startswith("validation/")
    ]


def write_hparams(writer, hparams, metric_names, trial_id, start_time=None):
    """Hyper-parameters of one run and the metrics to show beside them.

    Args:
        writer: summary writer of the run's root (`model_dir`) or None.
        hparams: dict name -> value (`flat_hparams`).
        metric_names: list of tags, or of (run, tag) pairs for metrics
            written by the run's `test/` or `validation/` writers. Shown
            in this order.
        trial_id: str. The trial's name in the HParams table.
    """
    if writer is None:
        return
    metrics = []
    for item in metric_names:
        group, tag = item if isinstance(item, tuple) else (None, item)
        metrics.append(
            hp.Metric(tag, group=group, description=describe(tag) or None)
        )
    with writer.as_default():
        hp.hparams_config(
            hparams=[hp.HParam(name) for name in sorted(hparams)],
            metrics=metrics,
        )
        hp.hparams(
            hparams, trial_id=trial_id,
            start_time_secs=int(start_time or time.time()),
        )


def captioned_panel(panel, names, grid, tile_side=None, pad=4):
    """`panel` with a caption strip naming each tile ("energy", ...)."""
    return caption_tiles(
        panel, names, grid, tile_side=tile_side or TILE_SIDE, pad=pad
    )
