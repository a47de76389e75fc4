"""The files a split reads: glob patterns expanded once, in one way.

Used by the command lines' checks (`epsilon_tf.data.precheck`, before
TensorFlow loads), by `release_sources` (whose errors name the flag) and
by every release reader (`file_pattern_or_list`). Local patterns are
expanded with `glob`; remote ones (`gs://...`) with `tf.io.gfile`, loaded
only then.
"""

import glob
import os

_GLOB_CHARS = frozenset("*?[")


def is_local(path):
    """True for a path on this machine (no `scheme://`)."""
    return "://" not in str(path)


def _parts(patterns):
    if isinstance(patterns, (str, os.PathLike)):
        text = os.fspath(patterns)
        return [p.strip() for p in text.split(",") if p.strip()]
    return [os.fspath(p) for p in patterns]


def _missing(part, flag):
    if flag:
        return FileNotFoundError(f"--{flag}: {part!r} matches no file")
    if _GLOB_CHARS & set(part):
        return FileNotFoundError(f"No files match {part}")
    return FileNotFoundError(f"Record file not found: {part}")


def _remote_matches(part):
    import tensorflow as tf  # only for remote files, never at start-up

    if _GLOB_CHARS & set(part):
        return sorted(tf.io.gfile.glob(part)), tf.io.gfile.isdir
    return (
        [part] if tf.io.gfile.exists(part) else [], tf.io.gfile.isdir
    )


def expand_files(patterns, flag=None, remote=True):
    """The files of glob patterns, in order, each once.

    Args:
        patterns: str or os.PathLike (a path or a glob pattern, or a
            comma-separated list of them) or a sequence of such paths or
            patterns (no commas split there).
        flag: str or None. The command-line flag that named them; its
            messages then start with `--<flag>: `. Defaults to None.
        remote: bool. Expand (and check) remote patterns too; when False
            they are passed on as given. Defaults to True.

    Returns:
        list of str: the matches of each pattern in sorted order, the
        patterns in their order, a file matched twice listed once.

    Raises:
        ValueError: no pattern at all.
        FileNotFoundError: a pattern matches no file.
        IsADirectoryError: a pattern names (or matches) a directory.
    """
    parts = _parts(patterns)
    if not parts and flag is None:
        raise ValueError("`file_pattern_or_list` is empty")
    files = []
    for part in parts:
        if is_local(part):
            matches, isdir = sorted(glob.glob(part)), os.path.isdir
        elif remote:
            matches, isdir = _remote_matches(part)
        else:
            files.append(part)
            continue
        if not matches:
            raise _missing(part, flag)
        for match in matches:
            if isdir(match):
                what = "a feature file" if flag else "a record file"
                prefix = f"--{flag}: " if flag else ""
                raise IsADirectoryError(
                    f"{prefix}{match} is a directory, not {what} (give the "
                    f"files, e.g. {os.path.join(match, '*')})"
                )
        files.extend(matches)
    seen = set()
    return [f for f in files if not (f in seen or seen.add(f))]
