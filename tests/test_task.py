"""The Task (one replica's step), the checkpoint module, the run layout."""

import dataclasses
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny

from epsilon_tf.config import LossConfig, TrainConfig
from epsilon_tf.training import checkpointing, run_dir
from epsilon_tf.training.summed_gradients import SummedGradientsAdamW
from epsilon_tf.training.task import LOSS_TERMS, NO_DECAY, Task

ROOT = Path(__file__).resolve().parents[1]


def _task(clip_norm, seed=0, **train):
    source = tiny.in_memory_source()
    config = TrainConfig(batch_size=8, clip_norm=clip_norm, **train)
    keras.utils.set_random_seed(seed)
    task = Task(tiny.model_config(dropout=0.0, token_dropout=0.0),
                LossConfig(), config, source.label_space, source=source)
    task.build_model()
    return task, source


def _batch(source, n=8):
    batch = next(iter(source.split("train").dataset().batch(n)))
    return batch["features"], batch["labels"]


@pytest.mark.parametrize("clip_norm", [1e-3, 0.0])
def test_train_step_is_adamw_on_the_clipped_gradient(clip_norm):
    """One device: the step equals Keras AdamW with `global_clipnorm`."""
    task, source = _task(clip_norm)
    task.create_optimizer(1e-2)
    features, labels = _batch(source)
    grads, terms = task.compute_gradients(features, labels)
    expected_norm = float(tf.linalg.global_norm(grads))

    twin, _ = _task(clip_norm)  # same seed: the same initial weights
    for a, b in zip(task.model.weights, twin.model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    reference = keras.optimizers.AdamW(
        learning_rate=1e-2, weight_decay=task.train_config.weight_decay,
        global_clipnorm=clip_norm or None,
    )
    reference.exclude_from_weight_decay(var_names=NO_DECAY)
    reference.build(twin.model.trainable_variables)

    step = tf.function(task.train_step)
    for _ in range(3):
        vector, norm = step(features, labels)
        g, _ = twin.compute_gradients(features, labels)
        reference.apply_gradients(
            zip(g, twin.model.trainable_variables, strict=True)
        )
    assert vector.shape == (len(LOSS_TERMS),)
    assert int(task.optimizer.iterations.numpy()) == 3
    for a, b in zip(task.model.trainable_variables,
                    twin.model.trainable_variables, strict=True):
        # atol: Adam normalizes the ~1e-7 float noise of gradients that
        # are zero in exact arithmetic (attention key biases) to steps of
        # about 1e-5; a real difference (no clip, other decay) is >1e-3.
        np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                   rtol=1e-4, atol=1e-4, err_msg=a.path)
    # The first step's terms and norm are those of `compute_gradients`.
    task2, _ = _task(clip_norm)
    task2.create_optimizer(1e-2)
    vector, norm = tf.function(task2.train_step)(features, labels)
    assert float(norm) == pytest.approx(expected_norm, rel=1e-5)
    total = float(vector[LOSS_TERMS.index("total")])
    assert total == pytest.approx(float(terms["total"]), rel=1e-5)
    parts = sum(float(vector[LOSS_TERMS.index(k)]) for k in LOSS_TERMS[1:])
    assert total == pytest.approx(parts, rel=1e-5)


def test_the_trainer_steps_through_its_task(tmp_path):
    from epsilon_tf.training.run import build_trainer

    source = tiny.in_memory_source()
    config = TrainConfig(model_dir=str(tmp_path), epochs=1, batch_size=8,
                         verbose=0, summary_images=0, pr_curve_labels=0,
                         steps_per_epoch=2)
    trainer = build_trainer(tiny.model_config(), LossConfig(), config, source)
    assert trainer.model is trainer.task.model
    assert trainer.optimizer is trainer.task.optimizer
    assert trainer.loss_fn is trainer.task.loss_fn
    assert isinstance(trainer.optimizer, SummedGradientsAdamW)
    calls = []
    real = trainer.task.train_step

    def counting(features, labels):
        calls.append(features.shape)
        return real(features, labels)

    trainer.task.train_step = counting
    it = iter(trainer._train_dataset(0, 0))
    out = trainer._distributed_step(it)
    assert calls and calls[0][0] == 8  # traced through the Task's step
    assert set(out) == set(LOSS_TERMS) | {"grad_norm"}
    assert int(trainer.optimizer.iterations.numpy()) == 1


def test_the_benchmark_times_the_tasks_step():
    from benchmarks.common import time_train_step

    res = time_train_step(
        4, False, steps=2, warmup=1,
        model_config=tiny.model_config(feature_shape=(16, 8)),
        num_labels=10, embedding_dim=12,
    )
    step = res["trainer_step"]
    assert isinstance(step.task, Task)
    assert type(step.optimizer) is SummedGradientsAdamW
    assert step.task.train_config.batch_size == 4
    assert int(step.optimizer.iterations.numpy()) == 3  # warmup + 2 timed
    assert np.isfinite(res["loss"]) and res["loss"] > 0


def test_run_dir_layout():
    run = run_dir.RunDir("/runs/x")
    assert run.config == "/runs/x/config.json"
    assert run.metrics == "/runs/x/metrics.json"
    assert run.keras_model == "/runs/x/model.keras"
    assert run.label_space == "/runs/x/label_space"
    assert run.checkpoints == "/runs/x/checkpoints"
    assert run.best == "/runs/x/best"
    assert run.export == "/runs/x/export"
    assert run.summaries("validation") == "/runs/x/validation"
    assert run.summaries() == "/runs/x"
    assert run.worker_checkpoints(2) == "/runs/x/worker_tmp_2/checkpoints"
    assert run.trial_id == "x"
    with pytest.raises(ValueError, match="Summary directory"):
        run.summaries("eval")


def test_export_version_belongs_to_its_run(tmp_path):
    version = tmp_path / "run" / "export" / "3"
    version.mkdir(parents=True)
    assert run_dir.of_export_version(version) is None  # no config.json yet
    (tmp_path / "run" / "config.json").write_text("{}")
    assert run_dir.of_export_version(version).path == str(tmp_path / "run")


# File names anywhere; directory names where a path is joined.
LAYOUT_FILES = re.compile(
    r"[\"'](?:config\.json|metrics\.json|model\.keras)[\"']"
)
LAYOUT_DIRS = re.compile(
    r"join\(.*[\"'](?:label_space|checkpoints|best|export|worker_tmp\w*)[\"']"
)


def test_only_run_dir_spells_out_the_layout():
    offenders = []
    files = list((ROOT / "epsilon_tf").rglob("*.py")) + [
        ROOT / "train.py", ROOT / "eval.py"
    ]
    for path in files:
        if path.name == "run_dir.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if LAYOUT_FILES.search(line) or LAYOUT_DIRS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line}")
    assert not offenders, "\n".join(offenders)


def test_checkpoints_refuse_a_model_they_cannot_reach(tmp_path):
    class Listed(keras.layers.Layer):
        def build(self, shape):
            self.parts = []
            for i in range(2):
                dense = keras.layers.Dense(3, name=f"part_{i}")
                dense.build(shape if i == 0 else (shape[0], 3))
                self.parts.append(dense)

        def call(self, x):
            return self.parts[1](self.parts[0](x))

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Listed()(inputs))
    optimizer = keras.optimizers.AdamW()
    optimizer.build(model.trainable_variables)
    assert len(checkpointing.checkpoint_gaps(model)) == 4
    with tf.device("/CPU:0"):
        progress = checkpointing.Progress.create()
    with pytest.raises(ValueError, match="does not track 4 of the variables"):
        checkpointing.TrainingCheckpoints(
            run_dir.RunDir(tmp_path), model, optimizer, progress
        )


def test_best_checkpoint_is_published_atomically(tmp_path):
    source = tiny.in_memory_source()
    task = Task(tiny.model_config(), LossConfig(),
                dataclasses.replace(TrainConfig(), batch_size=8),
                source.label_space, source=source)
    model = task.build_model()
    optimizer = task.create_optimizer(1e-3)
    progress = checkpointing.Progress.create()
    checkpoints = checkpointing.TrainingCheckpoints(
        run_dir.RunDir(tmp_path), model, optimizer, progress, keep=2
    )
    first = checkpoints.save()
    assert checkpoints.publish_best(first, 0).endswith("best/ckpt-1")
    progress.epoch.assign(2)
    optimizer.iterations.assign(5)
    second = checkpoints.save()
    assert checkpoints.publish_best(second, 1).endswith("best/ckpt-2")
    best = sorted(p.name for p in (tmp_path / "best").iterdir())
    # Only the new best, its state file, no temporary names.
    assert best == ["checkpoint", "ckpt-2.data-00000-of-00001",
                    "ckpt-2.index"]
    assert checkpoints.checkpointed_epochs() == 2
    assert checkpoints.restore_best().endswith("best/ckpt-2")


def _native_task(data_dir):
    source = tiny.native_source(data_dir)
    return Task(tiny.model_config(), LossConfig(), TrainConfig(),
                source.label_space, source=source)


def _read_all(dataset):
    ids, features = [], []
    for batch in dataset:
        ids += [v.decode() for v in batch["image_id"].numpy()]
        features.append(batch["features"].numpy())
    return ids, np.concatenate(features)


def test_validation_inputs_are_read_from_memory_after_the_first_pass(
        tmp_path, monkeypatch):
    """The cached validation batches equal the uncached ones, and a second
    pass reads no file (it still works with the files gone); without room
    in the budget the dataset is not cached. A split whose files are gone
    is refused with the file's name (TensorFlow's reader would retry it
    forever)."""
    import shutil

    from epsilon_tf.training import task as task_module

    data = tiny.write_native(tmp_path / "data")
    task = _native_task(data)
    size = task.validation_bytes()
    n = task.source.split("train").num_examples
    regions, channels = task.model_config.feature_shape
    assert size == int(n * 0.15 * 4 * (
        regions * channels + len(task.label_space.names)))
    expected = _read_all(task.build_validation_inputs(64))
    assert 0 < len(expected[0]) < n
    cached = task.build_validation_inputs(64, cache=True)
    assert "Cache" in type(cached).__name__
    first = _read_all(cached)
    monkeypatch.setattr(task_module, "VALIDATION_CACHE_BYTES", size - 1)
    uncached = task.build_validation_inputs(64, cache=True)
    assert "Cache" not in type(uncached).__name__
    assert _read_all(uncached)[0] == expected[0]
    shutil.move(str(data), str(tmp_path / "moved"))
    second = _read_all(cached)
    for got in (first, second):
        assert got[0] == expected[0]
        np.testing.assert_array_equal(got[1], expected[1])
    with pytest.raises(FileNotFoundError, match="train-00000"):
        task.build_validation_inputs(64)
