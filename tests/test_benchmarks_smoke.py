"""Every benchmark and research script runs at its smallest size and prints
its figures.

Each test runs one script as `python -m benchmarks.<script>` (or
`research.<script>`) from the repository root, in a fresh process, with
the tiniest settings it has, and checks the lines that carry its figures.
The scripts that need `../shared/data/nus_wide` (the nus_like world) skip
without it; they build a small nus_like world (`--num_train`,
`--num_test`) shared by the module. Slow (a minute or two each on two
cores): `pytest -m slow`.
"""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import shared_data_dir
from tests.helpers.tiny import ROOT, child_env

pytestmark = pytest.mark.slow

_NO_SHARED = shared_data_dir() is None


def _run(script, *args, timeout=600, package="benchmarks"):
    done = subprocess.run(
        [sys.executable, "-m", f"{package}.{script}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env=child_env(),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _json_lines(text):
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


def test_bench_eval():
    out = _run("bench_eval", "--images=300", "--labels=40", "--unseen=8",
               "--repeats=1", "--batch_rows=128")
    assert out.startswith("machine: ")
    assert re.search(r"evaluate_scores: median of 1: [\d.]+ s wall", out)
    assert re.search(r"speed-up: [\d.]+x wall", out)
    assert "max |difference| over all metrics" in out and "(OK)" in out


def test_bench_serving():
    out = _run("bench_serving", "--feature_shape=9x8", "--hidden_dim=16",
               "--num_labels=20", "--num_unseen=5", "--top_k=3",
               "--warmup=1", "--calls=3", "--batch_size=2", "--batches=1",
               "--keras_reference")
    for name in ("float32", "bfloat16", "keras graph"):
        assert re.search(
            rf"\[{name}\] batch 1 latency over 3 calls: p50 [\d.]+ ms", out
        ), out
        assert re.search(rf"\[{name}\] batch 2 throughput: \d+ images/s", out)
    match = re.search(
        r"float32 vs keras graph .*max \|score difference\| ([\d.e+-]+)", out
    )
    assert match and float(match.group(1)) < 1e-4, out


def test_bench_train_step():
    out = _run("bench_train_step", "--batches=2", "--steps=2", "--warmup=1",
               "--max_seconds=5", "--xla=off", "--num_labels=20",
               "--matmul_size=64", "--no_profiler", "--no_diagnosis")
    assert re.search(r"batch +2 xla=off: +[\d.]+ examples/s", out), out
    assert "FLOPs per example" in out


def test_bench_preset_step():
    out = _run("bench_preset_step", "--shapes=49x64,5x8",
               "--variants=shipped,gfp_only,no_label_term", "--steps=1",
               "--rounds=2", "--warmup=1", "--num_labels=20")
    assert out.count("feature shape ") == 2, out
    assert re.search(r"^  shipped +[\d.]+ ms/step", out, re.MULTILINE), out
    assert re.search(r"^  gfp_only +[\d.]+ ms/step +[\d.]+ images/s +"
                     r"[\d.]+x shipped", out, re.MULTILINE), out


def test_bench_experiment_runs(tmp_path):
    from helpers import tiny

    data = tiny.write_native(tmp_path / "data")
    maps = []
    for extra in ((), ("--no_cache",)):
        out = _run("bench_experiment_runs", "--runs=lesa,epsilon_gfp",
                   "--steps_per_epoch=2", f"--output_dir={tmp_path / 'o'}",
                   "--dataset=synthetic", "--data_format=native",
                   f"--data_dir={data}", *extra)
        assert out.startswith("machine: ")
        rows = re.findall(r"^(\w+) +[\d.]+ s \(CPU +[\d.]+ s\)  ZSL mAP "
                          r"(\S+)  GZSL mAP (\S+)$", out, re.MULTILINE)
        assert [r[0] for r in rows] == ["lesa", "epsilon_gfp"], out
        maps.append(rows)
    # The same results from memory as from the files, to the last digit.
    assert maps[0] == maps[1]


def test_bench_input_pipeline():
    out = _run("bench_input_pipeline", "--records=16", "--shards=2",
               "--batches=4", "--passes=1", "--stream_passes=1",
               "--train_steps=2", "--end_to_end_steps=2",
               "--small_buffer=8")
    assert out.startswith("machine: ")
    assert re.search(r"batch +4: +[\d.]+ examples/s", out)
    for name in ("lesa", "native"):
        assert re.search(rf"{name} +batch +4 pass 1: +[\d.]+ examples/s", out)
        assert re.search(rf"{name} *: +[\d.]+ examples/s fed by the pipeline",
                         out)
    assert re.search(r"overall: (PASS|FAIL)", out)


def test_bench_demo():
    out = _run("bench_demo", "--fresh_cache", "--epochs=1",
               "--steps_per_epoch=2")
    assert re.search(r"train.py: [\d.]+ s wall", out)
    assert re.search(r"  training +[\d.]+ s", out)
    assert re.search(r"eval.py --saved_model: [\d.]+ s wall", out)
    assert re.search(r"Epsilon ZSL mAP [\d.]+, ESZSL ZSL mAP [\d.]+", out)


# A small nus_like world and label-held-out task (not the benchmark's).
_WORLD = ("--num_train=120", "--num_test=40")


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    if _NO_SHARED:
        pytest.skip("../shared/data is not present")
    return tmp_path_factory.mktemp("release_shaped")


@pytest.fixture(scope="module")
def tuned(smoke_dir):
    out = _run("tune_release_shaped", "--runs=d128", "--epochs=1",
               "--max_train=100", "--held_out=5", "--min_positives=2",
               "--baseline=0", f"--cache_dir={smoke_dir / 'cache'}",
               f"--work_dir={smoke_dir / 'tune'}", *_WORLD,
               package="research")
    return out, smoke_dir / "tune" / "heldout-100-0"


@pytest.fixture(scope="module")
def diagnosed(tuned, smoke_dir):
    _, task = tuned
    arrays = smoke_dir / "arrays.npz"
    out = _run("diagnose_release_shaped", f"--task_dir={task}",
               f"--arrays={arrays}", "tiny:{'steps':4,'batch':8,'warm':1}",
               package="research")
    return out, task, arrays


def test_bench_release_shaped(smoke_dir):
    out = _run("bench_release_shaped", "--runs=full", "--epochs=1",
               f"--cache_dir={smoke_dir / 'cache'}",
               f"--work_dir={smoke_dir / 'bench'}", *_WORLD)
    for row in ("full", "ESZSL", "chance"):
        assert re.search(rf"^{row} +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+", out,
                         re.MULTILINE), out


def test_tune_release_shaped(tuned):
    out, task = tuned
    assert "held-out task: " in out and "5 held out" in out
    (row,) = [r for r in _json_lines(out) if r.get("run") == "d128"]
    assert 0 <= row["zsl_map"] <= 1 and 0 <= row["gzsl_map"] <= 1
    assert (task / "test.json").exists()


def test_diagnose_release_shaped(diagnosed):
    out, _, arrays = diagnosed
    assert "loaded (100, 196, 512)" in out
    (row,) = _json_lines(out)
    history = row["hist(step,loss,seen_mAP,heldout_zsl_mAP)"]
    assert [h[0] for h in history] == [1, 2, 3, 4]
    assert arrays.exists()


def test_probe_release_shaped(diagnosed, smoke_dir):
    _, task, arrays = diagnosed
    # --pooled left out: the pooled arrays go under --work_dir.
    out = _run("probe_release_shaped", f"--task_dir={task}",
               f"--arrays={arrays}", f"--work_dir={smoke_dir / 'probe'}",
               "std:{'steps':3,'batch':8}", package="research")
    (row,) = _json_lines(out)
    assert row["run"] == "std" and [h[0] for h in row["hist"]] == [1, 2, 3]
    assert (smoke_dir / "probe" / "diag_pooled.npz").exists()


def test_top3_release_shaped(tuned, smoke_dir):
    out = _run("top3_release_shaped", "--runs=d128:1", "--max_train=100",
               "--held_out=5", "--min_positives=2",
               f"--cache_dir={smoke_dir / 'cache'}",
               f"--work_dir={smoke_dir / 'tune'}", *_WORLD,
               package="research")
    rows = [line.split()[0] + " " + line.split()[1]
            for line in out.splitlines() if line.startswith("d128 ")]
    assert rows == ["d128 fused", "d128 GPA", "d128 GFP"], out
    assert re.search(r"^ESZSL +[\d.]+ +[\d.]+", out, re.MULTILINE), out
    assert (smoke_dir / "tune" / "heldout-100-0" / "eszsl_scores.npy").exists()
