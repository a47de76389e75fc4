"""The recorded tuning runs keep the configuration they were measured with.

docs/tuning.md quotes held-out figures by run name
(`python -m research.tune_release_shaped --runs=NAME`); a run must not
change meaning when the shipped RELEASE_PRESET moves on.
"""

import dataclasses

import pytest

from epsilon_tf.config import RELEASE_PRESET, preset_configs
from research.tune_release_shaped import RUNS, run_configs

SHAPE = (196, 512)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_run_builds_valid_configs(name):
    model, loss, train = run_configs(name, SHAPE)
    assert model.feature_shape == SHAPE
    assert set(train) <= {"learning_rate", "batch_size", "mixed_precision",
                          "weight_decay"}


def test_preset_is_the_shipped_preset():
    model, loss, train = run_configs("preset", SHAPE)
    shipped_model, shipped_loss, shipped_train = preset_configs(
        RELEASE_PRESET, SHAPE)
    assert (model, loss) == (shipped_model, shipped_loss)
    assert train == {"learning_rate": shipped_train.learning_rate,
                     "batch_size": shipped_train.batch_size}


def test_the_last_selection_is_what_ships():
    # Session 28 (docs/worlds.md, "The warm start, kept"):
    # `lin_listwise_g3`, session 27's `lin_listwise` (issue 22's
    # `lin_eszsl` with the listwise loss) with the warm start at 3x the
    # Glorot RMS.
    assert run_configs("lin_listwise_g3", SHAPE)[:2] == run_configs(
        "preset", SHAPE)[:2]
    model, loss, _ = run_configs("lin_eszsl", SHAPE)
    assert loss.form == "hinge" and model.gfp_linear_scale == 0.0
    assert (dataclasses.replace(model, gfp_linear_scale=3.0),
            dataclasses.replace(loss, form="listwise")) == \
        run_configs("preset", SHAPE)[:2]
    # Issue 22: `lin_eszsl`, the selection of 717ddad
    # (`preset_l0_groups_f0.3`) with GFP's linear path from ESZSL.
    before = run_configs("preset_l0_groups_f0.3", SHAPE)[0]
    assert before.gfp_linear == "none"
    assert dataclasses.replace(before, gfp_linear="eszsl") == model


@pytest.mark.parametrize("name, fields", [
    # The preset before 717ddad: one encoder block, grouping over tokens,
    # the fusion weight starting at 0.1, the label term mu = 2.
    ("preset_f0.1", dict(gpa_layers=1, grouping="tokens", fusion_init=0.1)),
    ("preset_l0_f0.3", dict(gpa_layers=0, grouping="tokens",
                            fusion_init=0.3)),
    ("preset_l0", dict(gpa_layers=0, grouping="tokens", fusion_init=0.1)),
    # Before the fusion start was moved (0.5, the default).
    ("preset_lw2", dict(gpa_layers=1, grouping="tokens", fusion_init=0.5)),
    ("preset_gpa", dict(branches="gpa", gpa_layers=1)),
])
def test_pinned_runs_keep_their_model(name, fields):
    model, _, train = run_configs(name, SHAPE)
    assert {k: getattr(model, k) for k in fields} == fields
    assert model.hidden_dim == 128 and model.token_norm == "standardize"
    assert train == {"learning_rate": 3e-3, "batch_size": 64}


@pytest.mark.parametrize("name, weights", [
    ("preset_lw0", (0.0, 0.0)),
    ("preset_lw1", (1.0, 0.0)),
    ("preset_f0.1", (2.0, 0.0)),
    ("preset_bw1", (2.0, 1.0)),
    ("preset_l0_f0.3_lw4", (4.0, 0.0)),
])
def test_pinned_runs_keep_their_loss(name, weights):
    loss = run_configs(name, SHAPE)[1]
    assert (loss.label_weight, loss.branch_weight) == weights


def test_runs_without_a_preset_use_the_package_defaults():
    model, loss, train = run_configs("d128", SHAPE)
    assert (model.hidden_dim, model.token_norm, loss.label_weight) == (
        128, "layer", 0.0)
    assert train == {}


@pytest.mark.parametrize("name, model_fields, loss_fields, lr", [
    # Session 27 (the per-image top 3): each is lin_eszsl with one change.
    ("lin_lw0", {}, {"label_weight": 0.0}, 3e-3),
    ("lin_lw4", {}, {"label_weight": 4.0}, 3e-3),
    ("lin_m0.25", {}, {"margin": 0.25}, 3e-3),
    ("lin_s10", {"score_scale": 10.0}, {}, 3e-3),
    ("lin_f0.1", {"fusion_init": 0.1}, {}, 3e-3),
    ("lin_lr3e-4", {}, {}, 3e-4),
    ("lin_lr0", {}, {}, 1e-12),
    ("lin_listwise", {}, {"form": "listwise"}, 3e-3),
    ("lin_listwise_lw0", {}, {"form": "listwise", "label_weight": 0.0},
     3e-3),
    ("lin_listwise_s10", {"score_scale": 10.0}, {"form": "listwise"}, 3e-3),
    # Session 28: the linear path's warm start at a Glorot multiple.
    ("lin_listwise_g1", {"gfp_linear_scale": 1.0}, {"form": "listwise"},
     3e-3),
    ("lin_listwise_g3", {"gfp_linear_scale": 3.0}, {"form": "listwise"},
     3e-3),
    ("lin_listwise_g5", {"gfp_linear_scale": 5.0}, {"form": "listwise"},
     3e-3),
    ("lin_listwise_g10", {"gfp_linear_scale": 10.0}, {"form": "listwise"},
     3e-3),
    ("lin_listwise_g3_s3", {"gfp_linear_scale": 3.0, "score_scale": 3.0},
     {"form": "listwise"}, 3e-3),
    ("lin_listwise_g3_lw1", {"gfp_linear_scale": 3.0},
     {"form": "listwise", "label_weight": 1.0}, 3e-3),
    ("lin_listwise_g3_drop0.3", {"gfp_linear_scale": 3.0, "dropout": 0.3,
                                 "token_dropout": 0.2},
     {"form": "listwise"}, 3e-3),
    ("lin_listwise_g3_bw0.5", {"gfp_linear_scale": 3.0},
     {"form": "listwise", "branch_weight": 0.5}, 3e-3),
    ("lin_listwise_g3_wd0.3", {"gfp_linear_scale": 3.0},
     {"form": "listwise"}, 3e-3),
])
def test_top3_runs_change_one_thing(name, model_fields, loss_fields, lr):
    base_model, base_loss, _ = run_configs("lin_eszsl", SHAPE)
    model, loss, train = run_configs(name, SHAPE)
    assert model == dataclasses.replace(base_model, **model_fields)
    assert loss == dataclasses.replace(base_loss, **loss_fields)
    assert train["learning_rate"] == lr
    assert train.get("weight_decay") == (0.3 if name.endswith("wd0.3")
                                         else None)


def test_band_picks_by_hand():
    import numpy as np

    from research.top3_release_shaped import band_picks

    # 25 seen tags, tag i the (i+1)-th most frequent in training.
    positives = np.arange(25, 0, -1)
    scores = np.zeros((2, 25))
    scores[0, [0, 1, 21]] = [3, 2, 1]  # picks two of rank 1-20, one after
    scores[1, [22, 23, 24]] = [3, 2, 1]
    labels = -np.ones((2, 25))
    labels[0, 0] = labels[1, 22] = 1
    rows = band_picks(scores, labels, positives)
    assert [r[0] for r in rows] == ["1-20", "21-100", "101-400", "401+"]
    assert rows[0][1:] == pytest.approx((2 / 6, 1 / 2))
    assert rows[1][1:] == pytest.approx((4 / 6, 1 / 4))
    assert rows[2][1] == 0 and np.isnan(rows[2][2])


def test_offset_sweep_by_hand():
    import numpy as np

    from research.top3_release_shaped import offset_sweep

    # Two images, labels 0-2 seen, 3 held out. Each image's held-out
    # positive sits just under its top 1 (k = 1): a small offset moves it up.
    scores = np.array([[1.0, 0.0, 0.0, 0.8], [0.0, 1.0, 0.0, 0.9]])
    labels = np.array([[-1, -1, -1, 1], [-1, -1, -1, 1]])
    unseen = np.array([False, False, False, True])
    spread = scores.std(axis=1).mean()
    rows = offset_sweep(scores, labels, unseen, offsets=(0.0, 0.3 / spread),
                        k=1)
    assert rows[0][1:] == (0.0, 0.0)
    # Raised by 0.3: 1.1 and 1.2 now top both images, both correct.
    assert rows[1][1:] == (1.0, 1.0)


def test_synthetic_task_holds_out_training_tags_only(tmp_path):
    # Session 30: the synthetic world's label-held-out task, carved from its
    # training split alone (its test split is never read).
    import numpy as np

    from epsilon_tf.data.pipeline import in_validation
    from epsilon_tf.data.worlds.synthetic import (
        SyntheticConfig,
        synthetic_source,
    )
    from research.tune_release_shaped import held_out_task

    world = synthetic_source(str(tmp_path / "cache"),
                             SyntheticConfig(num_train=300, num_test=20),
                             progress=False)
    task = held_out_task(str(tmp_path / "cache"), str(tmp_path / "work"),
                         1000, sizes=(300, 20), held_out=6, min_positives=3,
                         member="synthetic")
    space = task.label_space
    assert (len(space.seen), len(space.unseen)) == (244, 6)
    original = world.label_space.subset("seen")
    assert sorted(space.names) == sorted(original.names)
    by_id = {}
    for ex in world.split("train").dataset():
        by_id[ex["image_id"].numpy().decode()] = (
            ex["labels"].numpy(), bool(in_validation(ex["image_id"], 0.1)))
    column = {name: i for i, name in enumerate(original.names)}
    order = [column[name] for name in space.names]
    seen_ids = set()
    for split, label_count in (("train", 244), ("test", 250)):
        for ex in task.split(split).dataset():
            image_id = ex["image_id"].numpy().decode()
            labels, validation = by_id[image_id]  # a training image
            assert validation == (split == "test")
            np.testing.assert_array_equal(
                ex["labels"].numpy(), labels[order][:label_count])
            seen_ids.add(image_id)
    assert seen_ids == set(by_id)
    train_labels = np.stack([by_id[i][0] for i in by_id if not by_id[i][1]])
    held = [column[name] for name in space.names[244:]]
    assert ((train_labels[:, held] == 1).sum(0) >= 3).all()
