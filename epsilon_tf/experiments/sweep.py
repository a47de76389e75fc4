"""The sweep's trained runs as jobs, and the training of one job.

`SweepJobs` holds what every (run, seed) of the experiments derives from:
the base configs (`base_configs`), the plan (`plan.plan`) and the output
layout; `SweepJobs.job(key, seed)` is a `RunJob` with everything the run
needs. `train_run` trains one job through the one orchestrator,
`training.run.train_and_evaluate`, with the experiments' settings: no
baselines or chance (scored once for the whole sweep), no `metrics.json`,
tables or export (the runner keeps `result.json` and writes the sweep's
tables), quiet. The runner calls it in its own process, the `--jobs`
workers (`workers.py`) in theirs; `experiment_source` is the data of both.
"""

import dataclasses
import gc
import os
import time

import keras

from epsilon_tf.config import (
    LossConfig,
    ModelConfig,
    TrainConfig,
    preset_configs,
)
from epsilon_tf.config.presets import (
    DEFAULT_EPOCHS,
    QUICK_EPOCHS,
    QUICK_MODEL,
    QUICK_STEPS,
    dataset_preset,
)
from epsilon_tf.data.memory_cache import cache_in_memory
from epsilon_tf.data.sources import make_source
from epsilon_tf.experiments.plan import (
    MAIN,
    baseline_alternatives,
    budget_epochs,
    plan,
)
from epsilon_tf.training.run import steps_per_epoch, train_and_evaluate


def base_configs(options, source):
    """The model, loss and training settings every run starts from.

    The built-in synthetic world keeps the demo's widths; every other
    dataset starts from `presets.RELEASE`, as `train.py` does. The epochs
    are resolved here, once, for every run: `--epochs` when given, under
    `--quick` the quick preset's, else `DEFAULT_EPOCHS` raised to the
    preset's `min_steps` where it has one (`plan.budget_epochs`, with the
    training split's size and this batch size). The runs' `TrainConfig`
    keeps no minimum of its own (`min_steps` 0, where the field exists):
    the resolved epochs are the budget of every method.
    """
    model, loss, preset_train = preset_configs(
        dataset_preset(source.name), source.feature_shape)
    quick = options["quick"]
    if quick:
        model = dataclasses.replace(model, **QUICK_MODEL)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train = TrainConfig(
        epochs=options["epochs"] or (QUICK_EPOCHS if quick
                                     else DEFAULT_EPOCHS),
        batch_size=options["batch_size"] or preset_train.batch_size,
        learning_rate=preset_train.learning_rate,
        steps_per_epoch=options["steps_per_epoch"] or (
            QUICK_STEPS if quick else None
        ),
        export=False, verbose=0, summary_images=0, pr_curve_labels=0,
        **({"min_steps": 0} if "min_steps" in fields else {}),
    )
    min_steps = getattr(preset_train, "min_steps", 0) or 0
    if min_steps and not options["epochs"] and not quick:
        train = dataclasses.replace(train, epochs=budget_epochs(
            train.epochs, min_steps,
            source.split("train").example_count(),
            train.validation_fraction, train.batch_size,
            train.steps_per_epoch,
        ))
    return model, loss, train


def run_budget(train_config, source):
    """What a run trains for: `epochs`, `batch_size`, `steps_per_epoch`
    and `optimizer_steps` (None where the split's size is unknown), counted
    as the trainer counts them (`training.run.steps_per_epoch`)."""
    steps = steps_per_epoch(train_config, source)
    return {
        "epochs": train_config.epochs,
        "batch_size": train_config.batch_size,
        "steps_per_epoch": steps,
        "optimizer_steps": None if steps is None
        else steps * train_config.epochs,
    }


def experiment_source(options, progress=False):
    """The `DatasetSource` of the experiment options (`--ks` applied).

    Splits small enough are served from memory after their first read
    (`data.memory_cache`: the same examples in the same order, so the
    same results); the built-in world is, release features are not.
    """
    source = make_source(options["data"], progress=progress)
    if options["ks"]:
        source = dataclasses.replace(source, eval_ks=options["ks"])
    return cache_in_memory(source)


@dataclasses.dataclass(frozen=True)
class RunJob:
    """One (run, seed) of the sweep.

    Attributes:
        key: str. The run's key (`plan.Run.key`).
        method: str. Its name in the tables.
        seed: int.
        model_config: `ModelConfig`.
        loss_config: `LossConfig`.
        train_config: `TrainConfig` (`model_dir` and `seed` set).
        variant: str. The AP protocol of the test metrics.
        save_model: bool. Keep `model.keras` (Figure 1's models).
    """

    key: str
    method: str
    seed: int
    model_config: ModelConfig
    loss_config: LossConfig
    train_config: TrainConfig
    variant: str
    save_model: bool


class SweepJobs:
    """The runs of the experiment options and where each one goes.

    Args:
        options: dict from `flags.experiment_options()`.
        source: `DatasetSource` (its name and feature shape pick the
            base configs).
    """

    def __init__(self, options, source):
        self.options = options
        self.out = options["output_dir"]
        self.seeds = tuple(options["seeds"])
        self.base = base_configs(options, source)
        # LESA's and BiAM's runs at their own learning rate, by main key.
        self.alternatives = baseline_alternatives(
            self.base[2].learning_rate)
        self.alternative_runs = tuple(
            run for runs in self.alternatives.values() for run in runs)
        self.runs, self.sweeps = plan(
            options["prompts"], options["regularizer_weights"],
            self.base[0], self.base[1], self.alternative_runs,
        )
        # Every run by its key.
        self.by_key = {run.key: run for run in self.runs}

    def run_dir(self, key, seed=None):
        """`output_dir/runs/<key>[/seed<seed>]`."""
        parts = [self.out, "runs", key]
        if seed is not None:
            parts.append(f"seed{seed}")
        return os.path.join(*parts)

    def job(self, key, seed):
        """The `RunJob` of run `key` with `seed`."""
        run = self.by_key[key]
        model_cfg, loss_cfg = run.configs(*self.base[:2])
        train_cfg = dataclasses.replace(
            self.base[2], model_dir=self.run_dir(key, seed), seed=seed,
            **dict(run.train),
        )
        return RunJob(
            key=key, method=run.method, seed=seed,
            model_config=model_cfg, loss_config=loss_cfg,
            train_config=train_cfg, variant=self.options["variant"],
            # Figure 1's models (a baseline's run at either rate).
            save_model=(run in MAIN + self.alternative_runs
                        and seed == self.seeds[0]),
        )


def train_run(job, source):
    """Trains `job` on `source`; returns its result dict.

    The test metrics of the best epoch (`zsl`, `gzsl`, ...), `training`,
    `seconds` (wall time of the run), `run` (key, method, seed) and
    `budget` (`run_budget`: epochs, batch, steps per epoch, optimizer
    steps).
    """
    # A fresh Keras state per run: layer names, and memory kept low.
    keras.backend.clear_session()
    gc.collect()
    start = time.time()
    result = train_and_evaluate(
        job.model_config, job.loss_config, job.train_config, source,
        variant=job.variant, baseline=False, chance=False,
        save_model=job.save_model, record=False,
    )
    result.update(
        seconds=time.time() - start,
        run={"key": job.key, "method": job.method, "seed": job.seed},
        budget=run_budget(job.train_config, source),
    )
    return result
