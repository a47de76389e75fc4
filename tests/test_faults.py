"""Fault injection, the fast half (the slow half: test_faults_slow.py).

What a long run meets in real life, injected for real where it can be:

- a full disk: a small tmpfs mounted by the test (root only; skipped
  with the reason where mounting is refused), filled for real, so the
  writes meet ENOSPC from the kernel, not a patched `open`;
- a second process on a run directory: the OS lock held by this test
  process (or by a child it kills with SIGKILL);
- every input kind corrupted (label files, word vectors, LESA / native /
  BiAM records, `--predictions`): the error must name the file at fault.

Each case checks one `error:` line (or one exception message) naming
the right file or directory, no traceback, and that nothing written
before was lost. docs/faults.md lists the whole matrix.
"""

import errno
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import faults, release, tiny
from helpers.fault_train import fill

from epsilon_tf import storage
from epsilon_tf.cli import common
from epsilon_tf.errors import DiskFullError, RunDirectoryInUseError
from epsilon_tf.training import run_lock

ROOT = tiny.ROOT
PYTHON = sys.executable


def _run(argv, timeout=300):
    env = tiny.child_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def _one_error_line(code, out, err):
    """The single `error:` line of a failed command (asserts the rest)."""
    return faults.one_error_line(code, out, err)


# ------------------------------------------------------------ a small disk
@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (unmounted afterwards), or a skip saying why not."""
    with faults.small_tmpfs(tmp_path, "64K") as mount:
        yield mount


def _fill(directory):
    """Fills the filesystem of `directory` (as helpers/fault_train.py)."""
    fill(Path(directory) / "filler")


def test_write_json_on_a_full_disk_names_the_file_and_keeps_the_old(
    small_disk,
):
    from epsilon_tf.config import write_json

    path = small_disk / "metrics.json"
    write_json(path, {"epoch": 1})
    _fill(small_disk)
    with pytest.raises(DiskFullError) as caught:
        write_json(path, {"epoch": 2, "pad": "x" * 20000})
    message = str(caught.value)
    assert str(path) in message and "No space left" in message
    assert "it needs about 19.6 KiB" in message
    # The previous file is whole, and the partial temporary file is gone.
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert not (small_disk / "metrics.json.tmp").exists()


def test_require_free_space_before_the_run(small_disk):
    storage.require_free_space(small_disk, 1000, "one checkpoint")
    with pytest.raises(DiskFullError) as caught:
        storage.require_free_space(small_disk / "run", 10 ** 6,
                                   "one checkpoint")
    message = str(caught.value)
    assert "one checkpoint" in message and str(small_disk / "run") in message
    assert "it needs about 976.6 KiB" in message and "64.0 KiB" in message


# TensorFlow's own messages on a full disk, as its C++ writers word them
# (seen on a 1 MiB tmpfs): the checkpoint writer, the copy of a file, the
# SavedModel fingerprint.
TF_MESSAGES = {
    "SaveV2": (
        "{{function_node __wrapped__SaveV2_dtypes_93_device_/job:localhost/"
        "replica:0/task:0/device:CPU:0}} /mnt/my runs/x/checkpoints/ckpt-9_"
        "temp/part-00000-of-00001.data-00000-of-00001.tempstate88680460331"
        "8193071; No space left on device [Op:SaveV2]",
        "/mnt/my runs/x/checkpoints/ckpt-9_temp/part-00000-of-00001.data-"
        "00000-of-00001",
    ),
    "copy": (
        "/mnt/x/best/ckpt-1.data-00000-of-00001.tmp; No space left on "
        "device",
        "/mnt/x/best/ckpt-1.data-00000-of-00001",
    ),
    "fingerprint": (
        "/mnt/x/export/.tmp-1-9404/fingerprint.pb.tmpbd8de6577e92429d99f35a"
        "f2d1e890fa; No space left on device",
        "/mnt/x/export/.tmp-1-9404/fingerprint.pb",
    ),
}


class _ResourceExhaustedError(Exception):
    """Stands for `tf.errors.ResourceExhaustedError` (same `message`)."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


@pytest.mark.parametrize("writer", sorted(TF_MESSAGES))
def test_a_tensorflow_full_disk_error_names_the_file(writer, capsys):
    message, path = TF_MESSAGES[writer]
    with pytest.raises(SystemExit) as caught:
        with common.clean_exit("train.py"):
            raise _ResourceExhaustedError(message)
    assert caught.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("train.py: error: No space left on device: "
                          f"could not write {path};"), err
    assert "\n" not in err


def test_an_oserror_enospc_is_one_line(capsys, tmp_path):
    error = OSError(errno.ENOSPC, "No space left on device",
                    str(tmp_path / "model.keras"))
    with pytest.raises(SystemExit):
        with common.clean_exit("train.py"):
            raise error
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"train.py: error: No space left on device: could not write "
        f"{tmp_path / 'model.keras'};"
    ), err
    assert "free on its filesystem" in err


def test_writing_names_the_path_python_did_not(tmp_path):
    # f.write() on a full disk raises ENOSPC without a file name.
    with pytest.raises(DiskFullError) as caught:
        with storage.writing(tmp_path / "label_space", what="the labels"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert f"could not write {tmp_path / 'label_space'} (the labels)" in str(
        caught.value
    )
    # NumPy's np.save on a full disk: a short write, no errno.
    with pytest.raises(DiskFullError, match="could not write"):
        with storage.writing(tmp_path / "label_vectors.npy"):
            raise OSError("1344 requested and 992 written")
    with pytest.raises(ValueError, match="not a full disk"):
        with storage.writing(tmp_path):
            raise ValueError("not a full disk")


# --------------------------------------------------------------- the lock
_HOLD = (
    "import sys, time\n"
    "from epsilon_tf.training.run_lock import RunLock\n"
    "RunLock(sys.argv[1], 'training').acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


def _holder(directory):
    proc = subprocess.Popen(
        [PYTHON, "-c", _HOLD, str(directory)], stdout=subprocess.PIPE,
        text=True, cwd=ROOT, env=tiny.child_env(),
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_lock_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run one"
    holder = _holder(run)
    try:
        with pytest.raises(RunDirectoryInUseError) as caught:
            run_lock.RunLock(run, "training").acquire()
        message = str(caught.value)
        assert str(run) in message
        assert f"process {holder.pid} is training in it" in message
        assert run_lock.holder(run) == (holder.pid, "training")
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL left no stale lock: the OS dropped it with the process (the
    # dead holder's record stays in the file and does not matter).
    assert run_lock.holder(run) is None
    assert json.loads((run / ".lock").read_text())["pid"] == holder.pid
    with run_lock.RunLock(run, "training") as lock:
        assert lock.held
    assert run_lock.holder(run) is None


def test_a_lock_in_this_process_is_exclusive_too(tmp_path):
    with run_lock.RunLock(tmp_path, "exporting"):
        with pytest.raises(RunDirectoryInUseError,
                           match=f"process {os.getpid()} is exporting"):
            run_lock.RunLock(tmp_path).acquire()


def test_only_the_chief_of_a_cluster_takes_the_lock():
    cluster = {"worker": ["a:1", "b:2"]}

    def config(kind, index, **extra):
        return json.dumps({"cluster": dict(cluster, **extra),
                           "task": {"type": kind, "index": index}})

    assert run_lock.is_chief_process("default")
    assert run_lock.is_chief_process("multi_worker", config("worker", 0))
    assert not run_lock.is_chief_process("multi_worker", config("worker", 1))
    assert not run_lock.is_chief_process(
        "multi_worker", config("worker", 0, chief=["c:3"])
    )
    assert run_lock.is_chief_process(
        "multi_worker", config("chief", 0, chief=["c:3"])
    )


def test_an_export_into_a_directory_in_training_is_refused(tmp_path):
    run = tmp_path / "run"
    (run / "label_space").mkdir(parents=True)
    with run_lock.RunLock(run, "training"):
        line = _one_error_line(*_run(
            [PYTHON, "-m", "epsilon_tf.export", f"--model_dir={run}"]
        ))
    assert f"{run} is in use: process {os.getpid()} is training" in line
    assert not (run / "export").exists()


@pytest.fixture(scope="module")
def lesa(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lesa")
    return release.lesa_release(tmp / "release"), tmp


def test_a_second_trainer_on_a_directory_is_refused(lesa):
    paths, tmp = lesa
    run = tmp / "runs" / "busy"
    with run_lock.RunLock(run, "training"):
        line = _one_error_line(*_run(
            [PYTHON, str(ROOT / "train.py"), *release.MODEL_FLAGS,
             "--noexport", *release.lesa_flags(paths), f"--model_dir={run}"]
        ))
    assert f"{run} is in use: process {os.getpid()} is training in it" in (
        line
    )
    # Refused before anything was written there.
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


# ------------------------------------------------- every error names the file
def _label_dir_copy(paths, tmp, name):
    target = tmp / name
    target.mkdir()
    for f in Path(paths["labels"]).iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    return target


def _cut_last_line(path):
    lines = Path(path).read_text().splitlines()
    Path(path).write_text("\n".join(lines[:-1]) + "\n")
    return len(lines) - 1


@pytest.mark.parametrize("cut", ["TagList1k.txt", "Concepts81.txt"])
def test_a_short_label_file_is_named_not_the_word_vectors(lesa, cut):
    from epsilon_tf.data.readers.label_files import nus_wide_label_space

    paths, tmp = lesa
    labels = _label_dir_copy(paths, tmp, f"cut_{cut}")
    count = _cut_last_line(labels / cut)
    vectors = labels / "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300"
    with pytest.raises(ValueError) as caught:
        nus_wide_label_space(labels / "TagList1k.txt",
                             labels / "Concepts81.txt", vectors)
    message = str(caught.value)
    assert message.startswith(f"The label file {labels / cut} and the "
                              f"word-vector file {vectors} disagree")
    assert f"lists {count} labels" in message
    assert f"has {count + 1} rows" in message


def _lesa_source(paths, train=None):
    from epsilon_tf.config import DataConfig
    from epsilon_tf.data.sources import make_source

    return make_source(DataConfig(
        dataset="nus_wide", data_format="lesa",
        label_dir=str(paths["labels"]), feature_shape=(9, 8),
        train_files=str(train or paths["train"]),
        test_files=str(paths["test"]),
    ), progress=False)


def _read_all(split):
    from epsilon_tf.data.pipeline import input_errors, make_dataset

    with input_errors():
        for _ in make_dataset(split, 16):
            pass


def _nan_values(paths, index):
    values = release.lesa_values("train", paths["space"], paths["tags"])
    features = np.frombuffer(values[index]["feature"], np.float32).copy()
    features[3] = np.nan
    values[index] = dict(values[index], feature=features.tobytes())
    return values


def test_nan_features_in_a_lesa_file_name_the_file_and_record(lesa):
    from epsilon_tf.errors import InputDataError

    paths, tmp = lesa
    bad = release.write_records(tmp / "nan records.tfrecords",
                                _nan_values(paths, 5))
    with pytest.raises(InputDataError) as caught:
        _read_all(_lesa_source(paths, train=bad).split("train"))
    message = str(caught.value)
    assert message.startswith(
        f"NaN or Inf in the features of record 5 of {bad} (image_id "
    ), message


def test_nan_features_in_a_native_shard_name_the_shard(tmp_path,
                                                       monkeypatch):
    from epsilon_tf.data.readers import native_writer
    from epsilon_tf.data.worlds.synthetic import generate_split
    from epsilon_tf.errors import InputDataError

    directory = Path(tiny.write_native(tmp_path / "native"))
    # The writer refuses NaN; let one through, as a foreign writer would.
    validate = native_writer.NativeWriter._validate

    def lenient(self, image_id, features, labels):
        features = np.asarray(features)
        out = validate(self, image_id, np.nan_to_num(features), labels)
        return out[0], features, out[2]

    monkeypatch.setattr(native_writer.NativeWriter, "_validate", lenient)
    examples = list(generate_split(tiny.world(), "train"))
    image_id, features, labels = examples[7]
    features = np.array(features, np.float32)
    features[0, 0] = np.inf
    examples[7] = (image_id, features, labels)
    space = tiny.native_source(directory).label_space
    native_writer.write_native_split(
        directory, "train", examples, tiny.world().feature_shape,
        label_names=space.subset("seen").names, feature_dtype="float32",
        overwrite=True,
    )
    monkeypatch.undo()
    shard = sorted(directory.glob("train-*"))[0]
    with pytest.raises(InputDataError) as caught:
        _read_all(tiny.native_source(directory).split("train"))
    message = str(caught.value)
    assert message.startswith(
        "NaN or Inf in the features of record 7 of "
    ), message
    assert str(shard) in message


def test_nan_features_in_a_biam_file_name_the_file(lesa):
    import h5py

    from epsilon_tf.data.readers.biam_hdf5 import biam_nus_wide_split
    from epsilon_tf.errors import InputDataError

    paths, tmp = lesa
    h5, names = release.write_biam(tmp / "biam", paths["space"], "train")
    with h5py.File(h5, "r+") as f:
        name = pickle.loads(names.read_bytes())["img_names"][4]
        data = f[f"{name}-features"][()]
        data[1, 2] = np.nan
        f[f"{name}-features"][...] = data
    split = biam_nus_wide_split(str(h5), str(names), "train",
                                paths["space"], feature_shape=(9, 8))
    with pytest.raises(InputDataError) as caught:
        _read_all(split)
    message = str(caught.value)
    assert message.startswith(
        f"NaN or Inf in the features of record 4 of {h5} (image_id {name}"
    ), message


def test_eval_predictions_with_nan_names_the_file(tmp_path):
    path = tmp_path / "my scores.npz"
    scores = np.random.default_rng(0).random((6, 8)).astype(np.float32)
    scores[2, 1] = np.nan
    labels = np.where(scores > 0.5, 1, -1)
    np.savez(path, scores=scores, labels=labels)
    line = _one_error_line(*_run(
        [PYTHON, str(ROOT / "eval.py"), f"--predictions={path}"]
    ))
    assert f"--predictions {path}: `scores` must contain only finite" in line
    assert "the first at [2, 1]" in line


def test_eval_on_a_directory_in_training_names_the_trainer(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-18"\n'
        'all_model_checkpoint_paths: "ckpt-9"\n'
        'all_model_checkpoint_paths: "ckpt-18"\n'
    )
    with run_lock.RunLock(run, "training"):
        line = _one_error_line(*_run(
            [PYTHON, str(ROOT / "eval.py"), f"--model_dir={run}"]
        ))
    assert (
        f"No finished model in {run} yet: process {os.getpid()} is training "
        f"in it (its last finished checkpoint: {run}/checkpoints/ckpt-18)"
    ) in line
    # Once the trainer is gone: the usual message.
    line = _one_error_line(*_run(
        [PYTHON, str(ROOT / "eval.py"), f"--model_dir={run}"]
    ))
    assert f"No trained model at {run}/model.keras; train first" in line


def test_the_record_count_cache_on_a_full_disk_names_the_cache(
    small_disk, tmp_path
):
    from epsilon_tf.data.records import record_count

    data = tmp_path / "data.bin"
    data.write_bytes(b"x")
    _fill(small_disk)
    with pytest.raises(DiskFullError) as caught:
        record_count.cached_count([str(data)], lambda path: 7, str(small_disk),
                                  "tfrecord", progress=False)
    cache = small_disk / record_count.CACHE_FILE
    assert f"could not write {cache};" in str(caught.value)
    assert not cache.exists()
    # Space freed: the same call counts, caches, and then reads the cache.
    (small_disk / "filler").unlink()
    assert record_count.cached_count(
        [str(data)], lambda path: 7, str(small_disk), "tfrecord",
        progress=False) == 7
    assert cache.exists()
    assert record_count.cached_count(
        [str(data)], lambda path: 0, str(small_disk), "tfrecord",
        progress=False) == 7


def test_eval_metrics_out_on_a_full_disk_then_rerun(small_disk, tmp_path):
    """`eval.py --metrics_out` on a full disk: one line naming the file,
    the previous file intact; once space is freed the same command writes
    what it writes on a disk with room."""
    scores = tmp_path / "scores.npz"
    rng = np.random.default_rng(0)
    values = rng.random((20, 8)).astype(np.float32)
    np.savez(scores, scores=values, labels=np.where(values > 0.6, 1, -1))
    command = [PYTHON, str(ROOT / "eval.py"), f"--predictions={scores}",
               "--k=1,2"]
    roomy = tmp_path / "roomy.json"
    code, out, err = _run([*command, f"--metrics_out={roomy}"])
    assert code == 0, out + err
    target = small_disk / "metrics.json"
    target.write_text('{"old": true}')
    _fill(small_disk)
    line = _one_error_line(*_run([*command, f"--metrics_out={target}"]))
    assert f"could not write {target}" in line, line
    assert json.loads(target.read_text()) == {"old": True}
    (small_disk / "filler").unlink()
    code, out, err = _run([*command, f"--metrics_out={target}"])
    assert code == 0, out + err
    assert json.loads(target.read_text()) == json.loads(roomy.read_text())


def test_the_run_lock_on_a_full_disk_names_the_lock_file(small_disk):
    """The lock records its holder's pid: on a full disk that write names
    the lock file, and the lock is not left held."""
    run = small_disk / "run"
    run.mkdir()
    _fill(small_disk)
    lock = run_lock.RunLock(str(run), "training")
    with pytest.raises(DiskFullError) as caught:
        lock.acquire()
    assert f"could not write {run / '.lock'}" in str(caught.value)
    (small_disk / "filler").unlink()
    with run_lock.RunLock(str(run), "training"):
        pass
