"""Typed configuration: every setting declared once, with its flag.

The settings are the fields of the dataclasses here (`ModelConfig`,
`LossConfig`, `TrainConfig` and its sections, `DataConfig`, `EvalConfig`),
each with its default, its flag's help and its check
(`config.settings.setting`); `ExperimentConfig` nests them for one run.
The presets are in `config.presets`. `epsilon_tf.flags` generates the
command-line flags from these fields and builds the configs once.

Standard library only: importable without TensorFlow.
"""

import dataclasses
import json

from epsilon_tf import storage
from epsilon_tf.config import presets
from epsilon_tf.config.data import (
    AP_VARIANTS,
    DATASETS,
    FORMATS,
    DataConfig,
    EvalConfig,
    recorded_data_config,
)
from epsilon_tf.config.experiment import (
    SETTING_CLASSES,
    ExperimentConfig,
    experiment_config,
    setting_defaults,
)
from epsilon_tf.config.model import (
    GFP_SETTINGS,
    MODELS,
    TOKEN_NORMS,
    LossConfig,
    ModelConfig,
)
from epsilon_tf.config.settings import SettingError
from epsilon_tf.config.train import (
    TRAIN_CONFIG_SECTIONS,
    ExportConfig,
    RuntimeConfig,
    SummaryConfig,
    TrainConfig,
    TrainerConfig,
    train_config_from_sections,
    train_config_sections,
    trajectory_free_train_fields,
)

# The release-shaped data's preset (`presets.RELEASE`), by its old name.
RELEASE_PRESET = presets.RELEASE

__all__ = [
    "AP_VARIANTS", "DATASETS", "FORMATS", "MODELS", "RELEASE_PRESET",
    "SETTING_CLASSES", "TOKEN_NORMS", "TRAIN_CONFIG_SECTIONS", "DataConfig",
    "EvalConfig", "ExperimentConfig", "ExportConfig", "LossConfig",
    "ModelConfig", "RuntimeConfig", "SettingError", "SummaryConfig",
    "TrainConfig", "TrainerConfig", "experiment_config", "preset_configs",
    "presets", "recorded_data_config", "setting_defaults", "to_dict",
    "train_config_from_sections", "train_config_sections",
    "trajectory_free_train_fields", "write_json",
]


def preset_configs(preset, feature_shape, model_overrides=None):
    """(ModelConfig, LossConfig, TrainConfig) of a preset, without flags.

    Args:
        preset: dict of field -> value (e.g. `presets.RELEASE`) for any of
            the three configs.
        feature_shape: (num_regions, channels).
        model_overrides: dict or None. Further `ModelConfig` fields.

    Returns:
        tuple of the three configs.
    """
    picked = {}
    for cls in (ModelConfig, LossConfig, TrainConfig):
        names = {f.name for f in dataclasses.fields(cls)}
        picked[cls] = {k: v for k, v in preset.items() if k in names}
    model_kw = {**picked[ModelConfig], **(model_overrides or {})}
    if model_kw.get("branches") == "gpa":
        # GPA alone has no GFP to configure.
        for key in GFP_SETTINGS:
            model_kw.pop(key, None)
    return (
        ModelConfig(feature_shape=tuple(feature_shape), **model_kw),
        LossConfig(**picked[LossConfig]),
        TrainConfig(**picked[TrainConfig]),
    )


def to_dict(*configs):
    """`{ClassName: fields}` of the given configs, JSON-ready."""
    return {type(c).__name__: dataclasses.asdict(c) for c in configs}


def write_json(path, payload):
    """Writes `payload` as JSON to `path` atomically.

    A full disk leaves the previous file intact and raises a
    `DiskFullError` naming `path` (`storage.atomic_write_text`).
    """
    storage.atomic_write_text(
        path, json.dumps(payload, indent=2, sort_keys=True, default=str)
    )
