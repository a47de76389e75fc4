"""README's "Your own images", command for command, on generated photos.

The commands are read from README.md (the first bash block of the
section) and run as written, with the size flags the README documents for
a quick try appended (`--weights=none --image_size=32`, `--epochs=1
--batch_size=4`): label space from a names file and a small GloVe-format
text file, features, training, export, and tags for new photos with a
vocabulary holding two labels never trained on.
"""

import csv
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import tiny

TAGS = ["cat", "dog", "sky", "tree", "golden retriever", "beach", "car",
        "zebra", "street_art"]
NEW_TAGS = ["dog", "sky", "zebra", "boat", "yellow taxi"]  # boat, taxi: new
WORDS = ["cat", "dog", "sky", "tree", "golden", "retriever", "beach", "car",
         "zebra", "street", "art", "boat", "yellow", "taxi", "the"]
QUICK = {
    "make_label_space": [],
    "extract_features": ["--weights=none", "--image_size=32"],
    "train.py": ["--epochs=1", "--batch_size=4"],
    "tag": ["--weights=none", "--image_size=32"],
}


def readme_commands():
    text = (tiny.ROOT / "README.md").read_text()
    section = text.split("## Your own images", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(c) for c in block.replace("\\\n", " ").splitlines()
            if c.strip()]


def _write_inputs(root):
    rng = np.random.default_rng(0)
    with open(root / "glove.6B.300d.txt", "w") as f:
        for w in WORDS:
            f.write(w + " " + " ".join(f"{v:.5f}" for v in rng.normal(size=20))
                    + "\n")
    (root / "tags.txt").write_text("\n".join(TAGS) + "\n")
    (root / "new_tags.txt").write_text("\n".join(NEW_TAGS) + "\n")
    for folder, count in (("photos", 30), ("new_photos", 3)):
        (root / folder).mkdir()
        for i in range(count):
            pixels = rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / f"p{i}.jpg")
    rows = [f"p{i}.jpg," + ";".join(rng.choice(TAGS, 3, replace=False))
            for i in range(30)]
    (root / "train.csv").write_text("image,labels\n" + "\n".join(rows[:22]))
    (root / "test.csv").write_text("image,labels\n" + "\n".join(rows[22:]))


@pytest.mark.slow
def test_readme_walkthrough(tmp_path):
    _write_inputs(tmp_path)
    commands = readme_commands()
    assert [c[0] for c in commands] == ["python"] * 5
    outputs = []
    for command in commands:
        program = command[2] if command[1] == "-m" else command[1]
        key = next(k for k in QUICK if program.endswith(k))
        if program == "train.py":
            command = [command[0], str(tiny.ROOT / "train.py"), *command[2:]]
        argv = [sys.executable, *command[1:], *QUICK[key]]
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True,
                                text=True, env=tiny.child_env(), timeout=600)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        outputs.append(result.stdout)
    assert "exported SavedModel: runs/mine/export/1" in outputs[3]
    with open(tmp_path / "tags.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["image"] for r in rows}) == ["p0.jpg", "p1.jpg",
                                                  "p2.jpg"]
    assert len(rows) == 15  # top 5 of the 5 new tags, per photo
    marks = {r["label"]: r["unseen"] for r in rows}
    # zebra was held out of training; boat and yellow taxi never existed.
    assert marks == {"dog": "0", "sky": "0", "zebra": "1", "boat": "1",
                     "yellow taxi": "1"}


def test_float16_bits_exact_for_every_pattern():
    import tensorflow as tf

    from epsilon_tf.data.records.half_bits import float16_bits_to_float32

    bits = np.arange(65536, dtype=np.uint16)
    got = float16_bits_to_float32(tf.constant(bits)).numpy()
    want = bits.view(np.float16).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_array_equal(got[finite], want[finite])
    # Signed zeros keep their sign.
    assert np.signbit(got[0x8000]) and not np.signbit(got[0])


@pytest.mark.parametrize("level, integer_ops", [("2", True), ("3", False)])
def test_half_decoding_path_by_log_level(monkeypatch, level, integer_ops):
    """Integer ops (no DT_HALF op, no oneDNN line) only where TensorFlow's
    C++ errors can show; the faster native cast otherwise; the same
    values either way."""
    import tensorflow as tf

    from epsilon_tf.data.records import stream

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    bits = np.arange(65536, dtype=np.uint16)

    @tf.function
    def decode(x):
        return stream.half_to_float32(x)

    graph = decode.get_concrete_function(tf.constant(bits)).graph
    halves = [op for op in graph.get_operations()
              if any(t.dtype == tf.float16 for t in op.outputs)]
    assert (not halves) == integer_ops
    got = decode(tf.constant(bits)).numpy()
    want = bits.view(np.float16).astype(np.float32)
    finite = ~np.isnan(want)
    np.testing.assert_array_equal(got[finite], want[finite])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_word_vectors_flag_refused_where_unused(tmp_path):
    from epsilon_tf.cli.own_data import check_word_vectors_flag
    from epsilon_tf.config import DataConfig
    from epsilon_tf.errors import CommandLineError

    native = DataConfig(data_format="native", data_dir=str(tmp_path),
                        word_vectors="other.pkl")
    with pytest.raises(CommandLineError, match=(
            r"^--word_vectors=other.pkl is not used for this data: its word "
            r"vectors are the label space of .*label_space.json\)")):
        check_word_vectors_flag(native, {"word_vectors"})
    check_word_vectors_flag(native, set())  # from the run's config: fine
    with pytest.raises(CommandLineError, match="built-in --dataset=synthetic"):
        check_word_vectors_flag(DataConfig(word_vectors="v.pkl"),
                                {"word_vectors"})
    check_word_vectors_flag(
        DataConfig(dataset="nus_wide", data_format="lesa",
                   word_vectors="v.pkl"), {"word_vectors"})


def test_eval_on_float16_own_data_header_and_no_cpp_lines(tmp_path):
    """Issue 23: eval.py's header said `dataset=synthetic ... features
    196x512` for 4x8 own data, and float16 features printed a TensorFlow
    C++ line (`E0000 ... util.cc:131] oneDNN supports DT_HALF only ...`).
    The C++ line appears where oneDNN has no AVX-512 FP16, which
    ONEDNN_MAX_CPU_ISA=AVX2 makes true on any CPU; TF_CPP_MIN_LOG_LEVEL=2
    lets error lines through."""
    import keras

    from epsilon_tf.config import ModelConfig
    from epsilon_tf.data.readers.native_writer import write_native_split
    from epsilon_tf.labels import LabelSpace
    from epsilon_tf.models import build_epsilon

    rng = np.random.default_rng(0)
    space = LabelSpace.from_arrays([f"t{i}" for i in range(8)],
                                   rng.normal(size=(8, 6)), seen=range(6))
    data = tmp_path / "feats"
    space.save(data)
    write_native_split(
        str(data), "test",
        [(f"i{i}", rng.random((4, 8)).astype(np.float32),
          np.where(rng.random(8) < 0.4, 1, -1).astype(np.int8))
         for i in range(6)],
        (4, 8), label_names=list(space.names), feature_dtype="float16",
        label_set="all",
    )
    keras.utils.set_random_seed(0)
    model = build_epsilon(ModelConfig(feature_shape=(4, 8), hidden_dim=8,
                                      gpa_heads=2, num_prompts=2,
                                      gfp_blocks=1), space.subset("seen"))
    (tmp_path / "run").mkdir()
    model.save(tmp_path / "run" / "model.keras")
    result = subprocess.run(
        [sys.executable, str(tiny.ROOT / "eval.py"),
         f"--model_dir={tmp_path / 'run'}", "--data_format=native",
         f"--data_dir={data}", "--k=1,2", "--noprogress"],
        capture_output=True, text=True, timeout=300, cwd=tiny.ROOT,
        env=tiny.child_env(TF_CPP_MIN_LOG_LEVEL="2",
                           ONEDNN_MAX_CPU_ISA="AVX2"),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    cpp = [line for line in output.splitlines()
           if re.match(r"^[IWEF]\d{4} ", line)]
    assert cpp == []
    header = result.stdout.splitlines()[0]
    assert header.startswith(
        f"Evaluating {tmp_path / 'run'} on native data in {data} (test "
        "split: 6 images, 4x8 float16 features, 8 all labels)")
    assert "196x512" not in header and "dataset=" not in header
