"""Ctrl-C during training: the step finishes, is checkpointed, the run
stops, and rerunning resumes to the same result as an uninterrupted run,
bit for bit (issue 23)."""

import os
import signal

import pytest
from helpers import tiny

from epsilon_tf.training.hooks import TrainingHook
from epsilon_tf.training.interrupt import deferred_interrupt


@pytest.fixture
def default_sigint():
    """SIGINT with Python's default handler (KeyboardInterrupt), whatever
    the test runner installed."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_first_ctrl_c_is_recorded_a_second_one_raises(default_sigint):
    with deferred_interrupt() as request:
        os.kill(os.getpid(), signal.SIGINT)
        assert request.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):  # the default again
        os.kill(os.getpid(), signal.SIGINT)


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with deferred_interrupt() as request:
            os.kill(os.getpid(), signal.SIGINT)
            assert not request.requested
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


class _CtrlCAtStep(TrainingHook):
    def __init__(self, step):
        self.step = step

    def on_step(self, trainer, epoch, step, values):
        if epoch == 0 and step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def _trainer(model_dir, hooks=()):
    from epsilon_tf.config import LossConfig, TrainConfig
    from epsilon_tf.training.run import build_trainer

    trainer = build_trainer(
        tiny.model_config(), LossConfig(),
        TrainConfig(model_dir=str(model_dir), epochs=1, batch_size=32,
                    warmup_steps=5, verbose=0, summary_images=0,
                    pr_curve_labels=0),
        tiny.in_memory_source(),
    )
    trainer.hooks.extend(hooks)
    return trainer


def test_ctrl_c_checkpoints_the_step_and_the_rerun_matches(
    default_sigint, tmp_path
):
    interrupted = _trainer(tmp_path / "run", hooks=[_CtrlCAtStep(3)])
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    # The checkpoint of step 3, mid-epoch (no periodic checkpoints asked).
    assert int(interrupted.optimizer.iterations.numpy()) == 3
    resumed = _trainer(tmp_path / "run")
    resumed.restore()
    assert int(resumed.epoch.numpy()) == 0
    assert int(resumed.step_in_epoch.numpy()) == 3
    assert int(resumed.optimizer.iterations.numpy()) == 3
    del interrupted, resumed
    after = tiny.train_to_end(_trainer(tmp_path / "run"))
    clean = tiny.train_to_end(_trainer(tmp_path / "clean"))
    tiny.assert_same_run(after, clean)


def test_a_run_stopped_after_an_epoch_exports(default_sigint, tmp_path,
                                              monkeypatch):
    """Issue 23: docs/serving.md said a run could be exported before it
    finished; `label_space/` was written only at the end, so the export
    said "not a training directory". Now a run stopped by Ctrl-C after
    its first epoch exports from its best checkpoint."""
    import subprocess
    import sys

    from epsilon_tf.config import LossConfig, TrainConfig
    from epsilon_tf.training import run
    from epsilon_tf.training.trainer import Trainer

    validate = Trainer._validate_epoch

    def validate_then_ctrl_c(self, epoch):
        out = validate(self, epoch)
        os.kill(os.getpid(), signal.SIGINT)  # during the first epoch's end
        return out

    monkeypatch.setattr(Trainer, "_validate_epoch", validate_then_ctrl_c)
    model_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run.train_and_evaluate(
            tiny.model_config(), LossConfig(),
            TrainConfig(model_dir=str(model_dir), epochs=3, batch_size=32,
                        warmup_steps=5, verbose=0, summary_images=0,
                        pr_curve_labels=0),
            tiny.in_memory_source(), baseline=False,
        )
    assert not (model_dir / "model.keras").exists()
    done = subprocess.run(
        [sys.executable, "-m", "epsilon_tf.export", f"--model_dir={model_dir}"],
        capture_output=True, text=True, timeout=300, cwd=tiny.ROOT,
        env=tiny.child_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (model_dir / "export" / "1" / "saved_model.pb").exists()
