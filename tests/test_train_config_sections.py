"""TrainConfig's trainer / runtime / export / summary sections."""

import dataclasses
import json

import pytest

from epsilon_tf.config import (
    TRAIN_CONFIG_SECTIONS,
    ExportConfig,
    RuntimeConfig,
    SummaryConfig,
    TrainConfig,
    TrainerConfig,
    to_dict,
    train_config_from_sections,
    train_config_sections,
    trajectory_free_train_fields,
)

# The settings a resumed run could change before the split (issue 12):
# the split must keep exactly this rule.
RESUMABLE_BEFORE_THE_SPLIT = frozenset({
    "model_dir", "verbose", "export", "export_top_k", "export_precision",
    "checkpoint_every_steps", "keep_checkpoints", "summary_images",
    "pr_curve_labels", "jit_compile", "deterministic", "strategy",
    "progress_every_seconds",
})


def test_sections_partition_the_fields():
    names = [n for fields in TRAIN_CONFIG_SECTIONS.values() for n in fields]
    assert len(names) == len(set(names))  # no field in two sections
    assert set(names) == {f.name for f in dataclasses.fields(TrainConfig)}


def test_section_classes_keep_names_types_and_defaults():
    flat = {f.name: f for f in dataclasses.fields(TrainConfig)}
    classes = {"trainer": TrainerConfig, "runtime": RuntimeConfig,
               "export": ExportConfig, "summary": SummaryConfig}
    for section, cls in classes.items():
        fields = dataclasses.fields(cls)
        assert tuple(f.name for f in fields) == TRAIN_CONFIG_SECTIONS[section]
        for f in fields:
            assert f.default == flat[f.name].default, f.name
            assert f.type == flat[f.name].type, f.name
        assert cls.__module__ == "epsilon_tf.config"


def test_split_and_join_round_trip():
    cfg = TrainConfig(model_dir="/tmp/run", epochs=3, batch_size=16,
                      jit_compile=True, export_top_k=5, summary_images=0)
    parts = train_config_sections(cfg)
    assert parts["trainer"] == TrainerConfig(epochs=3, batch_size=16)
    assert parts["runtime"].model_dir == "/tmp/run"
    assert parts["runtime"].jit_compile is True
    assert parts["export"] == ExportConfig(export_top_k=5)
    assert parts["summary"].summary_images == 0
    assert train_config_from_sections(**parts) == cfg
    assert train_config_from_sections() == TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        parts["trainer"].epochs = 4


def test_only_trainer_settings_pin_a_resumed_run():
    assert trajectory_free_train_fields() == RESUMABLE_BEFORE_THE_SPLIT
    from epsilon_tf.training.trainer import RESUMABLE_CHANGES

    assert RESUMABLE_CHANGES == RESUMABLE_BEFORE_THE_SPLIT


def test_a_runs_config_json_keeps_its_flat_section():
    # config.json (and so the resume check of older runs) is unchanged.
    record = json.loads(json.dumps(to_dict(TrainConfig()), default=str))
    assert list(record) == ["TrainConfig"]
    assert set(record["TrainConfig"]) == {
        f.name for f in dataclasses.fields(TrainConfig)
    }
