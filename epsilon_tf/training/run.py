"""One run, start to end: the only place that orchestrates training.

`train_and_evaluate` builds (task, model, optimizer), trains or resumes,
restores the best epoch, evaluates on the test split, scores the
baselines (ESZSL, chance), saves (`metrics.json`, `model.keras`, the
label space) and exports. `train.py` and the experiments
(`experiments/single_run.py`) both call it; what differs between them
(no export, quiet, no baselines, which model is saved) is its arguments.

`build_trainer` is the build part alone: the process-wide settings once
(`configure_runtime`), then the task, model, optimizer and hooks, in an
order that keeps a run's random draws the same.
"""

import dataclasses
import functools
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from epsilon_tf import storage
from epsilon_tf.baselines.eszsl import POOLINGS
from epsilon_tf.config import to_dict, write_json
from epsilon_tf.config.train import budget_epochs
from epsilon_tf.metrics import evaluate_scores
from epsilon_tf.metrics.columns import markdown_table, plain_table, result_ks
from epsilon_tf.training import run_lock, summaries
from epsilon_tf.training import strategy as strategy_lib
from epsilon_tf.training.hooks import ConsoleProgress, TensorBoardSummaries
from epsilon_tf.training.run_dir import RunDir
from epsilon_tf.training.task import Task, fit_eszsl_model
from epsilon_tf.training.trainer import Trainer

MODEL_NAMES = {"epsilon": "Epsilon", "lesa": "LESA", "biam": "BiAM"}


def configure_runtime(train_config):
    """The process-wide settings of a run, set once before it builds.

    Op determinism (`deterministic`), every random seed (Python, NumPy,
    TensorFlow and Keras: `seed`) and the Keras dtype policy (bfloat16
    compute with `mixed_precision`: float32 variables, loss and scores,
    and bfloat16 keeps float32's range, so no loss scaling).
    """
    if train_config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(train_config.seed)
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if train_config.mixed_precision else "float32"
    )


def steps_per_epoch(train_config, source):
    """Optimizer steps per epoch: `train_config.steps_per_epoch`, else
    the training subset's batches, or None when its size is unknown."""
    cfg = train_config
    if cfg.steps_per_epoch:
        return int(cfg.steps_per_epoch)
    n = source.split("train").example_count()
    if n is None:
        if cfg.strategy in ("multi_worker", "tpu"):
            raise ValueError(
                f"strategy={cfg.strategy} needs --steps_per_epoch when "
                "the number of training examples is unknown"
            )
        return None
    steps = int(n * (1 - cfg.validation_fraction)) // cfg.batch_size
    if steps < 1:
        raise ValueError(
            f"The training split has about {n} examples, fewer than one "
            f"batch of {cfg.batch_size}; lower --batch_size"
        )
    return steps


def with_step_budget(train_config, steps):
    """`train_config` with its epochs raised to the step budget
    (`min_steps`, `config.train.budget_epochs`), said when it raises
    them."""
    epochs = budget_epochs(train_config.epochs, train_config.min_steps, steps)
    if epochs == train_config.epochs:
        return train_config
    if train_config.verbose:
        print(
            f"Step budget: {epochs} epochs of {steps} steps "
            f"({epochs * steps} optimizer steps, at least --min_steps="
            f"{train_config.min_steps}; the training split is small for "
            f"{train_config.epochs} epochs; --epochs=N trains N)",
            flush=True,
        )
    return dataclasses.replace(train_config, epochs=epochs)


def _make_strategy(train_config):
    strategy = strategy_lib.make_strategy(train_config.strategy)
    replicas = strategy.num_replicas_in_sync
    if strategy_lib.is_chief(strategy) and train_config.strategy != "default":
        devices = getattr(strategy.extended, "worker_devices", ())
        print(
            f"strategy={train_config.strategy} "
            f"({type(strategy).__name__}): {replicas} replicas "
            f"({', '.join(devices)})",
            flush=True,
        )
    if train_config.batch_size % replicas:
        raise ValueError(
            f"`batch_size` ({train_config.batch_size}) must be divisible "
            f"by the number of replicas ({replicas})"
        )
    return strategy


def build_trainer(
    model_config, loss_config, train_config, source, data_config=None,
):
    """The `Trainer` of a run: settings, task, model, optimizer, hooks.

    Sets the process-wide settings (`configure_runtime`), builds the
    `Task` (its model over the source's seen labels, the learning-rate
    schedule and the optimizer, under the strategy of
    `train_config.strategy`) and gives the trainer its hooks (on the
    chief only): the console progress with `verbose`, and TensorBoard
    summaries.

    Args:
        model_config, loss_config, train_config: the run's configs.
        source: `DatasetSource`.
        data_config: `DataConfig` or None (recorded in `config.json`).
    """
    steps = steps_per_epoch(train_config, source)
    train_config = with_step_budget(train_config, steps)
    task = Task(
        model_config, loss_config, train_config, source.label_space,
        source=source,
    )
    strategy = _make_strategy(train_config)
    configure_runtime(train_config)
    with strategy.scope():
        model = task.build_model()
        optimizer = task.create_optimizer(task.learning_rate(steps))
    hooks = []
    if strategy_lib.is_chief(strategy):
        if train_config.verbose:
            hooks.append(ConsoleProgress(train_config.progress_every_seconds))
        hooks.append(TensorBoardSummaries(
            RunDir(train_config.model_dir),
            summary_images=train_config.summary_images,
            pr_curve_labels=train_config.pr_curve_labels,
        ))
    return Trainer(
        task, model, optimizer, strategy, steps, data_config=data_config,
        hooks=hooks,
    )


def tensorboard_hook(trainer):
    """The trainer's `TensorBoardSummaries` hook, or None."""
    for hook in trainer.hooks:
        if isinstance(hook, TensorBoardSummaries):
            return hook
    return None


def save_keras_atomically(model, path):
    """`model.save(path)` through a temporary file and a rename."""
    tmp = f"{path}.tmp.keras"
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        # A full disk: the partial file goes, the previous one stays.
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def fit_eszsl(source, validation_fraction, fitted=None, poolings=POOLINGS):
    """ESZSL (docs/design.md §7) on the same data: ridge weights picked on the
    validation images, evaluated on the test split with the same protocol.

    `fitted`: an `ESZSL` already fitted this way (an Epsilon warm start's,
    `Task.warm_start`), reused when it chose among the same `poolings`
    (default: every recipe, as `train.py` prints it).
    """
    space = source.label_space
    if fitted is not None and tuple(fitted.poolings) == tuple(poolings):
        baseline = fitted
    else:
        baseline = fit_eszsl_model(source, validation_fraction, poolings)
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
        print(_caption(result, result.get("variant", variant)), flush=True)
        name = MODEL_NAMES[trainer.model_config.model]
        print(plain_table(_rows(result, name), result_ks(result["zsl"])),
              flush=True)
    return result


# ---------------------------------------------------------------- faults
# (issue 24) The run directory's lock and the check of free space before
# training; see docs/faults.md.


def holding_run_lock(fn):
    """Runs `fn(model_config, loss_config, train_config, ...)` holding the
    lock of `train_config.model_dir` (`run_lock.RunLock`); a non-chief
    worker of a cluster shares the chief's directory and takes none."""

    @functools.wraps(fn)
    def locked(model_config, loss_config, train_config, *args, **kwargs):
        if not run_lock.is_chief_process(train_config.strategy):
            return fn(model_config, loss_config, train_config, *args,
                      **kwargs)
        with run_lock.RunLock(train_config.model_dir, "training"):
            return fn(model_config, loss_config, train_config, *args,
                      **kwargs)

    return locked


# Bytes of a checkpoint per byte of model weights: the weights and the two
# moment slots of the Adam-family optimizers.
CHECKPOINT_BYTES_PER_WEIGHT_BYTE = 3


def check_free_space(trainer):
    """Refuses to train when the run directory's filesystem cannot hold
    one more checkpoint (its size is known from the model's weights)."""
    weights = sum(
        int(v.numpy().nbytes) for v in trainer.model.weights
    )
    storage.require_free_space(
        trainer.model_dir, CHECKPOINT_BYTES_PER_WEIGHT_BYTE * weights,
        "one checkpoint",
    )


@holding_run_lock
def train_and_evaluate(
    model_config,
    loss_config,
    train_config,
    source,
    variant="lesa",
    baseline=True,
    export_fn=None,
    data_config=None,
    *,
    chance=True,
    save_model=True,
    record=True,
):
    """Runs one experiment: the one orchestrator of training.

    Builds the trainer (`build_trainer`), trains (or resumes), restores
    the best epoch, evaluates on the test split, scores ESZSL (`baseline`)
    and chance (`chance`) on the same split, saves `model.keras` and the
    label space (`save_model`), calls `export_fn(trainer)` (with
    `train_config.export`) and, with `record`, writes `metrics.json` in
    `model_dir`, the final TensorBoard summaries and prints the results
    table. `metrics.json` holds the model's ZSL/GZSL block at the top
    level (the shape of `eval.py --metrics_out`), plus `training`,
    `baselines` (ESZSL), `chance`, `config`, `export`, `skipped` (with
    `skip_corrupt`, per file) and `timings_seconds` (per stage). Without
    `record` the result is the test metrics with `training` (and what
    was asked for: `baselines`, `chance`, `export`).

    With `record`, a finished run (`finished_run`: every epoch done and
    `metrics.json` written) is reported and left as it is.

    The label space is saved when training starts (so a run can be
    exported mid-training) and `model.keras` (the best epoch) before the
    test evaluation (so a run whose evaluation fails can still be
    evaluated and exported).

    The run directory is locked while it trains (`holding_run_lock`): a
    second trainer there is refused; a full disk ends in a `DiskFullError`
    naming the file, with everything written before intact.

    Args:
        variant: the AP protocol of the test metrics.
        baseline: bool. Fit and score ESZSL.
        export_fn: callable(trainer) -> export info, or None.
        data_config: `DataConfig` or None. Recorded in `config.json` (so
            `eval.py --model_dir` evaluates on the run's own data) and
            checked on resume.
        chance: bool. Score uniformly random scores (seed 0).
        save_model: bool. Save `model.keras` and the label space.
        record: bool. `metrics.json`, the test summaries, the printed
            table (the experiments keep their own `result.json`).

    Returns:
        The metrics dict (None on a worker that is not the chief).
    """
    timings = {}
    clock = [time.time()]

    def lap(name):
        now = time.time()
        timings[name] = round(now - clock[0], 2)
        clock[0] = now

    trainer = build_trainer(
        model_config, loss_config, train_config, source,
        data_config=data_config,
    )
    tensorboard = tensorboard_hook(trainer)
    if record:
        previous = finished_run(trainer, variant)
        if previous is not None:
            return previous
    if trainer.is_chief:
        check_free_space(trainer)
    run = RunDir(train_config.model_dir)
    if save_model and trainer.is_chief:
        # Now, not at the end: a run can be exported mid-training (from
        # its best/ checkpoint) and after a failed test evaluation.
        with storage.writing(run.label_space, what="the label space"):
            source.label_space.save(run.label_space)
    lap("setup")
    training = trainer.train()
    lap("training")
    if not trainer.is_chief:
        return None
    trainer.restore_best()
    if save_model:
        # Before the test evaluation: if it fails, the trained model stays
        # usable (eval.py --model_dir, python -m epsilon_tf.export).
        with storage.writing(run.keras_model, what="the Keras model"):
            save_keras_atomically(trainer.model, run.keras_model)
    result = trainer.evaluate_test(
        variant=variant,
        on_scores=None if tensorboard is None
        else tensorboard.pr_curve_hook(source.label_space),
    )
    result["training"] = training
    lap("test_evaluation")
    if baseline:
        result["baselines"] = {
            "eszsl": fit_eszsl(source, train_config.validation_fraction,
                               fitted=trainer.task.eszsl)
        }
        lap("eszsl_baseline")
    if chance:
        result["chance"] = chance_level(source)
        lap("chance")
    if record:
        result["config"] = to_dict(
            trainer.model_config, loss_config, trainer.train_config
        )
    if export_fn is not None and train_config.export:
        with storage.writing(run.export, what="the TF Serving export"):
            result["export"] = export_fn(trainer)
    lap("save_and_export")
    if record:
        _record(trainer, tensorboard, result, variant, timings)
    return result


def _record(trainer, tensorboard, result, variant, timings):
    """Completes `result` (`timings_seconds`, `skipped`) and writes it to
    `metrics.json`, the final summaries and the printed results."""
    result["training"]["seconds"] = timings["setup"] + timings["training"]
    result["timings_seconds"] = timings
    skipped = skip_summary(trainer.source)
    if skipped:
        result["skipped"] = skipped
    write_json(trainer.run_dir.metrics, result)
    ks = trainer.source.eval_ks
    rows = _rows(result, MODEL_NAMES[trainer.model_config.model])
    caption = _caption(result, variant)
    if tensorboard is not None:
        tensorboard.write_test_summaries(
            result, trainer.global_step(),
            summaries.flat_hparams(
                trainer.model_config, trainer.loss_config,
                trainer.train_config,
            ),
            trainer.train_config.select_metric,
            table=markdown_table(rows, ks, caption),
        )
    print("\n" + caption, flush=True)
    print(plain_table(rows, ks), flush=True)
    print_skip_summary(skipped)
    print(
        "Time (s): " + ", ".join(
            f"{k} {v:.1f}" for k, v in result["timings_seconds"].items()
        ),
        flush=True,
    )
    print_saved_to(trainer.run_dir, result.get("export"))


def print_saved_to(run, export):
    """Says where the model and its SavedModel export went (issue 23)."""
    print(f"Saved the model to {run.keras_model}"
          + (f"; exported SavedModel: {export}" if export else ""),
          flush=True)
