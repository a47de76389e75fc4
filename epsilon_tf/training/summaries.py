"""TensorBoard output beyond the per-step scalars.

Runs under `model_dir` (point TensorBoard at `model_dir` or at a folder
of several `model_dir`s to compare runs):

- `train/`: `loss/total`, `loss/ranking`, `loss/diversity`, `grad_norm`,
  `learning_rate`, `fusion_weight` every 10 steps; weight histograms
  `weights/<variable path>` at the end of every epoch.
- `validation/`: seen-label `seen/map`, `seen/f1@3`, ... every epoch, and
  `gpa_assignments/<image id>` images of a few fixed validation images:
  the mean feature-energy map, then one map per GPA prompt, each over the
  region grid.
- `test/`: at the end, `test/zsl/<metric>` and `test/gzsl/<metric>` of
  the selected epoch (plus `eszsl/...` and `chance/...` when computed),
  `validation/best_<metric>`, precision-recall curves
  `pr_unseen/<label>` for the most frequent unseen labels, and the run's
  hyper-parameters with those metrics for the HParams dashboard.
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf

from epsilon_tf.visualization.heatmaps import (
    assignment_panel,
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
# Hyper-parameters that only say where or how loudly a run happens.
_NOT_HPARAMS = {
    "model_dir", "verbose", "export", "export_top_k", "export_precision",
}


def write_scalars(writer, values, step):
    """`tf.summary.scalar` of every item of `values` (no-op for None)."""
    if writer is None:
        return
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.scalar(name, value)


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
    with writer.as_default(step=step):
        for i, image_id in enumerate(image_ids):
            panel = assignment_panel(maps[i], energy[i], grid)
            tf.summary.image(
                f"gpa_assignments/{image_id}",
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
    """PR-curve summaries `pr_unseen/<name>` from `pr_curve_data` output."""
    from tensorboard.plugins.pr_curve import summary as pr_summary

    if writer is None:
        return
    with writer.as_default(step=step):
        for (y, p, w), name in zip(curves, names, strict=True):
            pb = pr_summary.pb(
                f"pr_unseen/{name}",
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
    """Scalars of a `train_and_evaluate` result: `test/zsl/map`, ..."""
    values = {}
    blocks = [("test", result)]
    blocks += [(name, r) for name, r in result.get("baselines", {}).items()]
    if "chance" in result:
        blocks.append(("chance", result["chance"]))
    for prefix, block in blocks:
        for setting in ("zsl", "gzsl"):
            for metric, value in block.get(setting, {}).items():
                if metric.startswith("n_") or isinstance(value, bool):
                    continue  # counts, not metrics
                if isinstance(value, (int, float)):
                    values[f"{prefix}/{setting}/{metric}"] = float(value)
    training = result.get("training", {})
    if "best_validation" in training:
        metric = select_metric or training.get("select_metric", "score")
        values[f"validation/best_{metric}"] = float(
            training["best_validation"]
        )
    return values


def write_hparams(writer, hparams, metric_names, trial_id, start_time=None):
    """Hyper-parameters of one run and the metrics to show beside them."""
    from tensorboard.plugins.hparams import api as hp

    if writer is None:
        return
    with writer.as_default():
        hp.hparams_config(
            hparams=[hp.HParam(name) for name in sorted(hparams)],
            metrics=[hp.Metric(name) for name in metric_names],
        )
        hp.hparams(
            hparams, trial_id=trial_id,
            start_time_secs=int(start_time or time.time()),
        )
