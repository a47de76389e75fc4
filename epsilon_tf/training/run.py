"""Train, select, evaluate, compare with ESZSL, save and export: one run."""

import json
import os
import time

import numpy as np

from epsilon_tf.baselines.eszsl import ESZSL
from epsilon_tf.config import to_dict, write_json
from epsilon_tf.data.pipeline import carve
from epsilon_tf.metrics import evaluate_scores
from epsilon_tf.training import summaries
from epsilon_tf.training.run_dir import RunDir
from epsilon_tf.training.trainer import Trainer

MODEL_NAMES = {"epsilon": "Epsilon", "lesa": "LESA", "biam": "BiAM"}


def save_keras_atomically(model, path):
    """`model.save(path)` through a temporary file and a rename."""
    tmp = f"{path}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def fit_eszsl(source, validation_fraction):
    """ESZSL (docs/design.md §7) on the same data: ridge weights picked on the
    validation images, evaluated on the test split with the same protocol.
    """
    train = source.split("train").dataset()
    space = source.label_space
    baseline = ESZSL(select_k=source.eval_ks[0])
    baseline.fit(
        carve(train, "train", validation_fraction),
        carve(train, "validation", validation_fraction),
        space.subset("seen").vectors,
    )
    scores, labels = baseline.score_dataset(
        source.split("test").dataset(), space.vectors
    )
    result = evaluate_scores(
        scores, labels, ks=source.eval_ks, unseen_mask=space.unseen_mask
    )
    result["selected"] = {
        "recipe": baseline.pooling,
        "gamma": baseline.selected.gamma,
        "lambda": baseline.selected.lam,
        "validation_f1": baseline.selected.val_f1,
    }
    return result


def chance_level(source, seed=0):
    """Metrics of uniformly random scores on the test split (the floor)."""
    labels = np.concatenate(
        [ex["labels"].numpy()[None] for ex in source.split("test").dataset()]
    )
    rng = np.random.default_rng(seed)
    scores = rng.random(labels.shape, dtype=np.float32)
    return evaluate_scores(
        scores, labels, ks=source.eval_ks,
        unseen_mask=source.label_space.unseen_mask,
    )


def format_table(rows, ks):
    """A plain-text table: one row per (model, setting)."""
    cols = ["map"] + [f"{m}@{k}" for k in ks for m in ("p", "r", "f1")]
    head = f"{'model':<10} {'setting':<8} " + " ".join(
        f"{c:>7}" for c in cols
    )
    lines = [head, "-" * len(head)]
    for name, result in rows:
        for setting in ("zsl", "gzsl"):
            block = result[setting]
            lines.append(
                f"{name:<10} {setting.upper():<8} "
                + " ".join(f"{100 * block[c]:7.2f}" for c in cols)
            )
    return "\n".join(lines)


def _rows(result, name="Epsilon"):
    rows = [(name, result)]
    rows += [(k.upper(), v) for k, v in result.get("baselines", {}).items()]
    if "chance" in result:
        rows.append(("chance", result["chance"]))
    return rows


def _caption(result, variant):
    training = result.get("training", {})
    return (
        f"Test metrics (%), {result['n_images']} images, "
        f"{result['n_labels']['zsl']} unseen / "
        f"{result['n_labels']['gzsl']} labels, protocol={variant}; best "
        f"epoch {training.get('best_epoch')} by validation seen "
        f"{training.get('select_metric')}"
    )


def skip_summary(source):
    """`{"total": {...}, "files": {file: {...}}}` of what was skipped.

    Collected from the readers' `skip_report`s (`--skip_corrupt`); None
    when no reader skips or nothing was skipped.
    """
    reports = [
        getattr(split, "skip_report", None) for split in source.splits.values()
    ]
    reports = [r for r in reports if r is not None]
    if not reports:
        return None
    files = {}
    for report in reports:
        for file, entry in report.by_file().items():
            files[file] = entry
    if not files:
        return None
    total = {
        "bad_records": sum(e["bad_records"] for e in files.values()),
        "corrupt_files": sum(1 for e in files.values() if e["corrupt"]),
    }
    return {"total": total, "files": files}


def print_skip_summary(summary):
    if not summary:
        return
    total = summary["total"]
    print(
        f"Skipped (--skip_corrupt): {total['bad_records']} bad records, "
        f"{total['corrupt_files']} corrupt or truncated files cut short:",
        flush=True,
    )
    for file, entry in sorted(summary["files"].items()):
        parts = []
        if entry["bad_records"]:
            records = ", ".join(str(i) for i in entry["records"][:10])
            more = "..." if len(entry["records"]) > 10 else ""
            parts.append(
                f"{entry['bad_records']} bad records (index {records}{more})"
            )
        if entry["corrupt"]:
            parts.append(
                f"unreadable from record index {entry['readable_records']} "
                "on"
            )
        print(f"  {file}: {'; '.join(parts)}", flush=True)


def finished_run(trainer, variant="lesa"):
    """The metrics of a finished run in `trainer.model_dir`, or None.

    A run is finished when its last checkpoint completed every epoch (with
    the same settings: changed ones are refused as on resume) and it wrote
    `metrics.json`. Rerunning it prints so and its results, and changes
    nothing: no training, no new export version.
    """
    path = trainer.run_dir.metrics
    if not os.path.exists(path) or not trainer.is_finished():
        return None
    with open(path, encoding="utf-8") as f:
        result = json.load(f)
    if not trainer.is_chief:
        return result
    epochs = trainer.train_config.epochs
    export = result.get("export")
    print(
        f"{trainer.model_dir} is a finished run ({epochs} epochs, "
        f"metrics.json written); nothing to do"
        + (f", its export is {export}" if export else "")
        + ". To train again, use a new --model_dir.",
        flush=True,
    )
    if "zsl" in result and "n_labels" in result:
        ks = sorted({
            int(k.split("@")[1]) for k in result["zsl"] if "@" in k
        })
        print(_caption(result, result.get("variant", variant)), flush=True)
        name = MODEL_NAMES[trainer.model_config.model]
        print(format_table(_rows(result, name), ks), flush=True)
    return result


def train_and_evaluate(
    model_config,
    loss_config,
    train_config,
    source,
    variant="lesa",
    baseline=True,
    export_fn=None,
    data_config=None,
):
    """Trains (or resumes), restores the best epoch, evaluates and saves.

    Writes `metrics.json` in `model_dir`: the model's ZSL/GZSL block at the
    top level (the shape of `eval.py --metrics_out`), plus `training`,
    `baselines` (ESZSL), `chance`, `skipped` (with `skip_corrupt`, per
    file) and `timings_seconds` (per stage). Saves `model.keras`, the label
    space and, when `export_fn` is given, calls it with the trainer to
    export. A finished run (`finished_run`) is reported and left as it is.

    Args:
        data_config: `DataConfig` or None. Recorded in `config.json` (so
            `eval.py --model_dir` evaluates on the run's own data) and
            checked on resume.

    Returns:
        The metrics dict.
    """
    timings = {}
    clock = [time.time()]

    def lap(name):
        now = time.time()
        timings[name] = round(now - clock[0], 2)
        clock[0] = now

    trainer = Trainer(
        model_config, loss_config, train_config, source,
        data_config=data_config,
    )
    previous = finished_run(trainer, variant)
    if previous is not None:
        return previous
    lap("setup")
    training = trainer.train()
    lap("training")
    training["seconds"] = timings["setup"] + timings["training"]
    if not trainer.is_chief:
        return None
    trainer.restore_best()
    result = trainer.evaluate_test(variant=variant)
    result["training"] = training
    lap("test_evaluation")
    if baseline:
        result["baselines"] = {
            "eszsl": fit_eszsl(source, train_config.validation_fraction)
        }
        lap("eszsl_baseline")
    result["chance"] = chance_level(source)
    lap("chance")
    result["config"] = to_dict(
        trainer.model_config, loss_config, train_config
    )
    run = RunDir(train_config.model_dir)
    source.label_space.save(run.label_space)
    save_keras_atomically(trainer.model, run.keras_model)
    if export_fn is not None and train_config.export:
        result["export"] = export_fn(trainer)
    lap("save_and_export")
    result["timings_seconds"] = timings
    skipped = skip_summary(source)
    if skipped:
        result["skipped"] = skipped
    write_json(run.metrics, result)
    rows = _rows(result, MODEL_NAMES[model_config.model])
    caption = _caption(result, variant)
    trainer.write_test_summaries(
        result,
        table=summaries.results_markdown(rows, source.eval_ks, caption),
    )
    print("\n" + caption, flush=True)
    print(format_table(rows, source.eval_ks), flush=True)
    print_skip_summary(skipped)
    print(
        "Time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()),
        flush=True,
    )
    return result
