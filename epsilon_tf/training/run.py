"""Train, select, evaluate, compare with ESZSL, save and export: one run."""

import os
import time

import numpy as np

from epsilon_tf.config import to_dict, write_json
from epsilon_tf.data.pipeline import carve
from epsilon_tf.metrics import evaluate_scores
from epsilon_tf.training.trainer import Trainer

MODEL_NAMES = {"epsilon": "Epsilon", "lesa": "LESA", "biam": "BiAM"}


def save_keras_atomically(model, path):
    """`model.save(path)` through a temporary file and a rename."""
    tmp = f"{path}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def fit_eszsl(source, validation_fraction):
    """ESZSL (DESIGN §7) on the same data: ridge weights picked on the
    validation images, evaluated on the test split with the same protocol.
    """
    from epsilon_tf.baselines.eszsl import ESZSL

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


def train_and_evaluate(
    model_config,
    loss_config,
    train_config,
    source,
    variant="lesa",
    baseline=True,
    export_fn=None,
):
    """Trains (or resumes), restores the best epoch, evaluates and saves.

    Writes `metrics.json` in `model_dir`: the model's ZSL/GZSL block at the
    top level (the shape of `eval.py --metrics_out`), plus `training`,
    `baselines` (ESZSL), `chance` and `timings_seconds` (per stage). Saves
    `model.keras`, the label space and, when `export_fn` is given, calls it
    with the trainer to export.

    Returns:
        The metrics dict.
    """
    timings = {}
    clock = [time.time()]

    def lap(name):
        now = time.time()
        timings[name] = round(now - clock[0], 2)
        clock[0] = now

    trainer = Trainer(model_config, loss_config, train_config, source)
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
    model_dir = train_config.model_dir
    source.label_space.save(os.path.join(model_dir, "label_space"))
    save_keras_atomically(trainer.model, os.path.join(model_dir, "model.keras"))
    if export_fn is not None and train_config.export:
        result["export"] = export_fn(trainer)
    lap("save_and_export")
    result["timings_seconds"] = timings
    write_json(os.path.join(model_dir, "metrics.json"), result)
    trainer.write_test_summaries(result)
    rows = [(MODEL_NAMES[model_config.model], result)]
    rows += [(k.upper(), v) for k, v in result.get("baselines", {}).items()]
    rows.append(("chance", result["chance"]))
    print(
        f"\nTest metrics (%), {result['n_images']} images, "
        f"{result['n_labels']['zsl']} unseen / "
        f"{result['n_labels']['gzsl']} labels, protocol={variant}; best "
        f"epoch {training['best_epoch']} by validation seen "
        f"{training['select_metric']}",
        flush=True,
    )
    print(format_table(rows, source.eval_ks), flush=True)
    print(
        "Time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()),
        flush=True,
    )
    return result
