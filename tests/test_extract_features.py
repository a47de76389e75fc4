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
    tf.keras.utils.set_random_seed(keras_seed)
    extract_features(
        str(images), str(labels), NAMES, str(tmp_path / "out"), "test",
        label_set="all", weights=None, image_size=64, batch_size=2,
        feature_dtype="float32", unlisted="unknown", progress=False,
    )
    examples = list(native_split(str(tmp_path / "out"), "test").dataset())
    assert [e["image_id"].numpy().decode() for e in examples] == names
    np.testing.assert_array_equal(
        np.stack([e["labels"].numpy() for e in examples]),
        [[1, 0, 1, 0], [0, 1, 0, -1], [0, 0, 0, 0]],
    )
    # Independent recomputation with the same (seeded) random backbone.
    tf.keras.utils.set_random_seed(keras_seed)
    model, preprocess = make_backbone("vgg19", None, 64)
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
