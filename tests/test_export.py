"""Tests of the TF Serving export: signatures, fresh-process loading,
input validation, atomic versioning, the image signature and the CLI."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny
from PIL import Image

from epsilon_tf.config import ModelConfig, to_dict
from epsilon_tf.export import (
    export_saved_model,
    list_versions,
    load_training_dir,
    make_backbone,
    read_export_info,
)
from epsilon_tf.export import serving as serving_lib
from epsilon_tf.export import versions as versions_lib
from epsilon_tf.labels import LabelSpace
from epsilon_tf.models import build_epsilon, fusion_weight, with_labels
from epsilon_tf.training import checkpointing

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tiny.model_config(
    feature_shape=(16, 8), embedding_dim=12, num_global=2
)
NUM_LABELS, NUM_SEEN, TOP_K = 20, 15, 5


def _space(num_labels=NUM_LABELS, num_seen=NUM_SEEN, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    return LabelSpace.from_arrays(
        [f"label {i}" for i in range(num_labels)],
        rng.normal(size=(num_labels, dim)).astype("float32"),
        seen=np.arange(num_seen),
    )


def _model(config=CONFIG, space=None, seed=1):
    keras.utils.set_random_seed(seed)
    model = build_epsilon(config, (space or _space()).subset("seen"))
    # Like a trained model: no zero bias, no unit LayerNorm scale, a fusion
    # weight away from 0.5 (the export folds all of them).
    tiny.perturb_weights(model, seed=seed)
    if "fusion" in {layer.name for layer in model.layers}:
        model.get_layer("fusion").theta.assign(0.7)
    return model


def _features(batch=4, seed=2, shape=CONFIG.feature_shape):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch,) + tuple(shape)).astype("float32")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    space, model = _space(), _model()
    base = tmp_path_factory.mktemp("export")
    path = export_saved_model(model, space, str(base), top_k=TOP_K)
    return model, space, path


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[2])


def _run(args, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=300, **kwargs
    )


# --- signatures as saved_model_cli lists them -----------------------------


def _parse_cli(text):
    """`{signature: {"inputs"|"outputs": {name: (dtype, shape)}}}`."""
    sigs = {}
    pattern = re.compile(
        r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+"
        r"shape: ([^\n]+)"
    )
    for block in re.split(r"\nsignature_def\['", text)[1:]:
        name = block.split("'", 1)[0]
        entry = sigs.setdefault(name, {"inputs": {}, "outputs": {}})
        for kind, tensor, dtype, shape in pattern.findall(block):
            entry[kind][tensor] = (dtype, shape.strip())
    return sigs


def test_saved_model_cli_lists_the_documented_signatures(exported):
    cli = ROOT / ".venv" / "bin" / "saved_model_cli"
    command = (
        [str(cli)]
        if cli.exists()
        else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    )
    result = _run(command + ["show", "--all", "--dir", exported[2]])
    assert result.returncode == 0, result.stderr
    sigs = _parse_cli(result.stdout)
    assert {"serving_default", "score_labels", "embed"} <= set(sigs)
    assert "serving_images" not in sigs
    k, n = TOP_K, NUM_LABELS
    # Declared input shapes (issue 12): what TF Serving's metadata endpoint
    # and generated clients see.
    features = ("DT_FLOAT", "(-1, 16, 8)")
    assert sigs["serving_default"] == {
        "inputs": {"features": features},
        "outputs": {
            "scores": ("DT_FLOAT", f"(-1, {n})"),
            "top_k_indices": ("DT_INT32", f"(-1, {k})"),
            "top_k_labels": ("DT_STRING", f"(-1, {k})"),
            "top_k_scores": ("DT_FLOAT", f"(-1, {k})"),
            "top_k_unseen": ("DT_BOOL", f"(-1, {k})"),
        },
    }
    assert sigs["score_labels"] == {
        "inputs": {
            "features": features,
            "label_embeddings": ("DT_FLOAT", "(-1, 12)"),
        },
        "outputs": {"scores": ("DT_FLOAT", "(-1, -1)")},
    }
    g, m, e, regions = 3, 2, 12, 16
    assert sigs["embed"] == {
        "inputs": {"features": features},
        "outputs": {
            "local_prompts": ("DT_FLOAT", f"(-1, {g}, {e})"),
            "assignments": ("DT_FLOAT", f"(-1, {g}, {regions})"),
            "global_vectors": ("DT_FLOAT", f"(-1, {m}, {e})"),
            "fusion_weight": ("DT_FLOAT", "(-1)"),
        },
    }
    assets = Path(exported[2]) / "assets"
    names = (assets / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert names == list(exported[1].names)
    unseen = (assets / "unseen.txt").read_text().split()
    assert unseen == [str(int(u)) for u in exported[1].unseen_mask]
    info = json.loads((assets / "export_info.json").read_text())
    assert info["feature_shape"] == [16, 8] and info["top_k"] == TOP_K


# --- a fresh process without epsilon_tf reproduces the Keras model --------

FRESH_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    path, data, out = sys.argv[1:4]
    d = np.load(data)
    m = tf.saved_model.load(path)
    res = {}
    o = m.signatures["serving_default"](features=tf.constant(d["x"]))
    for k, v in o.items():
        v = v.numpy()
        res["default_" + k] = v.astype("S") if v.dtype == object else v
    o = m.signatures["score_labels"](
        features=tf.constant(d["x"]),
        label_embeddings=tf.constant(d["new_vectors"]))
    res["new_scores"] = o["scores"].numpy()
    for k, v in m.signatures["embed"](features=tf.constant(d["x"])).items():
        res["embed_" + k] = v.numpy()
    res["labels_file"] = np.asarray(open(
        m.labels_file.asset_path.numpy().decode()).read())
    # TF Serving loads through a session (TF1 loader): check that path too.
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sig = meta.signature_def["serving_default"]
        res["session_scores"] = sess.run(
            sig.outputs["scores"].name,
            {sig.inputs["features"].name: d["x"]})
    assert "epsilon_tf" not in sys.modules, "epsilon_tf was imported"
    np.savez(out, **res)
    """
)


def test_fresh_process_reproduces_the_keras_model(exported, tmp_path):
    model, space, path = exported
    rng = np.random.default_rng(5)
    x = _features()
    new_vectors = rng.normal(size=(7, 12)).astype("float32") * 3.0
    np.savez(tmp_path / "in.npz", x=x, new_vectors=new_vectors)
    result = _run(
        [sys.executable, "-c", FRESH_SCRIPT, path, "in.npz", "out.npz"],
        cwd=tmp_path,  # epsilon_tf is not even importable from here
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")

    reference = with_labels(model, space.vectors)(x)
    expected = reference["scores"].numpy()
    np.testing.assert_allclose(out["default_scores"], expected, atol=1e-5)
    np.testing.assert_allclose(out["session_scores"], expected, atol=1e-5)
    order = np.argsort(-expected, axis=1, kind="stable")[:, :TOP_K]
    np.testing.assert_array_equal(out["default_top_k_indices"], order)
    names = np.asarray(space.names)
    np.testing.assert_array_equal(
        out["default_top_k_labels"].astype(str), names[order]
    )
    np.testing.assert_allclose(
        out["default_top_k_scores"],
        np.take_along_axis(expected, order, axis=1),
        atol=1e-5,
    )
    np.testing.assert_array_equal(
        out["default_top_k_unseen"], space.unseen_mask[order]
    )
    assert out["default_top_k_unseen"].any()  # unseen labels are ranked

    # A vocabulary nobody trained on, given at request time.
    novel = with_labels(model, new_vectors)(x)["scores"].numpy()
    np.testing.assert_allclose(out["new_scores"], novel, atol=1e-5)

    for key in ("local_prompts", "global_vectors", "assignments"):
        np.testing.assert_allclose(
            out[f"embed_{key}"], reference[key].numpy(), atol=1e-5
        )
    np.testing.assert_allclose(
        out["embed_fusion_weight"], np.full(4, fusion_weight(model)), 1e-6
    )
    assert str(out["labels_file"]).splitlines() == list(space.names)


def test_label_sets_and_top_k_clamp(tmp_path):
    space, model = _space(), _model()
    x = _features(batch=3)
    for label_set, subset in (("unseen", "unseen"), ("seen", "seen")):
        sub = space.subset(subset)
        path = export_saved_model(
            model,
            space,
            str(tmp_path / label_set),
            top_k=50,
            label_set=label_set,
            jit_compile=label_set == "seen",  # XLA variant: same scores
        )
        out = tf.saved_model.load(path).signatures["serving_default"](
            features=tf.constant(x)
        )
        expected = with_labels(model, sub.vectors)(x)["scores"].numpy()
        np.testing.assert_allclose(out["scores"].numpy(), expected, atol=1e-5)
        assert out["top_k_labels"].shape == (3, sub.num_labels)  # clamped
        assert bool(np.all(out["top_k_unseen"].numpy())) == (
            label_set == "unseen"
        )
    with pytest.raises(ValueError, match="label_set"):
        export_saved_model(model, space, str(tmp_path / "x"), label_set="zsl")
    with pytest.raises(ValueError, match="top_k"):
        export_saved_model(model, space, str(tmp_path / "x"), top_k=0)
    with pytest.raises(ValueError, match="12-d word vectors"):
        export_saved_model(model, _space(dim=5), str(tmp_path / "x"))


def test_gpa_only_model_exports_its_branch(tmp_path):
    config = ModelConfig(**dict(to_dict(CONFIG)["ModelConfig"], branches="gpa"))
    space = _space()
    model = _model(config, space)
    path = export_saved_model(model, space, str(tmp_path))
    loaded = tf.saved_model.load(path)
    x = _features(batch=2)
    out = loaded.signatures["embed"](features=tf.constant(x))
    assert set(out) == {"local_prompts", "assignments", "fusion_weight"}
    np.testing.assert_allclose(out["fusion_weight"].numpy(), [1.0, 1.0])
    expected = with_labels(model, space.vectors)(x)["scores"].numpy()
    got = loaded.signatures["serving_default"](features=tf.constant(x))
    np.testing.assert_allclose(got["scores"].numpy(), expected, atol=1e-5)


# --- invalid requests fail with clear messages ----------------------------


@pytest.mark.parametrize(
    "shape, message",
    [
        (
            (16, 8),
            "`features` must have rank 3: expected shape "
            "[batch, 16, 8], received shape] [16 8]",
        ),
        (
            (2, 16, 8, 1),
            "`features` must have rank 3: expected shape "
            "[batch, 16, 8], received shape] [2 16 8 1]",
        ),
        (
            (2, 16, 7),
            "`features` has the wrong size: expected shape "
            "[batch, 16, 8], received shape] [2 16 7]",
        ),
        (
            (3, 15, 8),
            "`features` has the wrong size: expected shape "
            "[batch, 16, 8], received shape] [3 15 8]",
        ),
    ],
)
@pytest.mark.parametrize("signature", ["serving_default", "embed"])
def test_wrong_features_fail_clearly(loaded, signature, shape, message):
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        loaded.signatures[signature](features=tf.zeros(shape))
    assert message in str(err.value)


@pytest.mark.parametrize(
    "features, labels, message",
    [
        (
            (2, 16, 8),
            (5, 11),
            "`label_embeddings` has the wrong size: "
            "expected shape [num_labels, 12], received shape] [5 11]",
        ),
        (
            (2, 16, 8),
            (12,),
            "`label_embeddings` must have rank 2: expected "
            "shape [num_labels, 12], received shape] [12]",
        ),
        (
            (2, 8, 8),
            (5, 12),
            "`features` has the wrong size: expected shape "
            "[batch, 16, 8], received shape] [2 8 8]",
        ),
    ],
)
def test_wrong_score_labels_inputs_fail_clearly(
    loaded, features, labels, message
):
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        loaded.signatures["score_labels"](
            features=tf.zeros(features), label_embeddings=tf.ones(labels)
        )
    assert message in str(err.value)


# --- versions, atomicity ---------------------------------------------------


def _assert_complete_versions(base):
    numeric = [n for n in os.listdir(base) if n.isdigit()]
    for name in numeric:
        version = Path(base) / name
        assert (version / "saved_model.pb").is_file()
        assert (version / "variables" / "variables.index").is_file()
        assert (version / "assets" / "labels.txt").is_file()
        tf.saved_model.load(str(version)).signatures["serving_default"]
    return sorted(int(n) for n in numeric)


def test_versions_numbering_overwrite_and_pruning(tmp_path):
    space, model = _space(), _model()
    base = str(tmp_path / "base")
    assert export_saved_model(model, space, base) == os.path.join(base, "1")
    assert export_saved_model(model, space, base, version=7).endswith("7")
    assert export_saved_model(model, space, base) == os.path.join(base, "8")
    assert list_versions(base) == [1, 7, 8]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_saved_model(model, space, base, version=7)
    for bad in (0, -1, "3", 1.5, True):
        with pytest.raises(ValueError, match="`version` must be a positive"):
            export_saved_model(model, space, base, version=bad)
    path = export_saved_model(
        model,
        space,
        base,
        version=7,
        top_k=3,
        overwrite=True,
        keep_versions=False,
    )
    assert path == os.path.join(base, "7")
    assert sorted(os.listdir(base)) == ["7"]  # no temporary leftovers
    info = json.loads((Path(path) / "assets" / "export_info.json").read_text())
    assert info["top_k"] == 3 and info["version"] == 7
    assert read_export_info(path) == info
    assert read_export_info(base) is None  # the base is not a version
    assert _assert_complete_versions(base) == [7]


def test_failed_export_leaves_only_complete_versions(tmp_path, monkeypatch):
    space, model = _space(), _model()
    base = str(tmp_path / "base")
    export_saved_model(model, space, base)
    real_save = tf.saved_model.save

    def failing_save(obj, export_dir, **kwargs):
        real_save(obj, export_dir, **kwargs)  # the files are half there...
        os.remove(os.path.join(export_dir, "saved_model.pb"))
        raise OSError("No space left on device")  # ...when the disk fills

    monkeypatch.setattr(serving_lib.tf.saved_model, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        export_saved_model(model, space, base)
    monkeypatch.undo()
    assert sorted(os.listdir(base)) == ["1"]
    assert _assert_complete_versions(base) == [1]

    # A failure while writing the vocabulary assets, before any save.
    with pytest.raises(ValueError, match="line breaks"):
        bad = LabelSpace.from_arrays(
            ["ok"] * 19 + ["two\nlines"], space.vectors, seen=range(15)
        )
        export_saved_model(model, bad, base)
    assert sorted(os.listdir(base)) == ["1"]


KILLED_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[3])
    import tensorflow as tf
    import epsilon_tf.layers  # noqa: F401
    import keras
    from epsilon_tf.export import serving
    from epsilon_tf.labels import LabelSpace

    model = keras.saving.load_model(sys.argv[1] + "/model.keras")
    space = LabelSpace.load(sys.argv[1] + "/label_space")
    real_save = tf.saved_model.save

    def save_then_die(obj, export_dir, **kwargs):
        real_save(obj, export_dir, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # before the rename

    serving.tf.saved_model.save = save_then_die
    serving.export_saved_model(model, space, sys.argv[2])
    """
)


def test_killed_export_is_invisible_and_cleaned_next_time(tmp_path):
    space, model = _space(), _model()
    train_dir = tmp_path / "run"
    train_dir.mkdir()
    model.save(train_dir / "model.keras")
    space.save(str(train_dir / "label_space"))
    base = str(tmp_path / "base")
    first = export_saved_model(model, space, base)
    result = _run(
        [sys.executable, "-c", KILLED_SCRIPT, str(train_dir), base, str(ROOT)]
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    leftovers = [n for n in os.listdir(base) if n.startswith(".tmp-2-")]
    assert len(leftovers) == 1  # what a server polling `base` ignores
    assert _assert_complete_versions(base) == [1]
    x = _features(batch=2)
    np.testing.assert_allclose(
        tf.saved_model.load(first)
        .signatures["serving_default"](features=tf.constant(x))["scores"]
        .numpy(),
        with_labels(model, space.vectors)(x)["scores"].numpy(),
        atol=1e-5,
    )
    # The next export removes the dead exporter's directory.
    assert export_saved_model(model, space, base).endswith("2")
    assert sorted(os.listdir(base)) == ["1", "2"]
    assert _assert_complete_versions(base) == [1, 2]


def test_live_exporters_temp_dirs_are_kept(tmp_path):
    base = tmp_path / "base"
    (base / ".tmp-3-1").mkdir(parents=True)  # pid 1 is alive
    dead = base / f".tmp-4-{2**22 + 7}"  # beyond pid_max: never alive
    dead.mkdir()
    (base / "notes").mkdir()
    removed = versions_lib.clean_stale_temp_dirs(str(base))
    assert removed == [str(dead)]
    assert sorted(os.listdir(base)) == [".tmp-3-1", "notes"]


# --- images in: serving_images ---------------------------------------------


def _encoded_images():
    rng = np.random.default_rng(3)
    blobs = []
    for fmt, size in (("JPEG", (40, 30)), ("PNG", (25, 37)), ("PNG", (32, 32))):
        pixels = rng.integers(0, 256, size=size[::-1] + (3,), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if fmt == "PNG" and size == (32, 32):
            image = image.convert("L")  # grayscale: decoded to 3 channels
        from io import BytesIO

        buffer = BytesIO()
        image.save(buffer, format=fmt)
        blobs.append(buffer.getvalue())
    return blobs


def _reference_image_scores(model, space, backbone, preprocess, blobs, size):
    pixels = []
    for blob in blobs:
        image = tf.io.decode_image(blob, channels=3, expand_animations=False)
        pixels.append(tf.image.resize(image, size))
    pixels = preprocess(tf.stack(pixels))
    features = backbone(pixels, training=False)
    features = tf.reshape(features, (len(blobs), -1, features.shape[-1]))
    return with_labels(model, space.vectors)(features)["scores"].numpy()


def test_serving_images_with_a_tiny_backbone(tmp_path):
    space, model = _space(), _model()
    keras.utils.set_random_seed(4)
    backbone = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, strides=8, padding="same"),
        ],
        name="tiny_backbone",
    )  # [b, 4, 4, 8]: a feature map, reshaped to 16 tokens of 8

    def preprocess(x):
        return x / 127.5 - 1.0

    path = export_saved_model(
        model, space, str(tmp_path), backbone=(backbone, preprocess)
    )
    loaded = tf.saved_model.load(path)
    # What docs/serving.md says (issue 23: it showed shape (-1)): the
    # signature takes `images` of unknown rank and checks rank 1 itself.
    spec = loaded.signatures["serving_images"].structured_input_signature
    assert spec[1]["images"].shape.rank is None
    assert spec[1]["images"].dtype == tf.string
    docs = (pathlib.Path(__file__).parents[1] / "docs" / "serving.md")
    assert "`images` DT_STRING of unknown rank" in docs.read_text()
    blobs = _encoded_images()
    out = loaded.signatures["serving_images"](images=tf.constant(blobs))
    expected = _reference_image_scores(
        model, space, backbone, preprocess, blobs, (32, 32)
    )
    np.testing.assert_allclose(out["scores"].numpy(), expected, atol=1e-4)
    order = np.argsort(-expected, axis=1)[:, :10]
    np.testing.assert_array_equal(out["top_k_indices"].numpy(), order)

    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        loaded.signatures["serving_images"](images=tf.constant([blobs]))
    assert "`images` must have rank 1: expected shape [batch]" in str(err.value)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image"):
        loaded.signatures["serving_images"](images=tf.constant([b"junk"]))
    mismatched = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, strides=8)]
    )
    with pytest.raises(ValueError, match="the model expects"):
        export_saved_model(
            model, space, str(tmp_path / "bad"), backbone=mismatched
        )


@pytest.mark.slow
def test_serving_images_with_vgg19_through_the_cli(tmp_path):
    """VGG19 `block5_conv4` (196x512 tokens), weights from a local file."""
    from epsilon_tf.export.__main__ import main

    config = ModelConfig(
        feature_shape=(196, 512),
        hidden_dim=32,
        num_prompts=3,
        gpa_heads=2,
        num_global=2,
        gfp_blocks=1,
    )
    space = _space()
    model = _model(config, space)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    space.save(str(run / "label_space"))
    (run / "config.json").write_text(json.dumps(to_dict(config), default=str))
    weights = str(tmp_path / "vgg19_notop.weights.h5")
    keras.applications.VGG19(
        include_top=False, weights=None, input_shape=(224, 224, 3)
    ).save_weights(weights)
    path = main(
        [
            f"--model_dir={run}",
            "--with_backbone",
            "--backbone=vgg19",
            f"--backbone_weights={weights}",
        ]
    )
    backbone, preprocess = make_backbone("vgg19", weights=weights)
    assert backbone.output_shape == (None, 196, 512)
    blobs = _encoded_images()[:2]
    out = tf.saved_model.load(path).signatures["serving_images"](
        images=tf.constant(blobs)
    )
    expected = _reference_image_scores(
        model, space, backbone, preprocess, blobs, (224, 224)
    )
    np.testing.assert_allclose(
        out["scores"].numpy(), expected, rtol=1e-4, atol=1e-4
    )


def test_make_backbone_arguments():
    with pytest.raises(ValueError, match="Unknown backbone"):
        make_backbone("alexnet")
    with pytest.raises(ValueError, match="image_size"):
        make_backbone("vgg19", image_size=16)
    with pytest.raises(FileNotFoundError, match="no such file"):
        make_backbone("vgg19", weights="/nonexistent/weights.h5")


# --- the CLI on a training directory --------------------------------------


def test_cli_reexports_a_training_directory(tmp_path):
    space, model = _space(), _model()
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    space.save(str(run / "label_space"))
    (run / "config.json").write_text(json.dumps(to_dict(CONFIG), default=str))
    result = _run(
        [
            sys.executable,
            "-m",
            "epsilon_tf.export",
            f"--model_dir={run}",
            "--top_k=3",
            "--label_set=unseen",
            "--version=4",
        ],
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    path = result.stdout.strip().splitlines()[-1]
    assert path == str(run / "export" / "4")
    out = tf.saved_model.load(path).signatures["serving_default"](
        features=tf.constant(_features(batch=2))
    )
    unseen = space.subset("unseen")
    expected = with_labels(model, unseen.vectors)(_features(batch=2))
    np.testing.assert_allclose(
        out["scores"].numpy(), expected["scores"].numpy(), atol=1e-5
    )
    assert out["top_k_labels"].shape == (2, 3)

    from epsilon_tf.export.__main__ import main

    with pytest.raises(FileExistsError, match="overwrite"):
        main([f"--model_dir={run}", "--version=4"])

    # --precision=bfloat16: recorded, approximately the same scores.
    path = main([f"--model_dir={run}", "--precision=bfloat16"])
    assert path == str(run / "export" / "5")
    info = json.loads((Path(path) / "assets" / "export_info.json").read_text())
    assert info["precision"] == "bfloat16"
    scores = tf.saved_model.load(path).signatures["serving_default"](
        features=tf.constant(_features(batch=2))
    )["scores"].numpy()
    reference = with_labels(model, space)(_features(batch=2))["scores"]
    diff = np.abs(scores - reference.numpy()).max()
    assert 1e-5 < diff < 0.1, diff
    with pytest.raises(SystemExit):
        main([f"--model_dir={run}", "--precision=float16"])


def test_load_training_dir_from_the_best_checkpoint(tmp_path):
    space, model = _space(), _model()
    run = tmp_path / "run"
    run.mkdir()
    space.save(str(run / "label_space"))
    (run / "config.json").write_text(json.dumps(to_dict(CONFIG), default=str))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_training_dir(str(run))
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), str(run / "best"), max_to_keep=1
    )
    manager.save(checkpoint_number=3)
    gaps = checkpointing.checkpoint_gaps(model)
    if gaps:  # the guard refuses to export a half-restored model
        with pytest.raises(ValueError, match="does not track"):
            load_training_dir(str(run))
        pytest.xfail(
            f"tf.train.Checkpoint cannot reach {len(gaps)} variables of the "
            "model (sublayers kept in Python lists in GPA/GFP), so "
            "checkpoints lack them; export uses model.keras meanwhile"
        )
    restored, restored_space = load_training_dir(str(run))
    assert restored_space.names == space.names
    x = _features(batch=2)
    np.testing.assert_allclose(
        restored(x)["scores"].numpy(), model(x)["scores"].numpy(), atol=1e-6
    )
    with pytest.raises(FileNotFoundError):
        load_training_dir(str(tmp_path / "missing"))
