"""One process at a time in a run directory: an OS-level lock.

A trainer (and an export into the directory) holds an exclusive
`fcntl.flock` on `<model_dir>/.lock` for as long as it works there. The
lock belongs to the open file, so the operating system drops it when the
process ends in any way (exit, exception, SIGTERM, SIGKILL, a crash): a
killed job never leaves a stale lock to clean by hand. The file itself
stays (an empty lock file is harmless); while the lock is held it holds
the holder's process id and what it does, for the message a second
process gets:

    train.py: error: runs/x is in use: process 4242 is training in it
    (lock runs/x/.lock); wait for it to end or stop it, or use another
    --model_dir

A scheduler that restarts a job it wrongly thinks dead is thus refused
instead of writing the same checkpoints twice. Only the standard library
is imported (the command lines take the lock before TensorFlow loads).
"""

import fcntl
import json
import os
import time

from epsilon_tf import storage
from epsilon_tf.errors import RunDirectoryInUseError
from epsilon_tf.training.run_dir import RunDir

LOCK_FILE = ".lock"


def lock_path(directory):
    """The lock file of the run directory `directory`."""
    return os.path.join(os.fspath(directory), LOCK_FILE)


def _read_holder(fd):
    """`(pid, purpose)` recorded in an open lock file, or (None, None)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace")
        info = json.loads(text) if text.strip() else {}
        return info.get("pid"), info.get("purpose")
    except (OSError, ValueError, AttributeError):
        return None, None


# `holder()` probes with a shared lock held for an instant: a trainer that
# meets that instant tries again for this long before it is refused.
PROBE_GRACE_SECONDS = 1.0


def _lock_exclusive(fd):
    """`flock(LOCK_EX)` without waiting for a holder, but past a probe."""
    deadline = time.monotonic() + PROBE_GRACE_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


class RunLock:
    """The exclusive lock of one run directory.

    Args:
        directory: str. The run directory (created when missing).
        purpose: str. What the holder does there ("training",
            "exporting"), for the message of a refused process.

    A second `RunLock` on the same directory, in this process or another,
    raises `RunDirectoryInUseError` while the first is held.

    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> with RunLock(run, "training"):
    ...     holder(run)[1]
    'training'
    >>> holder(run) is None
    True
    """

    def __init__(self, directory, purpose="training"):
        self.directory = os.fspath(directory)
        self.purpose = purpose
        self.path = lock_path(self.directory)
        self._fd = None

    @property
    def held(self):
        return self._fd is not None

    def acquire(self):
        """Takes the lock, or raises `RunDirectoryInUseError` naming the
        directory and the holder's process id. Re-entrant in one object."""
        if self._fd is not None:
            return self
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_exclusive(fd)
        except BlockingIOError:
            pid, purpose = _read_holder(fd)
            os.close(fd)
            holder = (
                f"process {pid} is {purpose or 'working'} in it"
                if pid is not None
                else "another process holds it"
            )
            raise RunDirectoryInUseError(
                f"{self.directory} is in use: {holder} (lock {self.path}); "
                "wait for it to end or stop it, or use another --model_dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        record = json.dumps({"pid": os.getpid(), "purpose": self.purpose})
        try:
            # A full disk names the lock file (os.pwrite's error does not).
            with storage.writing(self.path, what="the run directory's lock"):
                os.ftruncate(fd, 0)
                os.pwrite(fd, record.encode("utf-8") + b"\n", 0)
        except BaseException:
            os.close(fd)  # and with it the lock
            raise
        self._fd = fd
        return self

    def release(self):
        """Drops the lock (the OS drops it anyway when the process ends)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # a full or read-only disk: the lock still goes below
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, tb):
        self.release()


def holder(directory):
    """`(pid, purpose)` of the process holding `directory`'s lock, or None.

    Probes without waiting; a lock that is free returns None (so does a
    directory without a lock file). The probe holds a shared lock for an
    instant; a trainer starting at that instant waits it out
    (`PROBE_GRACE_SECONDS`).
    """
    path = lock_path(directory)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def holder_text(found):
    """"process PID is PURPOSE in it" for a `holder()` result."""
    pid, purpose = found
    return f"process {pid} is {purpose or 'working'} in it"


def last_checkpoint(directory):
    """The newest finished checkpoint of a run directory, or None.

    Read from the `checkpoints/checkpoint` state file, which
    `tf.train.CheckpointManager` rewrites only once a checkpoint is
    complete (no TensorFlow needed).
    """
    checkpoints = RunDir(directory).checkpoints
    try:
        with open(os.path.join(checkpoints, "checkpoint"),
                  encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model_checkpoint_path":
            name = value.strip().strip('"')
            return name if os.path.isabs(name) else os.path.join(
                checkpoints, name
            )
    return None


def missing_model_message(directory):
    """Why a run directory has no `model.keras` yet, in one line.

    While a trainer holds the directory: which process, and its last
    finished checkpoint; otherwise: train first.
    """
    found = holder(directory)
    keras_model = RunDir(directory).keras_model
    if found is None:
        return (
            f"No trained model at {keras_model}; train first (train.py "
            f"--model_dir={directory})"
        )
    return (
        f"No finished model in {directory} yet: {holder_text(found)} (its "
        f"last finished checkpoint: {last_checkpoint(directory) or 'none'}"
        "); eval.py reads only the finished model.keras, written when "
        "training ends"
    )


def is_chief_process(strategy_name, tf_config=None):
    """True unless this process is a non-chief worker of a cluster.

    Mirrors `strategy.is_chief` from `TF_CONFIG` alone, before TensorFlow
    builds the strategy: the non-chief workers of a multi-worker run share
    the chief's `model_dir` (writing only their scratch directories) and
    must not take its lock.
    """
    if strategy_name != "multi_worker":
        return True
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    try:
        config = json.loads(text) if text else {}
        task = config.get("task", {})
        cluster = config.get("cluster", {})
    except (ValueError, AttributeError):
        return True  # make_strategy reports a bad TF_CONFIG
    kind, index = task.get("type"), int(task.get("index", 0) or 0)
    if not kind:
        return True
    return kind == "chief" or (
        kind == "worker" and index == 0 and "chief" not in cluster
    )
