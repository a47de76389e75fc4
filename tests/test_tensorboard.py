"""TensorBoard output, read back from the event files."""

import io
from collections import defaultdict

import numpy as np
import pytest
from helpers import tiny


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """{run: {tag: [(step, plugin, value proto)]}} of a short run."""
    from tensorboard.backend.event_processing import event_file_loader

    from epsilon_tf.config import LossConfig, TrainConfig
    from epsilon_tf.training.run import train_and_evaluate

    model_dir = tmp_path_factory.mktemp("tb")
    train_and_evaluate(
        tiny.model_config(), LossConfig(),
        TrainConfig(model_dir=str(model_dir), epochs=2, batch_size=32,
                    warmup_steps=5, verbose=0, export=False,
                    summary_images=4, pr_curve_labels=5),
        tiny.in_memory_source(), baseline=False,
    )
    out = {}
    for run in ("train", "validation", "test"):
        tags = defaultdict(list)
        for path in sorted((model_dir / run).glob("events.out.tfevents.*")):
            for event in event_file_loader.EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    tags[value.tag].append(
                        (event.step, value.metadata.plugin_data.plugin_name,
                         value)
                    )
        out[run] = dict(tags)
    return out


def _plugin(entries):
    return {plugin for _, plugin, _ in entries}


def _tensor(value):
    import tensorflow as tf

    return tf.make_ndarray(value.tensor)


def test_training_scalars_one_per_loss_term(events):
    train = events["train"]
    for tag in ("loss/total", "loss/ranking", "loss/diversity",
                "learning_rate", "fusion_weight", "grad_norm"):
        assert tag in train, tag
        assert _plugin(train[tag]) == {"scalars"}
        steps = [s for s, _, _ in train[tag]]
        assert steps[0] == 1 and 20 in steps  # step 1, then every 10
    totals = {s: float(_tensor(v)) for s, _, v in train["loss/total"]}
    parts = {
        s: float(_tensor(v)) + float(_tensor(w))
        for (s, _, v), (_, _, w) in zip(
            train["loss/ranking"], train["loss/diversity"], strict=True
        )
    }
    for step, total in totals.items():
        assert total == pytest.approx(parts[step], rel=1e-5)
    lr = [float(_tensor(v)) for _, _, v in train["learning_rate"]]
    assert lr[0] < lr[1]  # warmup
    weight = float(_tensor(train["fusion_weight"][0][2]))
    assert 0.0 < weight < 1.0


def test_weight_histograms_every_epoch(events):
    train = events["train"]
    hists = {t: e for t, e in train.items() if t.startswith("weights/")}
    assert "weights/gpa/prompt_tokens" in hists
    assert "weights/fusion/theta" in hists
    assert len(hists) > 20
    for tag, entries in hists.items():
        assert _plugin(entries) == {"histograms"}, tag
        assert [s for s, _, _ in entries] == [
            tiny.STEPS_PER_EPOCH, 2 * tiny.STEPS_PER_EPOCH
        ]
        buckets = _tensor(entries[0][2])
        assert buckets.ndim == 2 and buckets.shape[1] == 3


def test_validation_scalars_and_assignment_images(events):
    from PIL import Image

    validation = events["validation"]
    for tag in ("seen/map", "seen/f1@3", "seen/p@5"):
        assert len(validation[tag]) == 2, tag
    images = {t: e for t, e in validation.items()
              if t.startswith("gpa_assignments/")}
    assert len(images) == 4
    for entries in images.values():
        assert _plugin(entries) == {"images"}
        assert len(entries) == 2  # every epoch, the same image
        width, height, png = _tensor(entries[-1][2])
        picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        # 4x4 grid, energy + 3 group tiles of 96 px with 4 px gaps.
        assert (int(width), int(height)) == (4 * 96 + 3 * 4, 96)
        assert picture.shape == (96, 396, 3)
        assert picture.std() > 10  # not a flat picture


def test_final_metrics_pr_curves_and_hparams(events):
    from tensorboard.plugins.hparams import plugin_data_pb2

    test = events["test"]
    for tag in ("test/zsl/map", "test/gzsl/map", "test/zsl/f1@3",
                "test/gzsl/f1@5", "chance/zsl/map", "validation/best_f1@3"):
        assert _plugin(test[tag]) == {"scalars"}, tag
        assert 0.0 <= float(_tensor(test[tag][0][2])) <= 1.0
    assert not any("n_images" in t for t in test)

    curves = {t: e for t, e in test.items() if t.startswith("pr_unseen/")}
    assert 1 <= len(curves) <= 5
    for tag, entries in curves.items():
        assert tag.endswith("/pr_curves")
        assert _plugin(entries) == {"pr_curves"}
        data = _tensor(entries[0][2])
        assert data.shape == (6, 201)  # tp, fp, tn, fn, precision, recall
        tp, fp = data[0], data[1]
        assert tp[0] > 0 and tp[0] + fp[0] <= 120

    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        test["_hparams_/experiment"][0][2].metadata.plugin_data.content
    ).experiment
    metric_tags = {m.name.tag for m in experiment.metric_infos}
    assert {"test/zsl/map", "test/gzsl/map"} <= metric_tags
    assert metric_tags <= set(test)  # every metric is in this run
    hparam_names = {h.name for h in experiment.hparam_infos}
    assert {"model/hidden_dim", "train/learning_rate", "loss/form"} <= (
        hparam_names
    )
    session = plugin_data_pb2.HParamsPluginData.FromString(
        test["_hparams_/session_start_info"][0][2].metadata.plugin_data
        .content
    ).session_start_info
    assert session.hparams["model/hidden_dim"].number_value == 16
    assert session.hparams["loss/form"].string_value == "hinge"
    assert session.hparams["model/feature_shape"].string_value == "16x16"
    assert "train/model_dir" not in session.hparams
