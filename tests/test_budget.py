"""The step budget (issue 22): `min_steps` raises the epochs of a small
training split, a user's --epochs is honoured as given."""

import dataclasses

from epsilon_tf.config import TrainConfig, experiment_config, presets
from epsilon_tf.config.train import budget_epochs
from epsilon_tf.training.run import with_step_budget


def test_budget_epochs_hand_worked():
    # 7,200 training images, batch 64: 112 steps an epoch; 1,200 steps
    # need 11 epochs (10 give 1,120).
    assert budget_epochs(4, 1200, 112) == 11
    assert budget_epochs(4, 1120, 112) == 10
    assert budget_epochs(4, 1121, 112) == 11
    # A large split keeps its epochs (4 x 2,527 steps > 1,200).
    assert budget_epochs(4, 1200, 2527) == 4
    # Off, or the number of steps unknown: the epochs stand.
    assert budget_epochs(4, 0, 112) == 4
    assert budget_epochs(4, 1200, None) == 4


def test_with_step_budget_says_so(capsys):
    cfg = TrainConfig(epochs=4, min_steps=1200, verbose=1)
    out = with_step_budget(cfg, 112)
    assert out.epochs == 11 and cfg.epochs == 4
    line = capsys.readouterr().out.strip()
    assert line.startswith("Step budget: 11 epochs of 112 steps (1232 "
                           "optimizer steps, at least --min_steps=1200")
    # Nothing to raise: the same config, nothing printed.
    same = dataclasses.replace(cfg, epochs=12)
    assert with_step_budget(same, 112) is same
    assert capsys.readouterr().out == ""


def test_a_given_epochs_drops_the_budget():
    release = presets.RELEASE.get("min_steps", 0)
    cfg = experiment_config({"dataset": "nus_like"}).trainer
    assert cfg.min_steps == release
    cfg = experiment_config({"dataset": "nus_like", "epochs": 6}).trainer
    assert (cfg.epochs, cfg.min_steps) == (6, 0)
    cfg = experiment_config(
        {"dataset": "nus_like", "epochs": 6, "min_steps": 500}).trainer
    assert (cfg.epochs, cfg.min_steps) == (6, 500)
