"""Numbered SavedModel version directories (the TF Serving layout).

TF Serving polls `EXPORT_BASE/` and loads the numbered sub-directories.
`write_version` makes a new (or replaced) version appear atomically: its
files are written to a dot-prefixed temporary sibling (TF Serving ignores
non-numeric names) and renamed into place, so a server polling the base
never sees a half-written version; an overwritten version is exchanged in
one step where the system can. Temporary directories left by exporters
that died are removed by the next export (`clean_stale_temp_dirs`).
What goes into a version is `export.serving`'s.
"""

import contextlib
import ctypes
import ctypes.util
import dataclasses
import json
import os
import re
import shutil

import numpy as np

_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"
_TMP_RE = re.compile(r"^\.(?:tmp|old)-(\d+)-(\d+)$")
_IN_PROGRESS = set()  # this process's temporary dirs being written now
# Every version's record of what it holds (`assets/export_info.json`).
INFO_FILE = "export_info.json"


def _is_version(name):
    return name.isdigit() and int(name) > 0


def list_versions(export_base):
    """The complete versions under `export_base`, ascending."""
    if not os.path.isdir(export_base):
        return []
    return sorted(
        int(n)
        for n in os.listdir(export_base)
        if _is_version(n) and os.path.isdir(os.path.join(export_base, n))
    )


def _pid_alive(pid):
    if pid == os.getpid():
        return False  # a leftover of this process, not a live export
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temp_dirs(export_base):
    """Removes temporary export dirs of processes that no longer run.

    Returns:
        The removed paths.
    """
    removed = []
    if not os.path.isdir(export_base):
        return removed
    for entry in os.listdir(export_base):
        match = _TMP_RE.match(entry)
        path = os.path.join(export_base, entry)
        if (
            match
            and not _pid_alive(int(match.group(2)))
            and os.path.abspath(path) not in _IN_PROGRESS
        ):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def check_version(version):
    if version is None:
        return None
    if (
        isinstance(version, bool)
        or not isinstance(version, (int, np.integer))
        or version < 1
    ):
        raise ValueError(
            "`version` must be a positive integer (TF Serving version "
            f"directory). Received: version={version!r}"
        )
    return int(version)



def _exchange(a, b):
    """Swaps two paths atomically (Linux `renameat2(RENAME_EXCHANGE)`).

    Returns False where the system cannot (then nothing was changed).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None,
                           use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                          ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b),
                     rename_exchange)
    return done == 0


def _replace_version(tmp, final, export_base, version):
    """Puts the finished `tmp` at `final`, which exists (`overwrite`).

    The two directories are exchanged in one atomic step where the system
    can (Linux), so `final` is never missing, not even briefly: TF Serving
    sees the old version, then the new one. Elsewhere the old one is
    renamed away just before the new one is renamed in.
    """
    if _exchange(tmp, final):
        # `tmp` now holds the old version, out of TF Serving's sight.
        shutil.rmtree(tmp, ignore_errors=True)
        return
    _retire(final, export_base, version)
    os.replace(tmp, final)


def _retire(path, export_base, version):
    """Renames a version dir out of TF Serving's sight, then deletes it."""
    old = os.path.join(export_base, f"{_OLD_PREFIX}{version}-{os.getpid()}")
    os.replace(path, old)
    shutil.rmtree(old, ignore_errors=True)



def read_export_info(version_dir):
    """The `export_info.json` of an exported version, or None if absent.

    It holds the feature shape, k, branches, `precision` and, with a
    backbone, the image size (see `serving.EpsilonServingModule.info`).
    """
    path = os.path.join(version_dir, "assets", INFO_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@dataclasses.dataclass(frozen=True)
class PendingVersion:
    """A version being written: fill `tmp`; it becomes `final` on exit."""

    export_base: str
    version: int
    tmp: str
    final: str


@contextlib.contextmanager
def write_version(export_base, version=None, overwrite=False):
    """Context for writing one version directory atomically.

    Yields a `PendingVersion`: write the SavedModel into its `tmp`; when
    the block ends without an error, `tmp` is renamed to `final`
    (`export_base/<version>`). On an error (or an interrupt) `tmp` is
    removed and nothing changes under `export_base`.

    Args:
        export_base: str or path-like. Created if missing.
        version: int or None. None takes the largest existing version + 1
            (1 for an empty base).
        overwrite: bool. Replace an existing `version`.

    Raises:
        FileExistsError: `version` exists (without `overwrite`), or
            another exporter wrote it meanwhile.
    """
    version = check_version(version)
    export_base = os.fspath(export_base)
    os.makedirs(export_base, exist_ok=True)
    clean_stale_temp_dirs(export_base)
    if version is None:
        version = max(list_versions(export_base), default=0) + 1
    final = os.path.join(export_base, str(version))
    if os.path.exists(final) and not overwrite:
        raise FileExistsError(
            f"Version {version} already exists at {final}; replace it with "
            "--overwrite (overwrite=True in Python) or choose another "
            "--version"
        )
    tmp = os.path.join(export_base, f"{_TMP_PREFIX}{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _IN_PROGRESS.add(os.path.abspath(tmp))
    try:
        yield PendingVersion(export_base, version, tmp, final)
        if os.path.exists(final):
            if not overwrite:  # another exporter took this version meanwhile
                raise FileExistsError(
                    f"Version {version} appeared at {final} during the export"
                )
            _replace_version(tmp, final, export_base, version)
        try:
            if os.path.exists(tmp):
                os.replace(tmp, final)
        except OSError as err:
            if os.path.exists(final):
                raise FileExistsError(
                    f"Version {version} appeared at {final} during the export"
                ) from err
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _IN_PROGRESS.discard(os.path.abspath(tmp))


def retire_other_versions(export_base, keep):
    """Deletes every version but `keep` (each renamed away first)."""
    for other in list_versions(export_base):
        if other != keep:
            _retire(os.path.join(export_base, str(other)), export_base, other)
