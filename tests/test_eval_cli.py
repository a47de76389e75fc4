"""eval.py on a saved score matrix: the JSON contract and input errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from epsilon_tf.cli.evaluate import load_predictions, run_evaluation
from tests.conftest import ROOT


def matrix(seed=0, n=60, k=12):
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1, 0, 1], size=(n, k), p=[0.75, 0.1, 0.15])
    scores = rng.normal(size=(n, k)) + labels
    unseen = np.zeros(k, bool)
    unseen[-6:] = True
    return scores.astype(np.float32), labels.astype(np.int8), unseen


def sklearn_map(scores, labels):
    aps = []
    for j in range(scores.shape[1]):
        keep = labels[:, j] != 0
        y = labels[keep, j] == 1
        aps.append(
            average_precision_score(y, scores[keep, j]) if y.any() else 0.0
        )
    return float(np.mean(aps))


def test_predictions_json_has_the_documented_shape(tmp_path):
    scores, labels, unseen = matrix()
    path = tmp_path / "p.npz"
    np.savez(path, scores=scores, labels=labels, unseen_mask=unseen)
    out = tmp_path / "m.json"
    run_evaluation("predictions", str(path), ks=(3, 5),
                   metrics_out=str(out))
    result = json.loads(out.read_text())
    keys = {"map", "p@3", "r@3", "f1@3", "p@5", "r@5", "f1@5"}
    assert keys <= set(result["zsl"]) and keys <= set(result["gzsl"])
    assert result["n_images"] == 60
    assert result["n_labels"] == {"zsl": 6, "gzsl": 12}
    assert result["variant"] == "lesa"
    assert result["zsl"]["map"] == pytest.approx(
        sklearn_map(scores[:, unseen], labels[:, unseen]), abs=1e-9
    )
    assert result["gzsl"]["map"] == pytest.approx(
        sklearn_map(scores, labels), abs=1e-9
    )
    # ZSL P@3 by hand: top-3 among the unseen columns only.
    top = np.argsort(-scores[:, unseen], axis=1, kind="stable")[:, :3]
    tp = (np.take_along_axis(labels[:, unseen], top, 1) == 1).sum()
    assert result["zsl"]["p@3"] == pytest.approx(tp / (60 * 3))
    for block in ("zsl", "gzsl"):
        assert all(0.0 <= result[block][k] <= 1.0 for k in keys)


def test_without_unseen_mask_one_all_block(tmp_path):
    scores, labels, _ = matrix(1)
    path = tmp_path / "p.npz"
    np.savez(path, scores=scores, labels=labels)
    result = run_evaluation("predictions", str(path), ks=(1, 3))
    assert set(result) >= {"all", "n_images", "n_labels"}
    assert "zsl" not in result and result["n_labels"] == {"all": 12}
    assert {"p@1", "f1@3"} <= set(result["all"])


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"labels": np.ones((2, 3))}, r"missing array\(s\) \['scores'\]"),
        ({"scores": np.ones((2, 3))}, r"missing array\(s\) \['labels'\]"),
        ({"scores": np.ones((2, 3)), "labels": np.ones((2, 4))},
         r"`labels` must have the shape of `scores` \(2, 3\)"),
        ({"scores": np.ones(3), "labels": np.ones(3)},
         r"`scores` must be 2-D"),
        ({"scores": np.ones((2, 3)), "labels": np.ones((2, 3)),
          "unseen_mask": np.ones(2, bool)},
         r"`unseen_mask` must have one entry per label \(3\)"),
    ],
)
def test_bad_predictions_name_the_file(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as info:
        load_predictions(str(path))
    assert str(path) in str(info.value)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_predictions(str(tmp_path / "absent.npz"))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz is not an .npz archive"):
        load_predictions(str(junk))
    pickled = tmp_path / "obj.npz"
    np.savez(pickled, scores=np.array([{"a": 1}], dtype=object),
             labels=np.ones(1))
    with pytest.raises(ValueError, match="plain arrays"):
        load_predictions(str(pickled))


def test_eval_cli_writes_json_and_reports_errors_cleanly(tmp_path):
    scores, labels, unseen = matrix(2)
    good = tmp_path / "p.npz"
    np.savez(good, scores=scores, labels=labels, unseen_mask=unseen)
    out = tmp_path / "m.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), f"--predictions={good}",
         "--k=3,5", f"--metrics_out={out}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ZSL" in proc.stdout and "GZSL" in proc.stdout
    assert json.loads(out.read_text())["n_labels"]["zsl"] == 6
    bad = tmp_path / "bad.npz"
    np.savez(bad, scores=scores)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), f"--predictions={bad}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 1
    assert f"eval.py: error: {bad}: missing array(s) ['labels']" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_the_built_in_world_is_described_with_its_own_shape():
    # The built-in world's 7x7x64 regions, not the unused --feature_shape
    # default (196x512) that eval.py once printed for it.
    from epsilon_tf.cli.evaluate import describe_data
    from epsilon_tf.config import DataConfig

    line = describe_data(DataConfig(dataset="synthetic", cache_dir="c"))
    assert line == ("dataset=synthetic, built-in benchmark (cache c), "
                    "features 49x64")
