"""Exact resume: SIGKILL mid-epoch, rerun the same command, same result.

Tolerance: none. On CPU with `--deterministic` (the default) the resumed
run's metrics and every tensor of its final checkpoint (weights, Adam
slots, step, dropout RNG states) equal those of an uninterrupted run
bit for bit.
"""

import signal

import numpy as np
import pytest
from helpers import tiny

EVERY = 4
PAUSE_AFTER = 18  # epoch 2, step 7 of 11; last checkpoint: step 16


@pytest.fixture(scope="module")
def native_world(tmp_path_factory):
    return tiny.write_native(tmp_path_factory.mktemp("world"))


def _same_metrics(a, b):
    for setting in ("zsl", "gzsl"):
        assert a[setting] == b[setting], setting
    assert a["chance"] == b["chance"]
    for key in ("best_epoch", "best_validation", "select_metric"):
        assert a["training"][key] == b["training"][key], key


def test_sigkill_mid_epoch_then_rerun_matches_uninterrupted(
    native_world, tmp_path
):
    flags = [
        f"--checkpoint_every_steps={EVERY}", "--keep_checkpoints=2",
        "--epochs=2",
    ]
    clean_dir, crash_dir = tmp_path / "clean", tmp_path / "crash"
    marker = tmp_path / "paused"
    clean = tiny.start(
        tiny.train_command(native_world, clean_dir, *flags),
        tmp_path / "clean.log",
    )
    crashing = tiny.start(
        tiny.train_command(
            native_world, crash_dir, *flags,
            f"--pause_after_step={PAUSE_AFTER}", f"--pause_marker={marker}",
            script="tests/helpers/pause_train.py",
        ),
        tmp_path / "crash.log",
    )
    paused = tiny.wait_for_file(marker, crashing)
    crashing.send_signal(signal.SIGKILL)
    code, log = tiny.finish(crashing)
    assert paused, log[-3000:]
    assert code == -signal.SIGKILL

    # What the crash left: complete checkpoints up to step 16, mid-epoch.
    latest = tiny.latest_checkpoint(crash_dir / "checkpoints")
    assert latest.endswith(f"ckpt-{EVERY * (PAUSE_AFTER // EVERY)}")
    state = tiny.checkpoint_tensors(latest)
    assert int(state["epoch/.ATTRIBUTES/VARIABLE_VALUE"]) == 1
    step_in_epoch = int(state["step_in_epoch/.ATTRIBUTES/VARIABLE_VALUE"])
    assert 0 < step_in_epoch < tiny.STEPS_PER_EPOCH
    rng = [k for k in state if k.startswith("rng/")]
    assert len(rng) >= 3, sorted(state)  # every dropout SeedGenerator
    assert not (crash_dir / "metrics.json").exists()

    # The same command again (plain train.py) resumes and finishes.
    code, log = tiny.run(
        tiny.train_command(native_world, crash_dir, *flags),
        tmp_path / "resume.log",
    )
    assert code == 0, log[-3000:]
    assert f"step {step_in_epoch} of that epoch" in log
    code, clean_log = tiny.finish(clean)
    assert code == 0, clean_log[-3000:]

    _same_metrics(tiny.metrics(clean_dir), tiny.metrics(crash_dir))
    a, b = (
        tiny.checkpoint_tensors(tiny.latest_checkpoint(d / "checkpoints"))
        for d in (clean_dir, crash_dir)
    )
    assert sorted(a) == sorted(b)
    for name in a:
        if name.startswith("save_counter"):
            continue  # counts saves, which differ by design
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert (
        tiny.latest_checkpoint(clean_dir / "best").rsplit("/", 1)[1]
        == tiny.latest_checkpoint(crash_dir / "best").rsplit("/", 1)[1]
    )
    # keep_checkpoints=2: only the last two (plus best/) are kept.
    assert len(list((crash_dir / "checkpoints").glob("*.index"))) == 2


def test_same_seed_same_numbers_in_process(tmp_path):
    """Two runs in one process with the same seed: identical results."""
    source = tiny.in_memory_source()
    tiny.assert_same_run(
        *(tiny.train_one_epoch(source, tmp_path / name) for name in "ab"))


def test_resume_after_finishing_changes_nothing(tmp_path):
    """Rerunning a finished run restores it and trains no further."""
    from epsilon_tf.config import LossConfig, TrainConfig
    from epsilon_tf.training.run import build_trainer

    source = tiny.in_memory_source()
    config = TrainConfig(model_dir=str(tmp_path), epochs=1, batch_size=32,
                         verbose=0, summary_images=0, pr_curve_labels=0)
    first = build_trainer(tiny.model_config(), LossConfig(), config, source)
    done = first.train()
    weights = [np.array(v) for v in first.model.weights]
    again = build_trainer(tiny.model_config(), LossConfig(), config, source)
    assert again.train() == done
    assert int(again.optimizer.iterations.numpy()) == tiny.STEPS_PER_EPOCH
    for x, v in zip(weights, again.model.weights, strict=True):
        np.testing.assert_array_equal(x, np.array(v))


def test_resume_with_other_settings_is_refused(tmp_path):
    """A model_dir is resumed only with the settings it was made with."""
    import dataclasses

    from epsilon_tf.config import LossConfig, TrainConfig
    from epsilon_tf.training.run import build_trainer

    source = tiny.in_memory_source()
    config = TrainConfig(model_dir=str(tmp_path), epochs=1, batch_size=32,
                         verbose=0, summary_images=0, pr_curve_labels=0)
    build_trainer(tiny.model_config(), LossConfig(), config, source).train()
    changed = [
        (tiny.model_config(), LossConfig(),
         dataclasses.replace(config, learning_rate=0.01),
         "learning_rate: 0.001 -> 0.01"),
        (tiny.model_config(num_prompts=4), LossConfig(), config,
         "num_prompts: 3 -> 4"),
        (tiny.model_config(), LossConfig(diversity_weight=0.0), config,
         "diversity_weight: 0.1 -> 0.0"),
    ]
    for model_cfg, loss_cfg, train_cfg, message in changed:
        trainer = build_trainer(model_cfg, loss_cfg, train_cfg, source)
        with pytest.raises(ValueError, match=message):
            trainer.train()
    # Output and logging settings may change.
    build_trainer(
        tiny.model_config(), LossConfig(),
        dataclasses.replace(config, verbose=1, export=False,
                            keep_checkpoints=5),
        source,
    ).train()
