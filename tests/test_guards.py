"""Guards: NaN/Inf features name their record; a NaN loss stops training
with the last good checkpoint intact; the CLIs print one clean message."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny

from epsilon_tf.config import LossConfig, TrainConfig
from epsilon_tf.data.pipeline import InputDataError, input_errors, make_dataset


def _poison(split_name, index, value=np.nan):
    def transform(split, ids, feats, labels):
        if split == split_name:
            feats = feats.copy()
            feats[index, 3, 2] = value
        return ids, feats, labels

    return transform


def _config(model_dir, **kwargs):
    base = dict(model_dir=str(model_dir), epochs=2, batch_size=32,
                warmup_steps=5, verbose=0, summary_images=0,
                pr_curve_labels=0)
    base.update(kwargs)
    return TrainConfig(**base)


def test_pipeline_names_the_record():
    source = tiny.in_memory_source(_poison("test", 7, np.inf))
    with pytest.raises(InputDataError) as info:
        with input_errors():
            for _ in make_dataset(source.split("test"), 16):
                pass
    message = str(info.value)
    assert message == (
        "NaN or Inf in the features of record 7 (image_id test_000007); "
        "the features must be finite"
    )


def test_nan_feature_stops_training_with_a_clear_error(tmp_path):
    from epsilon_tf.training.run import build_trainer

    # Image 40 is a training (not validation) image of the tiny world.
    source = tiny.in_memory_source(_poison("train", 40))
    trainer = build_trainer(tiny.model_config(), LossConfig(),
                            _config(tmp_path), source)
    with pytest.raises(InputDataError) as info:
        trainer.train()
    message = str(info.value)
    assert "image_id train_000040" in message and "record 40" in message
    assert "\n" not in message and len(message) < 200


def test_nan_feature_in_the_test_split(tmp_path):
    from epsilon_tf.training.run import build_trainer

    source = tiny.in_memory_source(_poison("test", 3))
    trainer = build_trainer(tiny.model_config(), LossConfig(),
                            _config(tmp_path, epochs=1), source)
    trainer.train()
    with pytest.raises(InputDataError, match="image_id test_000003"):
        trainer.evaluate_test(progress=False)


def test_nan_loss_keeps_the_last_good_checkpoint(tmp_path):
    from epsilon_tf.errors import TrainingDivergedError
    from epsilon_tf.training.run import build_trainer

    source = tiny.in_memory_source()
    config = _config(tmp_path, checkpoint_every_steps=2, keep_checkpoints=5)
    trainer = build_trainer(tiny.model_config(), LossConfig(), config, source)
    terms = trainer.loss_fn.per_example_terms
    bad_from = 6  # the 7th step computes a NaN loss

    def poisoned(labels, outputs):
        out = terms(labels, outputs)
        bad = trainer.optimizer.iterations >= bad_from
        # NaN loss and NaN gradients, like a real blow-up.
        out["ranking"] = out["ranking"] * tf.where(bad, np.nan, 1.0)
        return out

    trainer.loss_fn.per_example_terms = poisoned
    with pytest.raises(TrainingDivergedError) as info:
        trainer.train()
    message = str(info.value)
    assert "non-finite at step 7 (epoch 1, step 7 of the epoch)" in message
    assert "ckpt-6" in message

    ckpt_dir = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.glob("*.index")) == [
        "ckpt-2.index", "ckpt-4.index", "ckpt-6.index"
    ]
    assert not list(ckpt_dir.glob("*temp*"))
    latest = tiny.latest_checkpoint(ckpt_dir)
    assert latest.endswith("ckpt-6")

    # The checkpoint is complete and good: a fresh trainer restores it.
    fresh = build_trainer(tiny.model_config(), LossConfig(), config, source)
    assert fresh.restore() == latest
    assert int(fresh.optimizer.iterations.numpy()) == bad_from
    assert int(fresh.step_in_epoch.numpy()) == bad_from
    for variable in fresh.model.weights:
        assert np.isfinite(np.asarray(variable)).all(), variable.path
    # ... and the diverged model itself really was NaN.
    assert not all(
        np.isfinite(np.asarray(v)).all() for v in trainer.model.weights
    )


def test_train_py_prints_the_divergence_cleanly(tmp_path):
    data_dir = tiny.write_native(tmp_path / "world")
    model_dir = tmp_path / "run"
    code, log = tiny.run(
        tiny.train_command(
            data_dir, model_dir, "--learning_rate=1e30", "--clip_norm=0",
            "--warmup_steps=0", "--checkpoint_every_steps=1",
        ),
        tmp_path / "train.log",
    )
    assert code == 1
    assert "train.py: error: The loss became non-finite at step" in log
    assert "Traceback" not in log
    step = int(log.split("non-finite at step ")[1].split()[0])
    latest = tiny.latest_checkpoint(model_dir / "checkpoints")
    if step > 1:
        assert latest.endswith(f"ckpt-{step - 1}")
        values = tiny.checkpoint_tensors(latest)
        for name, value in values.items():
            value = np.asarray(value)
            if value.dtype.kind == "f":
                assert np.isfinite(value).all(), name
    else:
        assert latest is None
    assert not (model_dir / "metrics.json").exists()


def test_clean_exit_prints_one_line(capsys):
    from epsilon_tf.cli.common import clean_exit

    with pytest.raises(SystemExit) as info:
        with clean_exit("eval.py"):
            raise InputDataError(
                "NaN or Inf in the features of record 3 (image_id x); the "
                "features must be finite"
            )
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err == (
        "eval.py: error: NaN or Inf in the features of record 3 (image_id "
        "x); the features must be finite\n"
    )
    with pytest.raises(TypeError):  # programming errors are not swallowed
        with clean_exit("eval.py"):
            raise TypeError("bug")
