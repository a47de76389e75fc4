"""Loads the pickles that ship with the benchmarks, without running code.

The NUS-WIDE word vectors, the Open Images unseen-label list and BiAM's
image-name lists are Python pickles. A plain `pickle.load` executes whatever
callable the file names, so `load_pickle` uses an unpickler whose
`find_class` only hands out what rebuilding numpy arrays needs:

- `numpy.core.multiarray._reconstruct` / `numpy._core.multiarray._reconstruct`
- `numpy.ndarray`, `numpy.dtype`
- `numpy.core.multiarray.scalar` / `numpy._core.multiarray.scalar`
- `numpy.core.numeric._frombuffer` / `numpy._core.numeric._frombuffer`
  (what numpy writes for pickle protocol 5)
- `_codecs.encode`, restricted to the latin-1 codec: protocol-2 pickles of
  numpy arrays store their raw bytes as `_codecs.encode(text, "latin1")`
  (the Open Images `unseen_labels.pkl` is such a file).

Lists, dicts, tuples, str, bytes, int, float, bool and None need no global
and load as usual. Any other global raises `UnsafePickleError` before it is
called.
"""

import codecs
import io
import os
import pickle

import numpy as np

# The private numpy modules, imported directly: `numpy.core` is a deprecated
# alias in numpy 2, and older numpy has no `numpy._core`.
try:
    from numpy._core import multiarray, numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray, numeric

_LATIN1_NAMES = ("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1")


class UnsafePickleError(ValueError):
    """A pickle asked for a global that the restricted unpickler refuses."""


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """`_codecs.encode` limited to turning latin-1 text back into bytes."""
    if not isinstance(obj, str) or str(encoding).lower() not in _LATIN1_NAMES:
        raise UnsafePickleError(
            "The restricted unpickler only allows "
            "_codecs.encode(<str>, 'latin1'). Received: "
            f"_codecs.encode({type(obj).__name__}, {encoding!r})"
        )
    return codecs.encode(obj, "latin1", errors)


def _numpy_globals():
    allowed = {}
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = (
            multiarray._reconstruct
        )
        allowed[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{prefix}.numeric", "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


_ALLOWED = _numpy_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds numpy arrays and plain containers.

    Args:
        file: binary file object. The pickle stream.
        source: str. Name of the stream used in error messages.
            Defaults to `"<stream>"`.
    """

    def __init__(self, file, source="<stream>"):
        # latin1 lets numpy arrays pickled under Python 2 load.
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module, name):
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        raise UnsafePickleError(
            f"Refusing to load {self.source}: it asks for the global "
            f"'{module}.{name}', which is not one of the numpy array "
            "constructors the restricted unpickler allows "
            f"({sorted(f'{m}.{n}' for m, n in _ALLOWED)}). Do not load "
            "this file with plain pickle unless you trust its origin."
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(
            f"Refusing to load {self.source}: it uses persistent ids "
            f"({pid!r}), which the restricted unpickler does not support."
        )


def load_pickle(path):
    """Loads a pickle of numpy arrays / lists / dicts without running code.

    Args:
        path: str or path-like. The pickle file (local path or any
            `tf.io.gfile` URL).

    Returns:
        The unpickled object.

    Raises:
        FileNotFoundError: `path` does not exist.
        UnsafePickleError: the pickle references a global other than the
            numpy array constructors (nothing it names is called).
        ValueError: the file is truncated or not a valid pickle.

    Example:

    >>> vectors_1k, vectors_81 = load_pickle(
    ...     "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300")
    """
    path = os.fspath(path)
    if "://" in path:  # gs://, hdfs://, ...: through tf.io.gfile
        import tensorflow as tf

        exists, isdir = tf.io.gfile.exists(path), tf.io.gfile.isdir(path)
        opener = tf.io.gfile.GFile
    else:
        exists, isdir, opener = os.path.exists(path), os.path.isdir(path), open
    if not exists:
        raise FileNotFoundError(f"Pickle file not found: {path}")
    if isdir:
        raise IsADirectoryError(f"{path} is a directory, not a pickle file")
    with opener(path, "rb") as f:
        return _load(f, path)


def loads_pickle(data, source="<bytes>"):
    """Like `load_pickle`, for a bytes object already in memory.

    Args:
        data: bytes. The pickle.
        source: str. Name used in error messages. Defaults to "<bytes>".
    """
    return _load(io.BytesIO(data), source)


def _load(f, source):
    try:
        return RestrictedUnpickler(f, source=source).load()
    except UnsafePickleError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        MemoryError,
        OverflowError,
        UnicodeDecodeError,
    ) as e:
        raise ValueError(
            f"Could not unpickle {source}: the file is truncated or is not "
            f"a valid pickle ({type(e).__name__}: {e})"
        ) from e
