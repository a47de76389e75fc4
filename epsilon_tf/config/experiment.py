"""One run's settings as one nested config, and how they are resolved.

`ExperimentConfig` holds the sections of a training run: `model`, `loss`,
`data`, `trainer`, `runtime`, `export`, `summary` (the last four are the
parts of the flat `TrainConfig` that the trainer and a run's
`config.json` use) and `evaluation`. Each section checks its own values
when it is built; `ExperimentConfig` adds the checks that span sections.

`experiment_config` resolves the settings of a command line: a flag the
user gave wins, then the presets (`presets.py`), then the defaults.
"""

import dataclasses

from epsilon_tf.config.data import DataConfig, EvalConfig, metric_columns
from epsilon_tf.config.model import GFP_SETTINGS, LossConfig, ModelConfig
from epsilon_tf.config.presets import default_preset_names, merged
from epsilon_tf.config.settings import SettingError, has_flag
from epsilon_tf.config.train import (
    ExportConfig,
    RuntimeConfig,
    SummaryConfig,
    TrainConfig,
    TrainerConfig,
    train_config_from_sections,
    train_config_sections,
)

# The dataclasses whose fields are settings with a flag, by section.
SETTING_CLASSES = {
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "data": DataConfig,
    "evaluation": EvalConfig,
}


@dataclasses.dataclass
class ExperimentConfig:
    """Every setting of a training run, by section (see the module doc)."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    summary: SummaryConfig = dataclasses.field(default_factory=SummaryConfig)
    evaluation: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    # The presets the settings a user did not give were taken from.
    presets: tuple = ()

    def __post_init__(self):
        train = self.train  # checks the trainer/runtime/export values
        ks = self.evaluation.eval_ks(self.data.dataset)
        choices = metric_columns(ks)
        if train.select_metric not in choices:
            raise SettingError(
                f"--select_metric must be one of {', '.join(choices)} (the "
                "validation metrics for --k). Received: "
                f"--select_metric={train.select_metric}"
            )
        data = self.data
        if data.data_format in ("lesa", "biam"):
            if data.dataset == "synthetic":
                raise SettingError(
                    f"--data_format={data.data_format} reads the release "
                    "files of --dataset=nus_wide or open_images. Received: "
                    "--dataset=synthetic"
                )
            missing = [f"--{n}" for n in ("train_files", "test_files")
                       if not getattr(data, n)]
            if missing:
                raise SettingError(
                    f"--data_format={data.data_format} needs "
                    f"{' and '.join(missing)} (glob patterns of the "
                    "release's feature files)"
                )

    @property
    def train(self):
        """The flat `TrainConfig` of the trainer/runtime/export/summary."""
        return train_config_from_sections(
            self.trainer, self.runtime, self.export, self.summary
        )

    def configs(self):
        """(ModelConfig, LossConfig, TrainConfig, DataConfig)."""
        return self.model, self.loss, self.train, self.data

    def to_dict(self):
        """The nested settings as a JSON-ready dict."""
        out = {
            name: dataclasses.asdict(getattr(self, name))
            for name in ("model", "loss", "data", "trainer", "runtime",
                         "export", "summary", "evaluation")
        }
        out["presets"] = list(self.presets)
        return out


def setting_defaults():
    """{field: default} of every setting with a flag (unique names)."""
    return {
        f.name: f.default
        for cls in SETTING_CLASSES.values()
        for f in dataclasses.fields(cls) if has_flag(f)
    }


def experiment_config(values=None, given=None, presets=None):
    """The effective settings of a command line.

    Args:
        values: {field name: value} of settings (missing: the default).
        given: names of the settings the user gave (None: those in
            `values`). A preset never replaces one of these.
        presets: names of the presets to apply, in order (None: the
            dataset's, then the model's; `presets.default_preset_names`).

    Returns:
        `ExperimentConfig`. Raises `SettingError` naming the flag and the
        value for a value that cannot work.

    The rules, as train.py has always applied them: a setting the user did
    not give takes the presets' value, else its default; with
    `--loss=smooth` the presets' `label_weight` (a hinge term) is dropped
    unless given; with `--branches=gpa` (no GFP) `gfp_input` and
    `gfp_pooled_norm` go back to their defaults unless `--gfp_input` is
    given; `select_metric`, unless given, is F1 at the first K; a given
    `--epochs` drops the step budget (`min_steps`) unless it is given.
    """
    values = dict(values or {})
    given = set(values if given is None else given)
    defaults = setting_defaults()
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise SettingError(f"Unknown settings: {', '.join(unknown)}")
    data = DataConfig(**_pick(DataConfig, values, {}, given, defaults))
    model_name = values.get("model", defaults["model"])
    names = tuple(presets or default_preset_names(data.dataset, model_name))
    preset = merged(names)

    model_kw = _pick(ModelConfig, values, preset, given, defaults)
    if model_kw["branches"] == "gpa" and "gfp_input" not in given:
        # GPA alone has no GFP to configure.
        for key in GFP_SETTINGS:
            model_kw[key] = defaults[key]
    loss_kw = _pick(LossConfig, values, preset, given, defaults)
    if loss_kw["form"] == "smooth" and "label_weight" not in given:
        # The preset's per-label term is a hinge; a given --label_weight
        # with another loss is an error (`LossConfig`).
        loss_kw["label_weight"] = 0.0
    evaluation = EvalConfig(**_pick(EvalConfig, values, {}, given, defaults))
    train_kw = _pick(TrainConfig, values, preset, given, defaults)
    if "epochs" in given and "min_steps" not in given:
        # A user's --epochs is honoured as given.
        train_kw["min_steps"] = 0
    if "select_metric" not in given:
        ks = evaluation.eval_ks(data.dataset)
        train_kw["select_metric"] = f"f1@{ks[0]}"
    return ExperimentConfig(
        model=ModelConfig(feature_shape=data.feature_shape, **model_kw),
        loss=LossConfig(**loss_kw),
        data=data,
        evaluation=evaluation,
        presets=names,
        **train_config_sections(TrainConfig(**train_kw)),
    )


def _pick(cls, values, preset, given, defaults):
    """{field: value} of `cls`'s flagged settings: given > preset > value
    > default."""
    out = {}
    for f in dataclasses.fields(cls):
        if not has_flag(f):
            continue
        name = f.name
        if name in preset and name not in given:
            out[name] = preset[name]
        else:
            out[name] = values.get(name, defaults[name])
    return out
