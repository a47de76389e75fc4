"""`ScoreBuffer`: score and label rows gathered batch by batch.

An evaluation pass produces its scores one batch at a time; the full
matrix of a large test set (Open Images GZSL: 125,456 x 7,586, 3.8 GB of
float32) may not fit in RAM. `ScoreBuffer` keeps the rows in RAM within a
budget and spills them to `np.memmap` files beyond it, and hands back
arrays that `ranking_metrics.evaluate_scores` reads directly.
"""

import os
import shutil
import tempfile
import weakref

import numpy as np

from epsilon_tf.metrics.checks import (
    as_label_array,
    check_positive_int_or_none,
)


def _remove_paths(paths, directory):
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


class ScoreBuffer:
    """Accumulates score and label rows batch by batch, spilling to disk.

    Rows stay in RAM while the buffer (float32 scores + int8 labels) is
    within `memory_budget_bytes`; beyond it they move to `np.memmap` files
    in `spill_dir` and later batches are written there. When `num_images`
    is known the storage is preallocated (in RAM if it fits, else on disk);
    otherwise it grows (RAM: a list of batches; disk: files extended by
    doubling). `finalize()` returns the arrays (memmaps, read-only, when
    spilled), ready for `evaluate_scores`; `close()` deletes the files.

    Args:
        num_images: int or None. Expected number of rows, to preallocate.
            More rows are still accepted (the storage grows). Defaults to
            `None`.
        num_labels: int or None. Columns; taken from the first batch when
            `None`. Defaults to `None`.
        memory_budget_bytes: int. RAM allowed before spilling. Defaults to
            2 GiB.
        spill_dir: str or None. Directory for the memmap files. Defaults to
            `None` (a new `tempfile.mkdtemp()` directory, removed by
            `close()`).

    Example (a budget of 0 bytes spills the rows to disk at once):

    >>> import os
    >>> import numpy as np
    >>> from epsilon_tf.metrics import ScoreBuffer, evaluate_scores
    >>> batches = [
    ...     (np.array([[0.9, 0.1, 0.4], [0.2, 0.8, 0.6]]),
    ...      np.array([[1, -1, -1], [-1, -1, 1]])),
    ...     (np.array([[0.3, 0.7, 0.5]]), np.array([[1, 1, 0]])),
    ... ]
    >>> with ScoreBuffer(memory_budget_bytes=0) as buffer:
    ...     for scores, labels in batches:
    ...         buffer.append(scores, labels)
    ...     scores, labels = buffer.finalize()
    ...     result = evaluate_scores(scores, labels, ks=(1,))
    ...     paths = buffer.spill_paths
    ...     print(buffer.count, buffer.spilled, type(scores).__name__,
    ...           scores.dtype, labels.dtype)
    3 True memmap float32 int8
    >>> result["all"]["p@1"], result["all"]["r@1"], result["all"]["map"]
    (0.6666666666666666, 0.5, 0.8333333333333334)
    >>> len(paths), any(os.path.exists(path) for path in paths)
    (2, False)
    """

    def __init__(
        self,
        num_images=None,
        num_labels=None,
        memory_budget_bytes=2 * 2**30,
        spill_dir=None,
    ):
        self.num_images = check_positive_int_or_none(num_images, "num_images")
        self.num_labels = check_positive_int_or_none(num_labels, "num_labels")
        if (
            isinstance(memory_budget_bytes, (bool, np.bool_))
            or not isinstance(memory_budget_bytes, (int, np.integer))
            or memory_budget_bytes < 0
        ):
            raise ValueError(
                "`memory_budget_bytes` must be a non-negative integer. "
                f"Received: memory_budget_bytes={memory_budget_bytes!r}"
            )
        self.memory_budget_bytes = int(memory_budget_bytes)
        self.spill_dir = spill_dir
        self._count = 0
        self._chunks = []  # RAM, growing mode: [(scores, labels)].
        self._ram = None  # RAM, preallocated: (scores, labels).
        self._files = None  # Disk: [scores path, labels path].
        self._maps = None  # Disk: (scores memmap, labels memmap).
        self._capacity = 0
        self._own_dir = None
        self._final = None
        self._closed = False
        self._cleanup = None

    @property
    def count(self):
        """Rows appended so far."""
        return self._count

    @property
    def spilled(self):
        """Whether the rows live in memmap files."""
        return self._files is not None

    @property
    def spill_paths(self):
        """Paths of the memmap files (empty when not spilled)."""
        return list(self._files or [])

    def _row_bytes(self):
        return self.num_labels * (4 + 1)

    def _start(self):
        total = None
        if self.num_images is not None:
            total = self.num_images * self._row_bytes()
        if total is not None and total <= self.memory_budget_bytes:
            shape = (self.num_images, self.num_labels)
            self._ram = (
                np.empty(shape, np.float32),
                np.empty(shape, np.int8),
            )
            self._capacity = self.num_images
        elif total is not None:
            self._spill(self.num_images)

    def _spill(self, capacity):
        """Moves the rows to memmap files with room for `capacity` rows."""
        directory = self.spill_dir
        if directory is None:
            directory = self._own_dir = tempfile.mkdtemp(prefix="scores_")
        else:
            os.makedirs(directory, exist_ok=True)
        paths = []
        for name, suffix in (("scores", ".f32"), ("labels", ".i8")):
            fd, path = tempfile.mkstemp(
                prefix=f"score_buffer_{name}_", suffix=suffix, dir=directory
            )
            os.close(fd)
            paths.append(path)
        self._files = paths
        self._cleanup = weakref.finalize(
            self, _remove_paths, list(paths), self._own_dir
        )
        self._capacity = 0
        self._maps = None
        self._grow(max(capacity, 1))
        # Move what is in RAM.
        start = 0
        sources = list(self._chunks)
        if self._ram is not None:
            sources.append(
                (self._ram[0][: self._count], self._ram[1][: self._count])
            )
        for s, lab in sources:
            self._maps[0][start : start + len(s)] = s
            self._maps[1][start : start + len(s)] = lab
            start += len(s)
        self._chunks = []
        self._ram = None

    def _grow(self, capacity):
        """Resizes the memmap files to `capacity` rows."""
        if self._maps is not None:
            for m in self._maps:
                m.flush()
            self._maps = None
        itemsizes = (4, 1)
        for path, itemsize in zip(self._files, itemsizes, strict=True):
            os.truncate(path, capacity * self.num_labels * itemsize)
        shape = (capacity, self.num_labels)
        self._maps = (
            np.memmap(self._files[0], np.float32, "r+", shape=shape),
            np.memmap(self._files[1], np.int8, "r+", shape=shape),
        )
        self._capacity = capacity

    def _keep(self, scores_batch, labels_batch, end):
        """Keeps a copy of the batch as an in-memory chunk (rows up to
        `end`)."""
        self._chunks.append((
            scores_batch.astype(np.float32, copy=True),
            labels_batch.astype(np.int8, copy=True),
        ))
        self._count = end

    def append(self, scores_batch, labels_batch):
        """Adds rows: `scores_batch` and `labels_batch`, both [b, num_labels].

        Args:
            scores_batch: float array [b, num_labels]. Stored as float32.
            labels_batch: array [b, num_labels] with values in {-1, 0, +1}.
                Stored as int8.
        """
        if self._closed or self._final is not None:
            raise RuntimeError(
                "ScoreBuffer.append() called after finalize() or close()"
            )
        scores_batch = np.asarray(scores_batch)
        if scores_batch.ndim != 2:
            raise ValueError(
                "`scores_batch` must be a 2-D array [batch, num_labels]. "
                f"Received: scores_batch.shape={scores_batch.shape}"
            )
        if self.num_labels is None:
            if scores_batch.shape[1] == 0:
                raise ValueError(
                    "`scores_batch` must have at least one label. Received: "
                    f"scores_batch.shape={scores_batch.shape}"
                )
            self.num_labels = int(scores_batch.shape[1])
        if scores_batch.shape[1] != self.num_labels:
            raise ValueError(
                f"`scores_batch` must have {self.num_labels} columns. "
                f"Received: scores_batch.shape={scores_batch.shape}"
            )
        if scores_batch.dtype.kind not in "biuf":
            raise ValueError(
                "`scores_batch` must be real-valued. Received: "
                f"scores_batch.dtype={scores_batch.dtype}"
            )
        labels_batch = as_label_array(
            labels_batch, scores_batch.shape, "labels_batch"
        )
        b = scores_batch.shape[0]
        if b == 0:
            return
        if self._count == 0 and self._ram is None and self._files is None:
            self._start()
        end = self._count + b
        if self._files is None and self._ram is None:
            if end * self._row_bytes() > self.memory_budget_bytes:
                self._spill(max(2 * end, self.num_images or 0))
            else:
                self._keep(scores_batch, labels_batch, end)
                return
        if self._ram is not None and end > self._capacity:
            # More rows than announced: fall back to growing storage.
            if end * self._row_bytes() > self.memory_budget_bytes:
                self._spill(2 * end)
            else:
                s, lab = self._ram
                self._chunks = [(s[: self._count], lab[: self._count])]
                self._ram = None
                self._keep(scores_batch, labels_batch, end)
                return
        if self._files is not None and end > self._capacity:
            self._grow(max(2 * self._capacity, end))
        target = self._ram if self._ram is not None else self._maps
        target[0][self._count : end] = scores_batch
        target[1][self._count : end] = labels_batch
        self._count = end

    def finalize(self):
        """Returns `(scores, labels)`: float32 and int8, [count, num_labels].

        Memmaps (read-only) when spilled, in-memory arrays otherwise. Can be
        called more than once; no more rows can be appended afterwards.
        """
        if self._closed:
            raise RuntimeError("ScoreBuffer.finalize() called after close()")
        if self._final is not None:
            return self._final
        if self._count == 0:
            raise ValueError("ScoreBuffer.finalize(): no rows were appended")
        n, k = self._count, self.num_labels
        if self._files is not None:
            for m in self._maps:
                m.flush()
            self._maps = None
            for path, itemsize in zip(self._files, (4, 1), strict=True):
                os.truncate(path, n * k * itemsize)
            self._final = (
                np.memmap(self._files[0], np.float32, "r", shape=(n, k)),
                np.memmap(self._files[1], np.int8, "r", shape=(n, k)),
            )
        elif self._ram is not None:
            s, lab = self._ram
            self._final = (s[:n], lab[:n])
            self._ram = None
        else:
            scores = np.empty((n, k), np.float32)
            labels = np.empty((n, k), np.int8)
            start = 0
            while self._chunks:
                s, lab = self._chunks.pop(0)
                scores[start : start + len(s)] = s
                labels[start : start + len(s)] = lab
                start += len(s)
            self._final = (scores, labels)
        return self._final

    def close(self):
        """Releases the rows and deletes the spill files (and own dir)."""
        self._closed = True
        self._chunks = []
        self._ram = None
        self._maps = None
        self._final = None
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False
