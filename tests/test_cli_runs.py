"""train.py and eval.py as a user runs them, on small release-format files.

- no TensorFlow C++ log line on a normal run (LESA files and the built-in
  benchmark's native format), with the environment a user has (no
  TF_CPP_MIN_LOG_LEVEL);
- progress lines when stdout is not a terminal;
- `--skip_corrupt`: one bad record over two epochs is reported once, per
  file, on stdout and in metrics.json;
- rerunning a finished run changes nothing (no new export version);
  resuming with other files is refused naming the difference;
- `eval.py --model_dir=RUN` evaluates on the run's own data, and
  `--saved_model` with data of the wrong shape is one clear error.

The commands run concurrently (two at a time) in module fixtures.
"""

import concurrent.futures
import json
import re
import shutil
import subprocess
import sys

import pytest
from helpers import release, tiny

ROOT = tiny.ROOT
PYTHON = sys.executable
# What TensorFlow's C++ side prints: glog-style lines from a C++ source
# file, the banner absl prints before it is initialized, and the known
# offenders by name. (Python warnings through absl look glog-like too, but
# name a .py file.)
CPP_LOG = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.]+\.(cc|h|cpp):\d+\]"
    r"|All log messages before absl::"
    r"|NodeDef mentions attribute|cuInit|oneDNN custom operations|DT_HALF"
)


def _run(argv):
    env = tiny.child_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it
    env.pop("EPSILON_TF_LOGS", None)
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def _run_all(commands):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {k: pool.submit(_run, argv) for k, argv in commands.items()}
        return {k: f.result() for k, f in futures.items()}


def _train(paths, model_dir, *extra, **files):
    return [PYTHON, str(ROOT / "train.py"), *release.MODEL_FLAGS,
            *release.lesa_flags(paths, **files), f"--model_dir={model_dir}",
            *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """First round: three trainings; then what uses their output."""
    tmp = tmp_path_factory.mktemp("cli")
    paths = release.lesa_release(tmp / "release")
    values = release.lesa_values("train", paths["space"], paths["tags"])
    values[5] = dict(values[5], feature=values[5]["feature"][:40])
    one_bad = release.write_records(
        tmp / "release" / "one_bad_ZLIB.tfrecords", values
    )
    native = tiny.write_native(tmp / "native")
    lesa_run, skip_run = tmp / "lesa_run", tmp / "skip_run"
    first = _run_all({
        "lesa": _train(paths, lesa_run),
        "skip": _train(paths, skip_run, "--skip_corrupt", "--epochs=2",
                       "--noexport", train=one_bad),
        "native": tiny.train_command(
            native, tmp / "native_run", "--epochs=1",
            "--progress_every_seconds=0.01", "--noexport",
        ),
        # The built-in benchmark itself (written to a fresh cache), briefly.
        "builtin": [
            PYTHON, str(ROOT / "train.py"), "--dataset=synthetic",
            f"--cache_dir={tmp / 'cache'}", f"--model_dir={tmp / 'builtin'}",
            "--epochs=1", "--steps_per_epoch=3", "--hidden_dim=16",
            "--gpa_heads=2", "--nobaseline", "--noexport",
            "--summary_images=0", "--pr_curve_labels=0",
        ],
    })
    other_test = tmp / "release" / "copy_of_test_ZLIB.tfrecords"
    shutil.copy(paths["test"], other_test)
    # The two train.py on lesa_run one after the other: at the same time,
    # the second would be refused (one process per run directory).
    second = _run_all({
        "rerun": _train(paths, lesa_run),
        "eval": [PYTHON, str(ROOT / "eval.py"), f"--model_dir={lesa_run}",
                 f"--metrics_out={tmp / 'eval.json'}", "--noprogress"],
    })
    third = _run_all({
        "other_files": _train(paths, lesa_run, test=other_test),
        "eval_wrong_shape": [
            PYTHON, str(ROOT / "eval.py"),
            f"--saved_model={lesa_run / 'export' / '1'}",
            "--dataset=synthetic", "--data_format=native",
            f"--data_dir={native}", "--noprogress",
        ],
    })
    return {"tmp": tmp, "paths": paths, "lesa_run": lesa_run,
            "skip_run": skip_run, "other_test": other_test,
            **first, **second, **third}


def _ok(result):
    code, out, err = result
    assert code == 0, (out + err)[-4000:]
    return out, err


@pytest.mark.parametrize(
    "name", ["lesa", "builtin", "native", "skip", "rerun", "eval"]
)
def test_no_tensorflow_log_lines(runs, name):
    out, err = _ok(runs[name])
    noise = [line for line in (out + err).splitlines() if CPP_LOG.search(line)]
    assert noise == []
    assert "Traceback" not in out + err


def test_progress_lines_when_stdout_is_not_a_terminal(runs):
    out, _ = _ok(runs["native"])
    steps = tiny.STEPS_PER_EPOCH
    assert f"step {steps}/{steps} (100%)" in out
    assert "examples/s" in out and "ETA" in out
    assert "Unknown" not in out


def test_skip_corrupt_counts_a_bad_record_once(runs):
    out, _ = _ok(runs["skip"])
    bad_file = str(runs["tmp"] / "release" / "one_bad_ZLIB.tfrecords")
    assert "Skipped (--skip_corrupt): 1 bad records, 0 corrupt" in out
    assert f"{bad_file}: 1 bad records (index 5)" in out
    skipped = tiny.metrics(runs["skip_run"])["skipped"]
    assert skipped["total"] == {"bad_records": 1, "corrupt_files": 0}
    assert skipped["files"][bad_file]["records"] == [5]


def test_rerunning_a_finished_run_changes_nothing(runs):
    out, _ = _ok(runs["rerun"])
    run = runs["lesa_run"]
    assert f"{run} is a finished run" in out
    assert "Epsilon    ZSL" in out  # its results, from metrics.json
    versions = sorted(p.name for p in (run / "export").iterdir())
    assert versions == ["1"]


def test_resuming_with_other_test_files_is_refused(runs):
    code, out, err = runs["other_files"]
    assert code == 1 and "Traceback" not in out + err
    assert "holds a run with other settings (test_files: " in err
    assert str(runs["other_test"]) in err


def test_eval_model_dir_uses_the_runs_own_data(runs):
    out, _ = _ok(runs["eval"])
    run = runs["lesa_run"]
    assert f"Evaluating {run} on dataset=nus_wide, format=lesa" in out
    assert f"the run's data (from {run / 'config.json'})" in out
    assert str(runs["paths"]["test"]) in out
    evaluated = json.loads((runs["tmp"] / "eval.json").read_text())
    trained = tiny.metrics(run)
    for block in ("zsl", "gzsl"):
        for key, value in trained[block].items():
            assert evaluated[block][key] == pytest.approx(value, abs=1e-6)


def test_eval_saved_model_on_data_of_the_wrong_shape(runs):
    code, out, err = runs["eval_wrong_shape"]
    assert code == 1 and "Traceback" not in out + err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1
    assert "takes features of shape 9x8" in lines[0]
    assert "the test data has 16x16" in lines[0]
