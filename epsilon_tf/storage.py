"""Disk space: free-space checks, full-disk errors and atomic writes.

A long run meets a full disk sooner or later. Whatever write meets it (a
checkpoint, `model.keras`, an export, `metrics.json`, a cache file, an
event file), the run must end in one line naming what could not be
written and how much space is left (and, where known, how much the write
needed), and everything written before must stay intact, so that the
same command resumes once space is freed:

- `disk_full_error(error, path)` recognises a full disk in any error: an
  `OSError` with `ENOSPC`/`EDQUOT` (or NumPy's short write, "N requested
  and M written"), or a TensorFlow error whose message
  says "No space left on device" (TensorFlow's C++ writers, `SaveV2` and
  the events writer, report it with the file's path, which is parsed out);
  it returns the `DiskFullError` to raise, or None.
- `writing(path)` turns a full disk met inside the block into that error.
- `atomic_write_text` / `atomic_write_bytes` write through a temporary
  file and a rename: a full disk leaves the previous file as it was and
  removes the partial temporary file.
- `require_free_space(directory, needed, what)` refuses to start when the
  filesystem has less free space than a write of known size needs.

Standard library only: every layer of the package may use it.
"""

import contextlib
import errno
import os
import re
import shutil

from epsilon_tf.errors import DiskFullError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")
# NumPy's `tofile`/`np.save` on a full disk: an OSError without errno.
_SHORT_WRITE_RE = re.compile(r"\b\d+ requested and \d+ written\b")
# TensorFlow's messages: "[{{function_node ...}} ]<path>; No space left on
# device[ [Op:SaveV2]]".
_TF_PATH_RE = re.compile(
    r"(?:\}\}\s*)?([^\s{}][^;{}\n]*?);\s*(?:No space left on device|"
    r"Disk quota exceeded)"
)
# The temporary names TensorFlow's writers use for a file being written.
_TEMP_SUFFIX_RE = re.compile(r"(\.tempstate\d+|\.tmp[0-9a-f]{32}|\.tmp)$")


def human_bytes(n):
    """`n` bytes in B, KiB, MiB or GiB.

    >>> human_bytes(1536), human_bytes(12)
    ('1.5 KiB', '12 B')
    """
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable: GiB is the last unit


def _existing_parent(path):
    path = os.path.abspath(os.fspath(path))
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def free_bytes(path):
    """Free bytes (for an unprivileged user) on the filesystem of `path`.

    `path` need not exist yet: its nearest existing parent is asked. None
    when the filesystem cannot tell (a remote path, a stat error).
    """
    if "://" in os.fspath(path):
        return None
    try:
        return shutil.disk_usage(_existing_parent(path)).free
    except OSError:
        return None


def is_disk_full(error):
    """True when `error` says its filesystem is full (or over quota)."""
    if isinstance(error, DiskFullError):
        return True
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    text = str(getattr(error, "message", None) or error)
    if isinstance(error, OSError) and _SHORT_WRITE_RE.search(text):
        return True
    return any(t in text for t in _DISK_FULL_TEXTS)


def path_in_message(error):
    """The path a TensorFlow full-disk message names, or None.

    TensorFlow's writers put the file being written before "; No space
    left on device", under a temporary name (`...tempstate123`,
    `....tmp<hex>`), which is cut back to the file's own name.
    """
    text = str(getattr(error, "message", None) or error)
    match = _TF_PATH_RE.search(text)
    if match is None:
        return None
    path = match.group(1).strip()
    return _TEMP_SUFFIX_RE.sub("", path) or None


def disk_full_message(path, needed=None, what=None):
    """The one-line message of a full disk at `path`."""
    path = os.fspath(path)
    free = free_bytes(path)
    parts = [f"No space left on device: could not write {path}"]
    if what:
        parts[0] += f" ({what})"
    details = []
    if needed is not None:
        details.append(f"it needs about {human_bytes(needed)}")
    if free is not None:
        details.append(f"{human_bytes(free)} free on its filesystem")
    if details:
        parts.append(", ".join(details))
    parts.append(
        "everything written before is intact; free some space and rerun "
        "the same command to resume"
    )
    return "; ".join(parts)


def disk_full_error(error, path=None, needed=None, what=None):
    """The `DiskFullError` for `error`, or None when it is not a full disk.

    Args:
        error: any exception.
        path: the file or directory being written, or None. A path named in
            the error itself (an `OSError`'s filename, a TensorFlow
            message's path) is more precise and wins.
        needed: int or None. Bytes the write needed, where known.
        what: str or None. What the file is ("checkpoint", ...).
    """
    if isinstance(error, DiskFullError):
        return error
    if not is_disk_full(error):
        return None
    named = getattr(error, "filename", None) if isinstance(
        error, OSError
    ) else None
    named = named or path_in_message(error) or path
    if named is None:
        return DiskFullError(
            "No space left on device (the write that failed did not say "
            "which file); free some space and rerun the same command to "
            "resume"
        )
    return DiskFullError(disk_full_message(named, needed, what))


@contextlib.contextmanager
def writing(path, needed=None, what=None):
    """Turns a full disk met inside the block into a `DiskFullError`.

    `with writing(run.keras_model, what="the Keras model"):
    model.save(...)` ends a full disk in one line naming `model.keras`.
    """
    try:
        yield
    except Exception as e:  # noqa: BLE001 (only a full disk is converted)
        full = disk_full_error(e, path, needed, what)
        if full is None or full is e:
            raise
        raise full from e


def _remove_quietly(path):
    with contextlib.suppress(OSError):
        os.remove(path)


def atomic_write_bytes(path, data):
    """Writes `data` to `path` through `path.tmp` and a rename.

    The file is flushed to disk before the rename, so `path` holds either
    the old or the new contents. On a full disk the temporary file is
    removed, `path` is left as it was, and a `DiskFullError` names `path`
    and the bytes needed.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        if not is_disk_full(e):
            raise
        raise DiskFullError(
            disk_full_message(path, needed=len(data))
        ) from e


def atomic_write_text(path, text, encoding="utf-8"):
    """`atomic_write_bytes` of `text` encoded."""
    atomic_write_bytes(path, text.encode(encoding))


def require_free_space(directory, needed, what):
    """Raises `DiskFullError` when `directory` has less than `needed` free.

    Args:
        directory: str. Where the writes go (need not exist yet).
        needed: int. Bytes the coming writes need at least.
        what: str. What they are, for the message ("one checkpoint").
    """
    free = free_bytes(directory)
    if free is None or free >= needed:
        return
    raise DiskFullError(
        f"Not enough free space for {what} in {os.fspath(directory)}: it "
        f"needs about {human_bytes(needed)}, the filesystem has "
        f"{human_bytes(free)} free; free some space or choose another "
        "directory"
    )
