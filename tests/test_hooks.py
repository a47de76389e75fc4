"""The Trainer's hooks: the points of the loop they see, in order, and
what the console hook prints."""

import io
import types

from helpers import tiny

from epsilon_tf.config import LossConfig, TrainConfig
from epsilon_tf.training.hooks import ConsoleProgress, TrainingHook


class Recorder(TrainingHook):
    def __init__(self):
        self.calls = []
        self.improved = []

    def on_train_begin(self, trainer):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, trainer, epoch, first_step):
        self.calls.append(("epoch_begin", epoch, first_step))

    def on_step(self, trainer, epoch, step, values):
        assert set(values) == {
            "total", "ranking", "diversity", "attention", "grad_norm"}
        self.calls.append(("step", epoch, step, trainer.global_step()))

    def on_epoch_trained(self, trainer, epoch):
        self.calls.append(("epoch_trained", epoch))

    def on_epoch_end(self, trainer, epoch, metrics, improved, seconds):
        assert metrics["n_images"] > 0 and seconds > 0
        self.improved.append(improved)
        self.calls.append(("epoch_end", epoch))

    def on_train_end(self, trainer):
        self.calls.append(("train_end",))


def test_a_hook_sees_every_step_and_epoch(tmp_path):
    from epsilon_tf.training.run import build_trainer

    config = TrainConfig(
        model_dir=str(tmp_path), epochs=2, batch_size=32, steps_per_epoch=3,
        warmup_steps=1, verbose=0, summary_images=0, pr_curve_labels=0,
    )
    source = tiny.in_memory_source()
    trainer = build_trainer(tiny.model_config(), LossConfig(), config, source)
    recorder = Recorder()
    trainer.hooks.append(recorder)
    trainer.train()
    steps = [c for c in recorder.calls if c[0] == "step"]
    assert steps == [("step", e, s, 3 * e + s)
                     for e in (0, 1) for s in (1, 2, 3)]
    assert [c for c in recorder.calls if c[0] != "step"] == [
        ("train_begin",),
        ("epoch_begin", 0, 0), ("epoch_trained", 0), ("epoch_end", 0),
        ("epoch_begin", 1, 0), ("epoch_trained", 1), ("epoch_end", 1),
        ("train_end",),
    ]
    assert recorder.improved[0] is True  # the first epoch is the best yet
    # A finished run: nothing to train, but the hooks still open and close.
    again = build_trainer(tiny.model_config(), LossConfig(), config, source)
    recorder = Recorder()
    again.hooks.append(recorder)
    again.train()
    assert recorder.calls == [("train_begin",), ("train_end",)]


def test_console_progress_prints_epochs_lines_and_validation():
    stream = io.StringIO()
    trainer = types.SimpleNamespace(
        train_config=types.SimpleNamespace(epochs=3),
        steps_per_epoch=4, global_batch=8,
        current_learning_rate=lambda: 1e-3,
    )
    hook = ConsoleProgress(every_seconds=1e9, stream=stream)
    hook.on_epoch_begin(trainer, 1, 2)
    for step, loss in ((3, 0.5), (4, 0.25)):
        hook.on_step(trainer, 1, step, {"total": loss})
    hook.on_epoch_trained(trainer, 1)
    hook.on_epoch_end(trainer, 1, {"map": 0.5, "f1@3": 0.25, "n_images": 7},
                      True, 2.25)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "Epoch 2/3"
    # The epoch's last line: the mean loss of the steps run here.
    assert lines[1].startswith("  step 4/4 (100%)")
    assert "loss 0.3750  lr 1.00e-03  [" in lines[1]
    assert lines[2] == (
        "  validation (seen labels, 7 images): map=0.5000, f1@3=0.2500"
        "  [2.2s]  * best"
    )
    assert len(lines) == 3
