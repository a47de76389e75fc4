"""What a record file's stream should hold, measured beside the reader.

`stream.check_stream_end` compares what a reader read from each file with
what the file holds: its size for an uncompressed file, or, for a ZLIB/GZIP
file, the length of its decompressed stream, measured once per file (and
cached by its size and modification time) by a background Python thread
that decompresses the file alongside the reader (one extra core and a
second read of the file, first pass only).
"""

import concurrent.futures
import threading

import tensorflow as tf

from epsilon_tf.data.records.compression import decompressed_chunks
from epsilon_tf.data.records.stream import file_stat, no_autograph

_CHUNK = 8 << 20


def compressed_stream_length(path, compression):
    """Decompresses a ZLIB/GZIP file and measures its decompressed stream.

    Args:
        path: str. The file.
        compression: str. "ZLIB" or "GZIP".

    Returns:
        `(num_bytes, problem)`: the decompressed length, and "" or a
        description of what is wrong with the stream (truncated, corrupt).
    """
    total = 0
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            for chunk in decompressed_chunks(f, compression, _CHUNK):
                total += len(chunk)
    except ValueError as e:
        problem = str(e)
        return total, problem[0].upper() + problem[1:] + "."
    return total, ""


class StreamVerifier:
    """Measures compressed files in background threads; caches by stat.

    Args:
        max_workers: int. Files measured at once. Defaults to 4.
    """

    def __init__(self, max_workers=4):
        self._max_workers = max_workers
        self._pool = None
        self._futures = {}
        self._lock = threading.Lock()

    def _future(self, path, compression):
        size, mtime = file_stat(path)
        key = (path, compression, size, mtime)
        with self._lock:
            if key not in self._futures:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self._max_workers,
                        thread_name_prefix="epsilon_tf_record_check",
                    )
                self._futures[key] = self._pool.submit(
                    compressed_stream_length, path, compression
                )
            return self._futures[key]

    def start(self, path, compression):
        """Starts measuring `path` (a compressed file) in the background."""
        if compression:
            self._future(path, compression)

    def expectation(self, path, compression):
        """`(stream_bytes, -1, problem)` of `path`, the `expectation` of
        `stream.check_stream_end` (waits for the measure)."""
        if not compression:
            size, _ = file_stat(path)
            return size, -1, ""
        num_bytes, problem = self._future(path, compression).result()
        return num_bytes, -1, problem


# One worker per file the interleave keeps open.
VERIFIER = StreamVerifier(max_workers=8)


def start_verification(files_ds, compressions):
    """`files_ds` (file names), starting `VERIFIER` on each file it yields.

    Args:
        files_ds: `tf.data.Dataset` of file names.
        compressions: dict file -> "", "ZLIB" or "GZIP".
    """

    def py_start(filename):
        name = filename.numpy().decode("utf-8")
        VERIFIER.start(name, compressions.get(name, ""))
        return filename

    @no_autograph
    def start(filename):
        out = tf.py_function(py_start, [filename], tf.string)
        out.set_shape([])
        return out

    return files_ds.map(start)
