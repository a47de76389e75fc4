"""Images -> native TFRecords through a frozen (weights=None) backbone."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from epsilon_tf.data.readers.native_tfrecord import native_split
from epsilon_tf.export.backbones import make_backbone
from epsilon_tf.tools.extract_features import extract_features, main

NAMES = ["cat", "dog", "sky", "tree"]


def write_images(directory, count=3, size=(40, 30)):
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3),
                              dtype=np.uint8)
        name = f"img{i}.png" if i % 2 else f"img{i}.jpg"
        Image.fromarray(pixels).save(directory / name)
        names.append(name)
    return names


def test_features_and_labels_round_trip(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    names = write_images(images)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "image,labels,negative_labels\n"
        f"{names[0]},cat;sky,\n{names[1]},dog,tree\n{names[2]},,\n"
    )
    keras_seed = 1
    extract_features(
        str(images), str(labels), NAMES, str(tmp_path / "out"), "test",
        label_set="all", weights=None, image_size=64, batch_size=2,
        feature_dtype="float32", unlisted="unknown", progress=False,
        seed=keras_seed,
    )
    examples = list(native_split(str(tmp_path / "out"), "test").dataset())
    assert [e["image_id"].numpy().decode() for e in examples] == names
    np.testing.assert_array_equal(
        np.stack([e["labels"].numpy() for e in examples]),
        [[1, 0, 1, 0], [0, 1, 0, -1], [0, 0, 0, 0]],
    )
    # Independent recomputation with the same (seeded) random backbone.
    model, preprocess = make_backbone("vgg19", None, 64, seed=keras_seed)
    assert model.output_shape == (None, 16, 512)
    for name, example in zip(names, examples):
        # Decoded by TensorFlow too: JPEG decoders differ in the last bit.
        image = tf.io.decode_image(tf.io.read_file(str(images / name)),
                                   channels=3)
        resized = tf.image.resize(tf.cast(image, "float32"), (64, 64))
        expected = model(preprocess(resized.numpy()[None]))[0].numpy()
        np.testing.assert_allclose(
            example["features"].numpy(), expected, rtol=1e-4, atol=1e-4
        )


def test_json_labels_and_cli(tmp_path, capsys):
    from epsilon_tf.labels import LabelSpace

    images = tmp_path / "images"
    images.mkdir()
    names = write_images(images, count=2)
    (tmp_path / "labels.json").write_text(
        json.dumps({names[0]: ["dog"],
                    names[1]: {"positive": ["cat"], "negative": ["dog"]}})
    )
    space = LabelSpace.from_arrays(NAMES, np.eye(4, 5) + 0.1, seen=[0, 1])
    space.save(tmp_path / "space")
    assert main([
        "--images_dir", str(images), "--labels",
        str(tmp_path / "labels.json"), "--label_space_dir",
        str(tmp_path / "space"), "--label_set", "seen", "--output_dir",
        str(tmp_path / "out"), "--split", "train", "--weights", "none",
        "--image_size", "32",
    ]) == 0
    assert "Wrote 2 examples" in capsys.readouterr().out
    examples = list(native_split(str(tmp_path / "out"), "train").dataset())
    np.testing.assert_array_equal(
        np.stack([e["labels"].numpy() for e in examples]),
        [[-1, 1], [1, -1]],
    )


def test_bad_inputs_are_named(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    names = write_images(images, count=1)
    (images / "broken.jpg").write_bytes(b"not an image")
    cases = [
        (f"image,labels\n{names[0]},zebra\n",
         KeyError, r"image 'img0.jpg'.*unknown label name\(s\) \['zebra'\]"),
        ("image,labels\nmissing.png,cat\n",
         FileNotFoundError, "image 'missing.png' not found"),
        ("file,tags\nx,y\n", ValueError, "must name the columns `image`"),
        ("image,labels\nbroken.jpg,cat\n",
         ValueError, "broken.jpg: not a decodable"),
    ]
    for i, (text, error, message) in enumerate(cases):
        path = tmp_path / f"labels{i}.csv"
        path.write_text(text)
        with pytest.raises(error, match=message):
            extract_features(
                str(images), str(path), NAMES, str(tmp_path / f"o{i}"),
                "test", weights=None, image_size=32, progress=False,
            )


def _space_dir(tmp_path, seen=(0, 1)):
    from epsilon_tf.labels import LabelSpace

    space = LabelSpace.from_arrays(NAMES, np.eye(4, 5) + 0.1, seen=list(seen))
    space.save(tmp_path / "space")
    return space, str(tmp_path / "space")


def test_label_space_beside_features_and_unlabelled_images(tmp_path, capsys):
    """Issue 23: train.py --data_dir=OUT finds OUT/label_space.json; images
    without a label file are written with unknown labels, to tag."""
    from epsilon_tf.data.readers.native_tfrecord import native_source
    from epsilon_tf.labels import LabelSpace

    images = tmp_path / "images"
    images.mkdir()
    names = write_images(images, count=3)
    (images / "notes.txt").write_text("not an image")
    space, space_dir = _space_dir(tmp_path)
    out = tmp_path / "out"
    assert main([
        "--images_dir", str(images), "--label_space_dir", space_dir,
        "--output_dir", str(out), "--split", "new", "--weights", "none",
        "--image_size", "32", "--feature_dtype", "float32",
    ]) == 0
    captured = capsys.readouterr()
    assert "Wrote 3 examples of shape (4, 512) (all labels)" in captured.out
    assert "warning: --weights=none: a backbone with random weights " \
        "(seed 0), for tests only" in captured.err
    assert LabelSpace.load(str(out)).names == space.names
    source = native_source(str(out), LabelSpace.load(str(out)))
    examples = list(source.split("new").dataset())
    assert sorted(e["image_id"].numpy().decode() for e in examples) == sorted(
        names)
    assert all(not e["labels"].numpy().any() for e in examples)


def test_training_split_of_all_labels_refused_before_writing(tmp_path):
    from epsilon_tf.errors import CommandLineError

    images = tmp_path / "images"
    images.mkdir()
    names = write_images(images, count=1)
    (tmp_path / "l.csv").write_text(f"image,labels\n{names[0]},cat\n")
    _, space_dir = _space_dir(tmp_path)
    out = tmp_path / "out"
    args = ["--images_dir", str(images), "--labels", str(tmp_path / "l.csv"),
            "--label_space_dir", space_dir, "--output_dir", str(out),
            "--split", "train", "--weights", "none", "--image_size", "32"]
    with pytest.raises(CommandLineError,
                       match="--label_set=all with --split=train"):
        main(args + ["--label_set", "all"])
    assert not out.exists()
    # Another label space already in the output directory: refused too.
    out.mkdir()
    from epsilon_tf.labels import LabelSpace

    LabelSpace.from_arrays(["x", "y"], np.eye(2)).save(out)
    with pytest.raises(CommandLineError, match="another label space"):
        main(args)
    assert sorted(p.name for p in out.iterdir()) == [
        "label_space.json", "label_vectors.npy"]
    # The default for the training split is its seen labels.
    main(args + ["--output_dir", str(tmp_path / "ok")])
    meta = json.loads((tmp_path / "ok" / "train.json").read_text())
    assert meta["label_set"] == "seen" and meta["label_names"] == NAMES[:2]


def test_random_backbone_is_the_same_on_every_call(tmp_path):
    """Issue 23: --weights=none gave another network on every call."""
    images = tmp_path / "images"
    images.mkdir()
    write_images(images, count=2)
    features = []
    for run in range(2):
        extract_features(
            str(images), None, NAMES, str(tmp_path / f"o{run}"), "test",
            label_set="all", weights=None, image_size=32,
            feature_dtype="float32", progress=False,
        )
        features.append(np.stack([
            e["features"].numpy()
            for e in native_split(str(tmp_path / f"o{run}"), "test").dataset()
        ]))
    np.testing.assert_array_equal(features[0], features[1])
    assert np.abs(features[0]).max() > 0


def test_progress_lines_without_carriage_return():
    import io

    from epsilon_tf.tools.extract_features import Progress

    stream = io.StringIO()
    bar = Progress(3, stream=stream, every_seconds=0.0)
    for done in (1, 2, 3):
        bar.update(done)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["1/3", "2/3", "3/3"]


def test_training_split_skips_unseen_mentions(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    names = write_images(images, count=2)
    (tmp_path / "l.csv").write_text(
        f"image,labels\n{names[0]},cat;sky\n{names[1]},dog;zebra\n")
    _, space_dir = _space_dir(tmp_path)  # cat, dog seen; sky, tree unseen
    out = tmp_path / "out"
    args = ["--images_dir", str(images), "--labels", str(tmp_path / "l.csv"),
            "--label_space_dir", space_dir, "--output_dir", str(out),
            "--split", "train", "--weights", "none", "--image_size", "32"]
    with pytest.raises(KeyError, match=r"unknown label name\(s\) \['zebra'\]"):
        main(args)
    (tmp_path / "l.csv").write_text(
        f"image,labels\n{names[0]},cat;sky\n{names[1]},dog;tree\n")
    assert main(args) == 0
    examples = list(native_split(str(out), "train").dataset())
    np.testing.assert_array_equal(
        np.stack([e["labels"].numpy() for e in examples]), [[1, -1], [-1, 1]]
    )
