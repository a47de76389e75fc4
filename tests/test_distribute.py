"""tf.distribute: the same training on 2 replicas or 2 workers as on 1.

Dropout is off in these runs: a replica draws its dropout masks for its
own half of the batch, so masks (not the examples) differ from a
single-device run.

Tolerances (measured on CPU, stated in docs/training.md): test metrics
within 1e-3 absolute of the single-device run (measured: identical), every
checkpointed tensor within 1e-4 absolute (measured: at most 6e-6; the
gradient of the global batch is summed in a different order).
"""

import json
import signal
import time

import numpy as np
import pytest
from helpers import tiny

METRIC_ATOL = 1e-3
WEIGHT_ATOL = 1e-4


@pytest.fixture(scope="module")
def native_world(tmp_path_factory):
    return tiny.write_native(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def reference(native_world, tmp_path_factory):
    """The single-device run (started in the background, awaited later)."""
    model_dir = tmp_path_factory.mktemp("single")
    proc = tiny.start(
        tiny.train_command(native_world, model_dir, *tiny.NO_DROPOUT),
        model_dir / "run.log",
    )
    state = {}

    def result():
        if "dir" not in state:
            code, log = tiny.finish(proc)
            assert code == 0, log[-3000:]
            state["dir"] = model_dir
        return state["dir"]

    return result


def _assert_same_run(reference_dir, other_dir):
    a, b = tiny.metrics(reference_dir), tiny.metrics(other_dir)
    for setting in ("zsl", "gzsl"):
        for name, value in a[setting].items():
            close = pytest.approx(value, abs=METRIC_ATOL)
            assert b[setting][name] == close, (setting, name)
    assert a["training"]["best_epoch"] == b["training"]["best_epoch"]
    ta, tb = (
        tiny.checkpoint_tensors(tiny.latest_checkpoint(d / "checkpoints"))
        for d in (reference_dir, other_dir)
    )
    worst = 0.0
    for name, value in ta.items():
        value = np.asarray(value)
        if name.startswith("save_counter") or value.dtype.kind not in "fiu":
            continue
        diff = np.abs(np.asarray(value, np.float64) - tb[name]).max(
            initial=0.0
        )
        worst = max(worst, float(diff))
    assert worst <= WEIGHT_ATOL, worst
    return worst


def test_mirrored_on_two_logical_cpus_matches_one_device(
    native_world, reference, tmp_path
):
    model_dir = tmp_path / "mirrored"
    code, log = tiny.run(
        tiny.train_command(
            native_world, model_dir, *tiny.NO_DROPOUT,
            "--strategy=mirrored", "--cpu_replicas=2",
        ),
        tmp_path / "mirrored.log",
    )
    assert code == 0, log[-3000:]
    assert "device:CPU:1" in log  # really two replicas
    _assert_same_run(reference(), model_dir)


def _tf_config(ports, index):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}
    )


def _start_workers(command, tmp_path, tag):
    ports = tiny.free_ports(2)
    return [
        tiny.start(
            command, tmp_path / f"{tag}{i}.log",
            TF_CONFIG=_tf_config(ports, i),
        )
        for i in (1, 0)
    ]


@pytest.mark.slow
def test_multi_worker_resumes_after_both_workers_are_killed(
    native_world, reference, tmp_path
):
    model_dir = tmp_path / "multi"
    command = tiny.train_command(
        native_world, model_dir, *tiny.NO_DROPOUT,
        "--strategy=multi_worker", "--input_sharding=batches",
        "--checkpoint_every_steps=4",
    )
    workers = _start_workers(command, tmp_path, "first")
    state = model_dir / "checkpoints" / "checkpoint"
    deadline = time.time() + 400
    while time.time() < deadline:
        if state.exists() and '"ckpt-16"' in state.read_text():
            break
        assert all(w.poll() is None for w in workers)
        time.sleep(0.05)
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
    for worker in workers:
        tiny.finish(worker)
    assert not (model_dir / "metrics.json").exists()

    results = [
        tiny.finish(w, timeout=500)
        for w in _start_workers(command, tmp_path, "again")
    ]
    for code, log in results:
        assert code == 0, log[-3000:]
    assert "Resuming from" in results[1][1]  # the chief's log
    _assert_same_run(reference(), model_dir)
    assert not list(model_dir.glob("worker_tmp*"))


@pytest.mark.slow
def test_two_multi_worker_processes_match_one_device(
    native_world, reference, tmp_path
):
    model_dir = tmp_path / "multi"
    command = tiny.train_command(
        native_world, model_dir, *tiny.NO_DROPOUT,
        "--strategy=multi_worker", "--input_sharding=batches",
    )
    workers = _start_workers(command, tmp_path, "worker")
    results = [tiny.finish(w, timeout=500) for w in workers]
    for code, log in results:
        assert code == 0, log[-3000:]
    chief_log = results[1][1]
    assert "strategy=multi_worker (" in chief_log
    assert "): 2 replicas" in chief_log
    _assert_same_run(reference(), model_dir)
    # Only the chief writes summaries and results; the other worker's
    # scratch checkpoints are gone.
    assert not list(model_dir.glob("worker_tmp*"))
    for run in ("train", "validation", "test"):
        assert len(list((model_dir / run).glob("events.out.*"))) == 1, run
