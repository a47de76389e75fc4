"""train.py and eval.py end to end on small LESA- and BiAM-format files.

The files are laid out exactly as the releases lay them out (LESA ZLIB
TFRecords with raw-byte features and label_1k/label_81; BiAM HDF5 with
channel-first features and a pickled name list), with a small learnable
world from the synthetic generator inside.
"""

import json
import pickle
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny

from epsilon_tf.data.worlds.synthetic import (
    SyntheticConfig,
    generate_split,
    synthetic_label_space,
)
from tests.conftest import ROOT

WORLD = SyntheticConfig(
    num_themes=4, num_seen=24, num_unseen=6, num_train=480, num_test=160,
    grid_shape=(3, 3), channels=16, seed=5,
)
# Two concepts are also tags (LESA zeroes them in label_1k), as 75 of
# NUS-WIDE's 81 are.
OVERLAP = 2


def write_label_dir(directory):
    space = synthetic_label_space(WORLD)
    seen = [space.names[i] for i in space.seen]
    unseen = [space.names[i] for i in space.unseen]
    tags = seen[:10] + unseen[:OVERLAP] + seen[10:]
    directory.mkdir()
    (directory / "TagList1k.txt").write_bytes(
        "\r\n".join(tags).encode() + b"\r\n"
    )
    (directory / "Concepts81.txt").write_bytes(
        "\r\n".join(unseen).encode() + b"\r\n"
    )
    vec = dict(zip(space.names, space.vectors))
    with open(directory / "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300",
              "wb") as f:
        pickle.dump(
            [np.stack([vec[t] for t in tags]),
             np.stack([vec[u] for u in unseen])], f,
        )
    return space, tags, unseen


def examples(split):
    for image_id, features, labels in generate_split(WORLD, split):
        yield image_id, features.astype(np.float32), labels


def to_tags(labels, space, tags):
    """Seen labels (space order) -> label_1k in TagList order, concepts 0."""
    by_name = dict(zip([space.names[i] for i in space.seen], labels))
    return np.array([by_name.get(t, 0) for t in tags], np.float32)


def write_lesa(directory, space, tags):
    directory.mkdir()
    for split, name in (("train", "NUS_WIDE_Train_full_feature_ZLIB"),
                        ("test", "NUS_WIDE_Test_full_feature_ZLIB")):
        options = tf.io.TFRecordOptions(compression_type="ZLIB")
        with tf.io.TFRecordWriter(
            str(directory / f"{name}.tfrecords"), options
        ) as writer:
            for image_id, features, labels in examples(split):
                seen = labels[: len(space.seen)]
                unseen = (labels[len(space.seen):] if split == "test"
                          else np.zeros(len(space.unseen)))
                feature = {
                    "img_id": image_id.encode(),
                    "feature": features.tobytes(),
                    "label_1k": to_tags(seen, space, tags).tobytes(),
                    "label_81": np.asarray(unseen, np.float32).tobytes(),
                }
                writer.write(tiny.bytes_example(feature))
    return (
        ["--data_format=lesa",
         f"--train_files={directory}/NUS_WIDE_Train_*.tfrecords",
         f"--test_files={directory}/NUS_WIDE_Test_*.tfrecords"]
    )


def write_biam(directory, space):
    directory.mkdir()
    for split in ("train", "test"):
        names = []
        with h5py.File(directory / f"nus_wide_{split}.h5", "w") as f:
            for image_id, features, labels in examples(split):
                names.append(image_id)
                f[f"{image_id}-features"] = features.T  # channel-first
                f[f"{image_id}-labels"] = labels.astype(np.int8)
        with open(directory / f"{split}_img_names.pkl", "wb") as f:
            pickle.dump({"img_names": names}, f)
    return (
        ["--data_format=biam",
         f"--train_files={directory}/nus_wide_train.h5",
         f"--test_files={directory}/nus_wide_test.h5",
         f"--names_file={directory}/{{split}}_img_names.pkl"]
    )


def run(script, args):
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


# The BiAM case is slow-marked (30 s) to keep the default suite within
# its 15 minutes; its reader has unit tests in test_biam_hdf5.py.
@pytest.mark.parametrize(
    "release", ["lesa", pytest.param("biam", marks=pytest.mark.slow)]
)
def test_train_and_eval_from_release_files(tmp_path, release):
    space, tags, unseen = write_label_dir(tmp_path / "labels")
    if release == "lesa":
        data_flags = write_lesa(tmp_path / "release", space, tags)
    else:
        data_flags = write_biam(tmp_path / "release", space)
    data_flags += [
        "--dataset=nus_wide",
        f"--label_dir={tmp_path / 'labels'}",
        "--feature_shape=9x16",
    ]
    model_dir = tmp_path / "run"
    # One run exports in the default float32, the other in bfloat16.
    precision = "float32" if release == "lesa" else "bfloat16"
    out = run("train.py", data_flags + [
        f"--model_dir={model_dir}", "--epochs=4", "--batch_size=32",
        "--hidden_dim=16", "--gpa_heads=2", "--num_prompts=3",
        "--gfp_blocks=1", "--warmup_steps=5", "--verbose=0",
        "--nobaseline",
    ] + ([] if release == "lesa" else ["--export_precision=bfloat16"]))
    assert "Epsilon    ZSL" in out and "Epsilon    GZSL" in out
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["n_labels"] == {"zsl": 6, "gzsl": 30}
    assert metrics["n_images"] == WORLD.num_test
    assert metrics["zsl"]["map"] > 2 * metrics["chance"]["zsl"]["map"]
    assert (model_dir / "export" / "1" / "saved_model.pb").exists()
    info = model_dir / "export" / "1" / "assets" / "export_info.json"
    assert json.loads(info.read_text())["precision"] == precision
    # eval.py on the same test files reproduces train.py's numbers.
    out = run("eval.py", data_flags + [
        f"--model_dir={model_dir}", f"--metrics_out={tmp_path / 'm.json'}",
        "--noprogress",
    ])
    again = json.loads((tmp_path / "m.json").read_text())
    for block in ("zsl", "gzsl"):
        for key, value in metrics[block].items():
            assert again[block][key] == pytest.approx(value, abs=1e-6), key


def test_converted_lesa_files_read_back_as_native(tmp_path):
    from epsilon_tf.config import DataConfig
    from epsilon_tf.data.sources import make_source
    from epsilon_tf.tools.convert import main as convert_main

    space, tags, _ = write_label_dir(tmp_path / "labels")
    write_lesa(tmp_path / "release", space, tags)
    out = tmp_path / "native"
    for split, name in (("train", "Train"), ("test", "Test")):
        assert convert_main([
            "--format=lesa_nus_wide",
            f"--inputs={tmp_path}/release/NUS_WIDE_{name}_full_feature_"
            "ZLIB.tfrecords",
            f"--split={split}", f"--label_dir={tmp_path / 'labels'}",
            f"--out={out}", "--feature_shape=9x16",
        ]) == 0
    lesa = make_source(DataConfig(
        dataset="nus_wide", data_format="lesa", feature_shape=(9, 16),
        label_dir=str(tmp_path / "labels"),
        train_files=f"{tmp_path}/release/NUS_WIDE_Train_*.tfrecords",
        test_files=f"{tmp_path}/release/NUS_WIDE_Test_*.tfrecords",
    ))
    native = make_source(DataConfig(
        dataset="nus_wide", data_format="native", data_dir=str(out),
    ))
    assert native.label_space.names == lesa.label_space.names
    assert native.eval_ks == (3, 5)
    for split in ("train", "test"):
        a = list(lesa.split(split).dataset())
        b = list(native.split(split).dataset())
        assert len(a) == len(b) == WORLD.num_examples(split)
        for x, y in zip(a, b):
            assert x["image_id"].numpy() == y["image_id"].numpy()
            np.testing.assert_array_equal(x["labels"], y["labels"])
            # float16 storage: relative error below 2^-11.
            np.testing.assert_allclose(
                x["features"], y["features"], rtol=1e-3, atol=1e-3
            )
