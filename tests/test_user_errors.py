"""Ordinary user mistakes: one `error:` line, exit status 1, no traceback.

Every case runs the real command line in a subprocess on small files the
test writes (a LESA/BiAM-format NUS-WIDE release of a tiny world, see
`helpers/release.py`). The flag cases fail before TensorFlow is imported;
the data cases each start TensorFlow, so all the commands of the module
run concurrently (two at a time) in one fixture and the parametrized test
only reads their results.
"""

import concurrent.futures
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import release, tiny

ROOT = tiny.ROOT
PYTHON = sys.executable


def _flip_bytes(path, at=0.5, count=8):
    data = bytearray(Path(path).read_bytes())
    start = int(len(data) * at)
    for i in range(start, start + count):
        data[i] ^= 0xFF
    Path(path).write_bytes(bytes(data))


class _Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _cases(tmp):
    """{case id: (argv, [strings the error line must hold], check)}."""
    paths = release.lesa_release(tmp / "release")
    space, tags = paths["space"], paths["tags"]
    train_values = release.lesa_values("train", space, tags)
    base = release.MODEL_FLAGS + ["--noexport"]
    bad = tmp / "bad"
    bad.mkdir()

    def train(name, *extra, **files):
        model_dir = tmp / "runs" / name
        return [PYTHON, str(ROOT / "train.py"), *base,
                *release.lesa_flags(paths, **files),
                f"--model_dir={model_dir}", *extra]

    def records(name, values, **kwargs):
        return str(release.write_records(bad / name, values, **kwargs))

    cases = {}
    # -- flags: checked before anything is read, written or imported.
    for flag, value, expect in (
        ("batch_size", "0", "--batch_size must be a positive integer"),
        ("epochs", "-1", "--epochs must be a positive integer"),
        ("learning_rate", "0", "--learning_rate must be a positive number"),
        ("validation_fraction", "1.5", "--validation_fraction must be"),
        ("dropout", "1", "--dropout must be a number in [0, 1)"),
        ("feature_shape", "9by8", "--feature_shape must be REGIONSxCHANNELS"),
        ("k", "0", "--k must be comma-separated positive integers"),
        ("select_metric", "f1@7", "--select_metric must be one of"),
        ("batch_size", "many", "--batch_size"),
        ("keep_checkpoints", "0", "--keep_checkpoints must be"),
    ):
        cases[f"flag-{flag}-{value}"] = (
            train(f"flag_{flag}", f"--{flag}={value}"),
            [expect, value], "nothing_written",
        )
    cases["flag-heads-divide-width"] = (
        train("heads", "--hidden_dim=10", "--gpa_heads=3"),
        ["--hidden_dim (10) must be divisible by --gpa_heads (3)"],
        "nothing_written",
    )
    a_file = tmp / "a_file"
    a_file.write_text("not a directory")
    cases["model_dir-is-a-file"] = (
        train("x", f"--model_dir={a_file}"),
        [f"--model_dir={a_file} is a file"], None,
    )
    cases["model_dir-cannot-be-written"] = (
        train("x", f"--model_dir={a_file}/run"),
        [f"--model_dir={a_file}/run cannot be created", str(a_file)], None,
    )
    cases["train_files-glob-matches-nothing"] = (
        train("glob", train=str(tmp / "nowhere" / "*.tfrecords")),
        ["--train_files", "matches no file"], "nothing_written",
    )
    cases["train_files-is-a-directory"] = (
        train("dir", train=str(tmp / "release" / "lesa")),
        ["--train_files", "is a directory"], "nothing_written",
    )
    cases["word_vectors-is-a-directory"] = (
        train("wvdir", f"--word_vectors={tmp}"),
        ["--word_vectors", "is a directory"], "nothing_written",
    )
    cases["flag-label_weight-needs-hinge"] = (
        train("label_weight", "--label_weight=1", "--loss=smooth"),
        ["--label_weight is a hinge term", "--loss=smooth"],
        "nothing_written",
    )
    cases["unexpected-argument"] = (
        train("pos", "stray"), ["Unexpected arguments: stray"], None,
    )
    # -- record files.
    truncated = Path(records("truncated_ZLIB.tfrecords", train_values))
    # Cut early: the records before the cut do not fill one batch, so the
    # check before training reaches the cut.
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size
                                                 // 20])
    cases["truncated-zlib-file"] = (
        train("truncated", train=truncated),
        ["Corrupt or truncated record file", str(truncated), "record index"],
        None,
    )
    flipped = Path(records("flipped.tfrecords", train_values,
                           compression=None))
    _flip_bytes(flipped, at=0.05)
    cases["flipped-bytes"] = (
        train("flipped", train=flipped),
        ["Corrupt or truncated record file", str(flipped), "record index"],
        None,
    )
    short = [dict(v) for v in train_values]
    short[3]["feature"] = short[3]["feature"][:100]
    cases["feature-wrong-byte-length"] = (
        train("short", train=records("short_feature.tfrecords", short)),
        ["(record index 3)", "key `feature` has 100 bytes",
         "expected 288 bytes"], None,
    )
    cases["missing-key"] = (
        train("missing", train=records(
            "missing_key.tfrecords", train_values, drop={2: ["label_1k"]})),
        ["(record index 2)", "key `label_1k` is missing"], None,
    )
    wrong_len = [dict(v) for v in train_values]
    wrong_len[4]["label_1k"] = np.ones(5, np.float32).tobytes()
    cases["label-wrong-length"] = (
        train("labellen", train=records("label_len.tfrecords", wrong_len)),
        ["(record index 4)", "key `label_1k` has 20 bytes"], None,
    )
    wrong_value = [dict(v) for v in train_values]
    labels = np.frombuffer(wrong_value[1]["label_1k"], np.float32).copy()
    labels[0] = 2.0
    wrong_value[1]["label_1k"] = labels.tobytes()
    cases["label-value-outside-range"] = (
        train("labelval", train=records("label_val.tfrecords", wrong_value)),
        ["(record index 1)", "holds 2", "labels must be -1, 0 or +1"], None,
    )
    empty = bad / "empty.tfrecords"
    empty.write_bytes(b"")
    cases["empty-file"] = (
        train("empty", train=empty), [str(empty), "is empty (0 bytes)"],
        "nothing_written",
    )
    cases["zero-records"] = (
        train("zero", train=records("zero_ZLIB.tfrecords", [])),
        ["holds no records"], "nothing_written",
    )
    cases["missing-image-ids"] = (
        train("noids", train=records(
            "no_ids.tfrecords", train_values,
            drop={i: ["img_id"] for i in range(len(train_values))})),
        ["(record index 0)", "key `img_id` is missing"], None,
    )
    same_ids = [dict(v, img_id=b"same") for v in train_values]
    cases["identical-image-ids"] = (
        train("sameids", train=records("same_ids.tfrecords", same_ids)),
        ["image id"], None,
    )
    # -- pickles.
    hostile = bad / "hostile.pkl"
    hostile.write_bytes(pickle.dumps([_Hostile()]))
    cases["hostile-word-vector-pickle"] = (
        train("hostile", f"--word_vectors={hostile}"),
        [str(hostile), "posix.system"], None,
    )
    junk = bad / "junk.pkl"
    junk.write_bytes(b"\x80\x04not really a pickle")
    cases["malformed-word-vector-pickle"] = (
        train("junk", f"--word_vectors={junk}"),
        [f"Could not unpickle {junk}"], None,
    )
    # -- BiAM HDF5 missing a dataset.
    h5, names = release.write_biam(tmp / "biam", space, "train",
                                   drop_key=(2, "-labels"))
    test_h5, _ = release.write_biam(tmp / "biam", space, "test")
    cases["biam-missing-dataset"] = (
        [PYTHON, str(ROOT / "train.py"), *base, "--dataset=nus_wide",
         "--data_format=biam", f"--label_dir={paths['labels']}",
         f"--feature_shape={release.FEATURE_SHAPE}", f"--train_files={h5}",
         f"--test_files={test_h5}",
         f"--names_file={tmp / 'biam'}/{{split}}_img_names.pkl",
         f"--model_dir={tmp / 'runs' / 'biam'}"],
        [f"Bad record in {h5} (record index 2)", "-labels' ", "missing"],
        None,
    )
    # -- the other entry points.
    npy = bad / "scores.npy"
    np.save(npy, np.zeros((2, 3)))
    txt = bad / "scores.txt"
    txt.write_text("0.1 0.2\n")
    for name, path, expect in (
        ("npy", npy, "is a single .npy array, not an .npz archive"),
        ("text", txt, "is not an .npz archive"),
    ):
        cases[f"eval-predictions-{name}"] = (
            [PYTHON, str(ROOT / "eval.py"), f"--predictions={path}"],
            [str(path), expect], "no_allow_pickle",
        )
    cases["eval-no-mode"] = (
        [PYTHON, str(ROOT / "eval.py")], ["Give exactly one of"], None,
    )
    cases["eval-batch_size"] = (
        [PYTHON, str(ROOT / "eval.py"), f"--model_dir={tmp}",
         "--batch_size=0"], ["--batch_size must be a positive integer"], None,
    )
    cases["eval-model_dir-not-a-run"] = (
        [PYTHON, str(ROOT / "eval.py"), f"--model_dir={bad}",
         *release.lesa_flags(paths)],
        [f"No trained model at {bad}"], None,
    )
    cases["export-not-a-training-dir"] = (
        [PYTHON, "-m", "epsilon_tf.export", f"--model_dir={bad}"],
        [str(bad)], None,
    )
    cases["export-top_k"] = (
        [PYTHON, "-m", "epsilon_tf.export", f"--model_dir={bad}",
         "--top_k=0"], ["--top_k must be a positive integer"], None,
    )
    experiments = [PYTHON, "-m", "epsilon_tf.experiments"]
    cases["experiments-no-output_dir"] = (
        experiments, ["--output_dir is required"], "quiet",
    )
    cases["experiments-seeds"] = (
        experiments + [f"--output_dir={tmp / 'exp'}", "--seeds=0,x"],
        ["--seeds must be comma-separated numbers"], "quiet",
    )
    cases["experiments-jobs"] = (
        experiments + [f"--output_dir={tmp / 'exp'}", "--jobs=-1"],
        ["--jobs must be 0 (one per core) or a positive integer",
         "Received: -1"], "quiet",
    )
    cases["convert-truncated-input"] = (
        [PYTHON, "-m", "epsilon_tf.tools.convert", "--format=lesa_nus_wide",
         f"--inputs={truncated}", "--split=train",
         f"--label_dir={paths['labels']}", f"--out={tmp / 'converted'}",
         f"--feature_shape={release.FEATURE_SHAPE}"],
        ["Corrupt or truncated record file", str(truncated)], None,
    )
    cases["extract-features-missing-image"] = (
        [PYTHON, "-m", "epsilon_tf.tools.extract_features",
         f"--images_dir={bad}", f"--labels={_labels_csv(bad)}",
         f"--label_space_dir={_label_space(tmp, space)}",
         f"--output_dir={tmp / 'features'}", "--weights=none"],
        ["image 'absent.jpg' not found"], None,
    )
    return cases


def _labels_csv(directory):
    path = directory / "labels.csv"
    path.write_text("image,labels\nabsent.jpg,x\n")
    return path


def _label_space(tmp, space):
    directory = tmp / "space"
    space.save(str(directory))
    return directory


def _run(argv):
    env = tiny.child_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mistakes")
    cases = _cases(tmp)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {k: pool.submit(_run, argv) for k, (argv, _, _) in
                   cases.items()}
        return {
            k: (cases[k], futures[k].result()) for k in cases
        }


CASE_IDS = [
    "flag-batch_size-0", "flag-epochs--1", "flag-learning_rate-0",
    "flag-validation_fraction-1.5", "flag-dropout-1",
    "flag-feature_shape-9by8", "flag-k-0", "flag-select_metric-f1@7",
    "flag-batch_size-many", "flag-keep_checkpoints-0",
    "flag-heads-divide-width", "model_dir-is-a-file",
    "model_dir-cannot-be-written", "train_files-glob-matches-nothing",
    "train_files-is-a-directory", "word_vectors-is-a-directory",
    "unexpected-argument", "flag-label_weight-needs-hinge",
    "truncated-zlib-file", "flipped-bytes",
    "feature-wrong-byte-length", "missing-key", "label-wrong-length",
    "label-value-outside-range", "empty-file", "zero-records",
    "missing-image-ids", "identical-image-ids",
    "hostile-word-vector-pickle", "malformed-word-vector-pickle",
    "biam-missing-dataset", "eval-predictions-npy", "eval-predictions-text",
    "eval-no-mode", "eval-batch_size", "eval-model_dir-not-a-run",
    "export-not-a-training-dir", "export-top_k", "convert-truncated-input",
    "extract-features-missing-image", "experiments-no-output_dir",
    "experiments-seeds", "experiments-jobs",
]


@pytest.mark.parametrize("case", CASE_IDS)
def test_one_error_line_exit_1_no_traceback(results, case):
    (argv, expected, check), (code, out, err) = results[case]
    text = out + err
    assert code == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err[-3000:]
    for part in expected:
        assert part in lines[0], (part, lines[0])
    if check == "nothing_written":
        # Stopped before any side effect: no run directory, no epoch.
        model_dir = next(a.split("=", 1)[1] for a in argv
                         if a.startswith("--model_dir="))
        assert not Path(model_dir).exists()
        assert "Epoch" not in text
    if check == "quiet":
        # A flag mistake stops before TensorFlow prints its start-up lines.
        assert err.strip() == lines[0], err[-3000:]
    if check == "no_allow_pickle":
        assert "allow_pickle" not in text


def test_every_case_is_listed(results):
    assert sorted(results) == sorted(CASE_IDS)
