"""What the experiments train: methods, ablations and Figure 3's sweeps.

Every trained run shares the seeds and the training budget (epochs, batch,
schedule, selection by validation seen-label F1@3); only the model, loss
or training fields named in its `Run` differ. The epochs are resolved
once, from Epsilon's settings (`budget_epochs`), and given to every run
explicitly.

LESA and BiAM are trained at two learning rates, Epsilon's and their own
(`presets.LESA`, `presets.BIAM`: 1e-3, their releases'), with the same
epochs and batch; for each seed the tables keep the run that scores
higher on the validation images (`baseline_alternatives`). A single
shared learning rate weakened them on some worlds (docs/experiments.md).

The branch ablations are the full model with one branch removed
(`--branches`): "GPA only" drops GFP and with it GFP's linear path
(`ModelConfig.gfp_linear` lives inside the GFP layer); "GFP only" keeps
GFP, its linear path included.
"""

import dataclasses
import math

from epsilon_tf.config import LossConfig, ModelConfig, presets


@dataclasses.dataclass(frozen=True)
class Run:
    """One trained configuration (repeated for every seed).

    Args:
        key: directory name under `output_dir/runs/`.
        method: the name in the tables.
        model: `ModelConfig` fields that differ from the base.
        loss: `LossConfig` fields that differ from the base.
        train: `TrainConfig` fields that differ from the base.
    """

    key: str
    method: str
    model: tuple = ()
    loss: tuple = ()
    train: tuple = ()

    @property
    def title(self):
        """The progress lines' name: the method, and any training setting
        of its own (a baseline's own learning rate)."""
        return ", ".join([self.method] + [
            f"{field.replace('_', ' ')} {value:g}"
            for field, value in self.train])

    def configs(self, base_model, base_loss):
        return (
            dataclasses.replace(base_model, **dict(self.model)),
            dataclasses.replace(base_loss, **dict(self.loss)),
        )


def budget_epochs(epochs, min_steps, num_train_examples, validation_fraction,
                  batch_size, steps_per_epoch=None):
    """The epochs of every run: `epochs`, raised to reach `min_steps`.

    With `min_steps` > 0 the epochs rise to ceil(min_steps / steps per
    epoch) when that is more; the steps per epoch are `steps_per_epoch`
    when given, else the whole batches of the training subset,
    `int(num_train_examples * (1 - validation_fraction)) // batch_size`
    (as `training.run.steps_per_epoch` counts them). Unknown sizes
    (`num_train_examples` None) or fewer examples than one batch leave
    `epochs` as it is (the trainer reports the latter).

    Args:
        epochs: int >= 1. The epochs before the minimum.
        min_steps: int >= 0. The fewest optimizer steps (0: no minimum).
        num_train_examples: int or None. The training split's examples.
        validation_fraction: float in (0, 1). The validation carve.
        batch_size: int >= 1.
        steps_per_epoch: int or None. A fixed number of steps per epoch.

    Returns:
        int.
    """
    if not min_steps:
        return epochs
    steps = steps_per_epoch
    if not steps:
        if num_train_examples is None:
            return epochs
        steps = int(num_train_examples * (1 - validation_fraction)
                    ) // batch_size
    if steps < 1:
        return epochs
    return max(epochs, math.ceil(min_steps / steps))


# The baselines train with their own ranking loss: Epsilon's per-label
# term (`label_weight`, on in RELEASE_PRESET) is off for them.
_BASELINE_LOSS = (("label_weight", 0.0),)
MAIN = (
    Run("epsilon", "Epsilon"),
    Run("lesa", "LESA", model=(("model", "lesa"),), loss=_BASELINE_LOSS),
    Run("biam", "BiAM", model=(("model", "biam"),), loss=_BASELINE_LOSS),
)
ABLATIONS = (
    Run("epsilon_gpa", "GPA only", model=(("branches", "gpa"),)),
    Run("epsilon_gfp", "GFP only", model=(("branches", "gfp"),)),
    Run("epsilon_fixed_fusion", "fixed fusion (a = 0.5)",
        model=(("fusion", "fixed"),)),
    Run("epsilon_no_regularizer", "no regularizer",
        loss=(("diversity_weight", 0.0),)),
)


def baseline_alternatives(learning_rate):
    """`{key: [Run]}`: for LESA and BiAM, a run at their own learning rate
    (their preset's) where it differs from the shared `learning_rate`.

    The runner keeps, for each seed, whichever of the main run and its
    alternative has the higher `best_validation` (validation seen-label
    F1@K, the measure that picks every run's best epoch); the shared run
    on a tie. Epochs and batch stay the shared ones: the same budget.
    """
    own = {"lesa": presets.LESA, "biam": presets.BIAM}
    out = {}
    for run in MAIN:
        rate = own.get(run.key, {}).get("learning_rate")
        if rate is not None and rate != learning_rate:
            out[run.key] = [dataclasses.replace(
                run, key=f"{run.key}_lr{rate:g}",
                train=(("learning_rate", rate),),
            )]
    return out


def _sweep(name, field, values, section, base, method):
    """Runs of a one-field sweep; a value equal to the base reuses "epsilon"
    (and weight 0 reuses the no-regularizer ablation)."""
    points = []
    for value in values:
        if value == base:
            key = "epsilon"
        elif field == "diversity_weight" and value == 0:
            key = "epsilon_no_regularizer"
        else:
            key = f"{name}_{value:g}"
        points.append((value, Run(key, method(value),
                                  **{section: ((field, value),)})))
    return points


def plan(prompts, regularizer_weights, base_model=None, base_loss=None,
         alternatives=()):
    """The runs of the experiments.

    `alternatives` (`Run`s: LESA's and BiAM's at their own learning rate,
    `baseline_alternatives`) follow the main runs.

    Returns:
        `(runs, sweeps)`: the distinct `Run`s in order, and
        `{"prompts": [(G, Run)], "regularizer": [(weight, Run)]}`.
    """
    base_model = base_model or ModelConfig()
    base_loss = base_loss or LossConfig()
    sweeps = {
        "prompts": _sweep(
            "prompts", "num_prompts", prompts, "model",
            base_model.num_prompts, lambda g: f"Epsilon, G = {g}",
        ),
        "regularizer": _sweep(
            "diversity", "diversity_weight", regularizer_weights, "loss",
            base_loss.diversity_weight, lambda w: f"Epsilon, lambda = {w:g}",
        ),
    }
    runs = {run.key: run for run in MAIN + tuple(alternatives) + ABLATIONS}
    for points in sweeps.values():
        for _, run in points:
            runs.setdefault(run.key, run)
    return list(runs.values()), sweeps
