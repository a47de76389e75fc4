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
    out = {"model_dir": model_dir}
    for run in ("train", "validation", "test", "."):
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
                "train/learning_rate", "train/fusion_weight",
                "train/grad_norm"):
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
    lr = [float(_tensor(v)) for _, _, v in train["train/learning_rate"]]
    assert lr[0] < lr[1]  # warmup
    weight = float(_tensor(train["train/fusion_weight"][0][2]))
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
    for tag in ("validation/map", "validation/f1@3", "validation/p@5"):
        assert len(validation[tag]) == 2, tag
    # The score that selected the epoch, beside the per-epoch curves.
    assert len(validation["validation/best_f1@3"]) == 1
    best = float(_tensor(validation["validation/best_f1@3"][0][2]))
    per_epoch = [float(_tensor(v)) for _, _, v in validation["validation/f1@3"]]
    assert best == pytest.approx(max(per_epoch))
    images = {t: e for t, e in validation.items()
              if t.startswith("validation/gpa_maps/")}
    assert len(images) == 4
    for entries in images.values():
        assert _plugin(entries) == {"images"}
        assert len(entries) == 2  # every epoch, the same image
        width, height, png = _tensor(entries[-1][2])
        picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        # 4x4 grid, energy + 3 group tiles of 96 px with 4 px gaps, and a
        # 14 px caption strip naming the tiles.
        assert (int(width), int(height)) == (4 * 96 + 3 * 4, 96 + 14)
        assert picture.shape == (110, 396, 3)
        assert picture[:96].std() > 10  # not a flat picture
        caption = picture[96:]
        for left in (0, 100, 200, 300):  # dark text in every tile's caption
            assert caption[:, left:left + 96].min() < 100


def test_final_metrics_text_table_and_pr_curves(events):
    test = events["test"]
    for tag in ("test/zsl/map", "test/gzsl/map", "test/zsl/f1@3",
                "test/gzsl/f1@5", "zz_baselines/chance/zsl/map"):
        assert _plugin(test[tag]) == {"scalars"}, tag
        assert 0.0 <= float(_tensor(test[tag][0][2])) <= 1.0
    assert not any("n_images" in t for t in test)
    assert not any(t.startswith("chance/") for t in test)

    table = test["test/results"]
    assert _plugin(table) == {"text"}
    text = _tensor(table[0][2]).item().decode()
    assert "| model | setting | mAP | P@3 | R@3 | F1@3 |" in text
    zsl_map = 100 * float(_tensor(test["test/zsl/map"][0][2]))
    assert f"| Epsilon | ZSL | {zsl_map:.2f} |" in text
    assert "| Epsilon | GZSL |" in text and "| chance | ZSL |" in text

    curves = {t: e for t, e in test.items()
              if t.startswith("test/pr_unseen/")}
    assert 1 <= len(curves) <= 5
    for tag, entries in curves.items():
        assert tag.endswith("/pr_curves")
        assert _plugin(entries) == {"pr_curves"}
        data = _tensor(entries[0][2])
        assert data.shape == (6, 201)  # tp, fp, tn, fn, precision, recall
        tp, fp = data[0], data[1]
        assert tp[0] > 0 and tp[0] + fp[0] <= 120


def test_every_scalar_has_a_description(events):
    for run in ("train", "validation", "test"):
        for tag, entries in events[run].items():
            if _plugin(entries) == {"scalars"}:
                description = entries[0][2].metadata.summary_description
                assert description.strip(), (run, tag)


def _compare_tag_names(a, b):
    """TensorBoard's tag order (webapp `compareTagNames`): ascii, digit runs
    as numbers, '/' before anything."""
    import re

    def parts(tag):
        return [
            (0, "") if p == "/" else (1, float(p)) if p[0].isdigit()
            else (2, p)
            for p in re.findall(r"/|\d+(?:\.\d+)?|[^/\d]", tag)
        ]

    pa, pb = parts(a), parts(b)
    return (pa > pb) - (pa < pb)


def test_dashboards_open_on_losses_and_test_metrics(events):
    import functools

    scalars = {
        tag for run in ("train", "validation", "test")
        for tag, entries in events[run].items()
        if _plugin(entries) in ({"scalars"}, {"images"})
    }
    ordered = sorted(scalars, key=functools.cmp_to_key(_compare_tag_names))
    groups = list(dict.fromkeys(t.split("/", 1)[0] for t in ordered))
    assert groups[:2] == ["loss", "test"]
    assert groups[-1] == "zz_baselines"
    assert groups.index("validation") < groups.index("zz_baselines")


def test_hparams_test_metrics_first_relative_trial_id(events):
    from tensorboard.plugins.hparams import plugin_data_pb2

    root = events["."]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        root["_hparams_/experiment"][0][2].metadata.plugin_data.content
    ).experiment
    metrics = [(m.name.group, m.name.tag) for m in experiment.metric_infos]
    assert metrics[0] == ("test", "test/zsl/map")
    tests = [t for _, t in metrics if t.startswith("test/")]
    settings = [t.split("/")[1] for t in tests]
    assert settings == sorted(settings, key=lambda v: v != "zsl")  # ZSL 1st
    assert tests[settings.index("gzsl")] == "test/gzsl/map"
    assert ("validation", "validation/best_f1@3") in metrics
    assert not any("chance" in t or "baselines" in t for _, t in metrics)
    for group, tag in metrics:  # each metric is in the run it names
        assert tag in events[group], (group, tag)
    hparam_names = {h.name for h in experiment.hparam_infos}
    assert {"model/hidden_dim", "train/learning_rate", "loss/form"} <= (
        hparam_names
    )
    session = plugin_data_pb2.HParamsPluginData.FromString(
        root["_hparams_/session_start_info"][0][2].metadata.plugin_data
        .content
    ).session_start_info
    assert session.group_name == events["model_dir"].name  # not a path
    assert session.hparams["model/hidden_dim"].number_value == 16
    assert session.hparams["loss/form"].string_value == "hinge"
    assert session.hparams["model/feature_shape"].string_value == "16x16"
    assert "train/model_dir" not in session.hparams
