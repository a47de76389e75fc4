"""Paper-style example pictures: `eval.py --examples=N --examples_out=DIR`.

Drawn text cannot be read back from pixels, so each PNG carries what it
shows (tEXt chunk `epsilon:example`, and a JSON file beside it); the tests
check those, the picture's size and that it is not blank.
"""

import json

import numpy as np
import pytest
from helpers import tiny

from epsilon_tf.labels import LabelSpace
from epsilon_tf.visualization.examples import (
    PNG_TEXT_KEY,
    draw_example,
    read_example_record,
    save_example_png,
)


def _space():
    names = [f"label{i:02d}" for i in range(14)]
    vectors = np.eye(14, 4, dtype=np.float32) + 0.1
    return LabelSpace.from_arrays(names, vectors, seen=np.arange(10))


def test_known_top_labels_are_drawn_and_recorded(tmp_path):
    from PIL import Image

    space = _space()  # labels 10..13 are unseen
    scores = np.zeros(14, np.float32)
    # The known answer: 12 > 3 > 11 > 0 > ... by construction.
    order = [12, 3, 11, 0, 7, 13, 1, 9, 2, 10, 4, 5, 6, 8]
    scores[order] = np.linspace(1.0, 0.0, 14)
    labels = -np.ones(14, np.int8)
    labels[[12, 0, 4]] = 1  # 4 is outside the top 10
    maps = np.random.default_rng(0).random((3, 16))
    feats = np.random.default_rng(1).random((16, 8))
    image, record = draw_example(
        "img_7", scores, labels, maps, feats, space, top_k=10
    )
    entries = record["top_labels"]
    assert [e["name"] for e in entries] == [
        f"label{k:02d}" for k in order[:10]
    ]
    assert [e["rank"] for e in entries] == list(range(1, 11))
    assert [e["unseen"] for e in entries] == [k >= 10 for k in order[:10]]
    assert [e["correct"] for e in entries] == [
        k in (12, 0) for k in order[:10]
    ]
    assert record["maps"] == ["energy", "group 1", "group 2", "group 3"]
    assert record["grid"] == [4, 4]

    path = tmp_path / "example.png"
    sidecar = save_example_png(str(path), image, record)
    assert json.loads(open(sidecar).read()) == record
    assert read_example_record(str(path)) == record
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert PNG_TEXT_KEY in png.text
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.shape[0] >= 20 * 12 and pixels.shape[1] > 330 + 4 * 96
    green = (pixels[..., 1] > 100) & (pixels[..., 0] < 40) & (
        pixels[..., 2] < 40
    )
    assert green.sum() > 20  # the two correct labels are drawn in green
    assert pixels.std() > 20


def test_unseen_marked_in_text_column(tmp_path):
    """A figure with an unseen top label differs from one without."""
    space = _space()
    maps, feats = np.ones((3, 16)), np.ones((16, 8))
    scores = np.zeros(14, np.float32)
    scores[10] = 1.0  # unseen first
    _, rec = draw_example("a", scores, None, maps, feats, space, 3)
    assert rec["top_labels"][0]["unseen"] is True
    assert rec["top_labels"][0]["correct"] is None


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    from epsilon_tf.config import LossConfig, TrainConfig
    from epsilon_tf.training.run import train_and_evaluate

    model_dir = tmp_path_factory.mktemp("model")
    train_and_evaluate(
        tiny.model_config(), LossConfig(),
        TrainConfig(model_dir=str(model_dir), epochs=1, batch_size=32,
                    verbose=0, export=False, summary_images=0,
                    pr_curve_labels=0),
        tiny.in_memory_source(), baseline=False,
    )
    return model_dir


def test_eval_model_dir_examples_match_the_model(trained_dir, tmp_path):
    import keras
    from PIL import Image

    from epsilon_tf.cli.evaluate import run_evaluation
    from epsilon_tf.models import with_labels

    source = tiny.in_memory_source()
    out = tmp_path / "examples"
    result = run_evaluation(
        "model_dir", str(trained_dir), source=source, progress=False,
        examples=3, examples_out=str(out),
    )
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [
        "0000_test_000000.png", "0001_test_000001.png",
        "0002_test_000002.png",
    ]
    assert result["examples"] == [str(p) for p in pngs]

    # The answer, computed independently from the saved model.
    space = source.label_space
    model = keras.saving.load_model(str(trained_dir / "model.keras"))
    ids, feats, labels = tiny.arrays("test")
    scores = np.asarray(
        with_labels(model, space.vectors)(feats[:3])["scores"]
    )
    for i, png in enumerate(pngs):
        record = read_example_record(str(png))
        assert record == json.loads(png.with_suffix(".json").read_text())
        assert record["image_id"] == ids[i]
        top = np.argsort(-scores[i], kind="stable")[:10]
        assert [e["name"] for e in record["top_labels"]] == [
            space.names[k] for k in top
        ]
        assert [e["unseen"] for e in record["top_labels"]] == [
            bool(space.unseen_mask[k]) for k in top
        ]
        assert [e["correct"] for e in record["top_labels"]] == [
            bool(labels[i, k] > 0) for k in top
        ]
        with Image.open(png) as image:
            assert image.size[0] > 330 + 4 * 96
            assert np.asarray(image.convert("RGB")).std() > 20


def test_examples_need_the_keras_model(tmp_path):
    from epsilon_tf.cli.evaluate import run_evaluation

    with pytest.raises(ValueError, match="--model_dir"):
        run_evaluation(
            "saved_model", str(tmp_path), source=tiny.in_memory_source(),
            examples=2,
        )
    with pytest.raises(ValueError, match="--model_dir"):
        run_evaluation("predictions", str(tmp_path / "x.npz"), examples=1)


def test_gfp_only_model_has_no_maps(tmp_path):
    from epsilon_tf.config import ModelConfig
    from epsilon_tf.models import build_epsilon
    from epsilon_tf.visualization.examples import write_examples

    source = tiny.in_memory_source()
    model = build_epsilon(
        ModelConfig(feature_shape=(16, 16), hidden_dim=16, gfp_blocks=1,
                    branches="gfp"),
        source.label_space.subset("seen"),
    )
    with pytest.raises(ValueError, match="no GPA branch"):
        write_examples(model, source.split("test"), source.label_space,
                       str(tmp_path), 2)


def test_eval_py_cli(trained_dir, tmp_path):
    data_dir = tiny.write_native(tmp_path / "world")
    out = tmp_path / "pictures"
    code, log = tiny.run(
        [tiny.PYTHON, str(tiny.ROOT / "eval.py"), "--dataset=synthetic",
         "--data_format=native", f"--data_dir={data_dir}",
         f"--model_dir={trained_dir}", "--examples=2",
         f"--examples_out={out}", "--noprogress"],
        tmp_path / "eval.log",
    )
    assert code == 0, log[-3000:]
    assert len(list(out.glob("*.png"))) == 2
    assert len(list(out.glob("*.json"))) == 2
    code, log = tiny.run(
        [tiny.PYTHON, str(tiny.ROOT / "eval.py"),
         f"--saved_model={tmp_path}", "--examples=2"],
        tmp_path / "usage.log",
    )
    assert code == 1
    assert "--examples needs --model_dir" in log
    assert "Traceback" not in log
