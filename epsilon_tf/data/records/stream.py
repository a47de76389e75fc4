"""Record streams of TFRecord files, with the file and record named.

The machinery shared by the TFRecord readers (`readers.native_tfrecord`,
`readers.lesa_tfrecord`): per-file `TFRecordDataset`s, interleaved, whose
framing errors are caught per file and turned into an error (or, with
`skip_corrupt`, a logged and counted skip in a `SkipReport`) that names the
file and the record index; per-record checks of raw-bytes features with
the same kind of message; and the decoding of fixed-size raw features.
"""

import logging
import os
import threading

import numpy as np
import tensorflow as tf

from epsilon_tf.data.records.checks import NON_FINITE_MESSAGE, checked_map
from epsilon_tf.data.records.framing import RECORD_OVERHEAD
from epsilon_tf.data.records.half_bits import float16_bits_to_float32

_READ_BUFFER = 4 << 20
_MAX_CYCLE = 8

logger = logging.getLogger(__name__)
# The dataset functions below use explicit tf.cond: skip AutoGraph.
no_autograph = tf.autograph.experimental.do_not_convert


class SkipReport:
    """Counts what a reader built with `skip_corrupt=True` dropped.

    Every skip is logged once as a warning (with the running totals) on the
    `epsilon_tf.data` loggers. A skip is identified by its file and record
    index, so a bad record met again on a later pass (the next epoch, the
    validation pass, the baseline's pass) is not counted again: the counts
    are those of the data, whatever the number of passes.

    Args:
        max_messages: int. How many skip messages to keep in `messages`.
            Defaults to 100.
    """

    def __init__(self, max_messages=100):
        self.max_messages = max_messages
        self.bad_records = 0
        self.corrupt_files = 0
        self.messages = []
        self._seen = set()
        self._files = {}
        self._lock = threading.Lock()

    @property
    def total(self):
        """Skips so far: bad records plus corrupt files."""
        return self.bad_records + self.corrupt_files

    def add(self, kind, message, file=None, index=None):
        """Records one skip; `kind` is "record" or "file".

        Args:
            kind: str. "record" (one bad record) or "file" (a corrupt or
                truncated file whose rest is unreadable).
            message: str. What was wrong.
            file: str or None. The file, for the per-file summary and to
                count each skip once.
            index: int or None. The record index (for a "file" skip: the
                number of records that could be read).

        Returns:
            True when the skip is new (counted), False for a repeat.
        """
        message = message.strip()
        key = None if file is None else (kind, file, index)
        with self._lock:
            if key is not None:
                if key in self._seen:
                    return False
                self._seen.add(key)
            if kind == "file":
                self.corrupt_files += 1
            else:
                self.bad_records += 1
            if file is not None:
                entry = self._files.setdefault(file, {
                    "bad_records": 0, "records": [], "corrupt": False,
                    "readable_records": None,
                })
                if kind == "file":
                    entry["corrupt"] = True
                    entry["readable_records"] = index
                else:
                    entry["bad_records"] += 1
                    if len(entry["records"]) < self.max_messages:
                        entry["records"].append(index)
                        entry["records"].sort()
            if len(self.messages) < self.max_messages:
                self.messages.append(message)
            totals = (self.bad_records, self.corrupt_files)
        logger.warning(
            "Skipped (skip_corrupt=True): %s [so far: %d bad records "
            "skipped, %d corrupt/truncated files cut short]",
            message,
            *totals,
        )
        return True

    def by_file(self):
        """`{file: {"bad_records", "records", "corrupt",
        "readable_records"}}` of the files with skips."""
        with self._lock:
            return {
                f: dict(e, records=list(e["records"]))
                for f, e in self._files.items()
            }

    def __repr__(self):
        return (
            f"SkipReport(bad_records={self.bad_records}, "
            f"corrupt_files={self.corrupt_files})"
        )


def _as_str(x):
    if isinstance(x, tf.Tensor):
        x = x.numpy()
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return str(x)


def text(*parts):
    """Joins Python strings and string/number tensors into one string.

    Unlike `tf.strings.format`, string tensors are not quoted.
    """
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(tf.constant(part))
        elif part.dtype == tf.string:
            out.append(part)
        else:
            out.append(tf.strings.as_string(part))
    return tf.strings.join(out)


def record_stream(files_ds, compression, num_files):
    """Per-file record streams, interleaved, with an end marker per file.

    Each element is a dict: `file` (tf.string), `index` (int64, the record's
    position in its file), `record` (serialized bytes), `end` (bool; True
    for the one marker element that follows each file's records) and
    `stream_bytes` (int64; for the marker, the uncompressed bytes read from
    the file, framing included). A framing/CRC/decompression error ends a
    file's stream early (`ignore_errors`); the marker then lets
    `check_stream_end` compare what was read with what the file holds.

    Args:
        files_ds: `tf.data.Dataset` of file names.
        compression: str or callable. "ZLIB", "GZIP", "" or a function of
            the file-name tensor returning one of them.
        num_files: int. Number of files (sets the interleave cycle).
    """

    @no_autograph
    def per_file(filename):
        comp = compression(filename) if callable(compression) else compression
        recs = tf.data.TFRecordDataset(
            filename, compression_type=comp, buffer_size=_READ_BUFFER
        )
        recs = recs.ignore_errors(log_warning=True)
        recs = recs.map(no_autograph(lambda r: (r, tf.constant(False))))
        end = tf.data.Dataset.from_tensors(
            (tf.constant(b"", tf.string), tf.constant(True))
        )

        @no_autograph
        def step(state, elem):
            count, nbytes = state
            record, is_end = elem
            size = tf.cast(tf.strings.length(record), tf.int64)
            new_count = tf.where(is_end, count, count + 1)
            new_bytes = tf.where(
                is_end, nbytes, nbytes + size + RECORD_OVERHEAD
            )
            out = {
                "file": filename,
                "index": count,
                "record": record,
                "end": is_end,
                "stream_bytes": new_bytes,
            }
            return (new_count, new_bytes), out

        zero = tf.constant(0, tf.int64)
        return recs.concatenate(end).scan((zero, zero), step)

    return files_ds.interleave(
        per_file,
        cycle_length=max(1, min(num_files, _MAX_CYCLE)),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _report_unless(ok, report, kind, message_fn, file=None, index=None):
    """An op: when `ok` is False, adds `message_fn()` to `report` as `kind`.

    `file` and `index` (tensors) identify the skip, so that it is counted
    once however often the data is read. Returns a bool tensor (True) to
    depend on.
    """

    def log_skip():
        def py_report(msg, *where):
            if report is not None:
                name = _as_str(where[0]) if where else None
                at = int(where[1].numpy()) if len(where) > 1 else None
                report.add(kind, _as_str(msg), file=name, index=at)
            return np.bool_(True)

        where = [] if file is None else [file, index]
        return tf.py_function(py_report, [message_fn(), *where], tf.bool)

    return tf.cond(ok, lambda: tf.constant(True), log_skip)


def check_stream_end(
    stream, expectation, skip_corrupt, report, hint, compression=""
):
    """Checks each file's end marker against what the file should hold.

    Args:
        stream: dataset from `record_stream`.
        expectation: callable `(file: str, compression: str) -> (
            expected_stream_bytes or -1, expected_records or -1, problem)`
            run in Python once per file (a non-empty `problem` marks the
            file as bad whatever the counts).
        skip_corrupt: bool. Log and count instead of raising.
        report: `SkipReport` or None.
        hint: str. Appended to the error message.
        compression: str or callable of the file tensor.

    Returns:
        The stream without the end markers.
    """

    def py_expect(file, comp):
        expected_bytes, expected_records, problem = expectation(
            _as_str(file), _as_str(comp)
        )
        problem = f"{problem.strip()} " if problem.strip() else ""
        return (
            np.int64(expected_bytes),
            np.int64(expected_records),
            problem.encode("utf-8"),
        )

    def on_end(elem):
        comp = (
            compression(elem["file"]) if callable(compression) else compression
        )
        exp_bytes, exp_records, problem = tf.py_function(
            py_expect,
            [elem["file"], tf.convert_to_tensor(comp, tf.string)],
            [tf.int64, tf.int64, tf.string],
        )
        n = elem["index"]
        got = elem["stream_bytes"]
        ok = tf.logical_and(
            tf.equal(problem, ""),
            tf.logical_and(
                tf.logical_or(exp_bytes < 0, tf.equal(got, exp_bytes)),
                tf.logical_or(exp_records < 0, tf.equal(n, exp_records)),
            ),
        )

        def message():
            of_records = tf.where(
                exp_records >= 0,
                text(" of the ", exp_records, " it holds"),
                "",
            )
            of_bytes = tf.where(
                exp_bytes >= 0,
                text(" of ", exp_bytes),
                "",
            )
            return text(
                "Corrupt or truncated record file ",
                elem["file"],
                ": only ",
                n,
                " records could be read",
                of_records,
                " (",
                got,
                of_bytes,
                " bytes of its uncompressed record stream); record index ",
                n,
                " and everything after it in the file is unreadable. ",
                problem,
                hint,
            )

        if skip_corrupt:
            done = _report_unless(
                ok, report, "file", message, elem["file"], n
            )
            with tf.control_dependencies([done]):
                return tf.identity(elem["end"])
        assert_op = tf.debugging.Assert(ok, [message()])
        with tf.control_dependencies([assert_op]):
            return tf.identity(elem["end"])

    @no_autograph
    def check(elem):
        is_end = tf.cond(elem["end"], lambda: on_end(elem), lambda: False)
        return dict(elem, end=is_end)

    stream = checked_map(stream, check)
    return stream.filter(no_autograph(lambda e: tf.logical_not(e["end"])))


def byte_length_check(elem, value, key, expected_bytes, description):
    """(ok, message_fn) for a raw-bytes feature of fixed length."""
    length = tf.strings.length(value)
    ok = tf.equal(length, expected_bytes)

    def message():
        found = tf.where(
            tf.equal(length, 0),
            f"key `{key}` is missing (or empty)",
            text(f"key `{key}` has ", length, " bytes"),
        )
        return text(
            "Bad record in ",
            elem["file"],
            " (record index ",
            elem["index"],
            "): ",
            found,
            f", expected {int(expected_bytes)} bytes ({description})",
        )

    return ok, message


def present_check(elem, value, key, what):
    """(ok, message_fn): a bytes feature that must not be missing or empty."""
    ok = tf.greater(tf.strings.length(value), 0)

    def message():
        return text(
            "Bad record in ",
            elem["file"],
            " (record index ",
            elem["index"],
            f"): key `{key}` is missing (or empty); every record needs "
            f"{what}",
        )

    return ok, message


def label_values_check(elem, values, key):
    """(ok, message_fn): every value of `values` is -1, 0 or +1."""
    good = tf.logical_or(tf.equal(values, 0.0), tf.equal(tf.abs(values), 1.0))
    ok = tf.reduce_all(good)

    def message():
        first = tf.argmin(tf.cast(good, tf.int32), output_type=tf.int64)
        return text(
            "Bad record in ",
            elem["file"],
            " (record index ",
            elem["index"],
            f"): key `{key}` holds ",
            tf.gather(values, first),
            " at position ",
            first,
            "; labels must be -1, 0 or +1",
        )

    return ok, message


def apply_record_checks(elem, checks, skip_corrupt, report):
    """Asserts (or, with `skip_corrupt`, reports) the first failing check.

    Args:
        elem: the stream element (for `file` / `index`).
        checks: list of `(ok, message_fn)`.
        skip_corrupt: bool.
        report: `SkipReport` or None.

    Returns:
        `(keep, deps)`: a bool tensor (always True unless skipping) and a
        list of ops the decoded outputs must depend on.
    """
    oks = tf.stack([ok for ok, _ in checks])
    all_ok = tf.reduce_all(oks)

    def first_message():
        branches = [(tf.logical_not(ok), fn) for ok, fn in checks]
        return tf.case(branches, default=lambda: tf.constant(""))

    if skip_corrupt:
        done = _report_unless(
            all_ok, report, "record", first_message, elem["file"],
            elem["index"],
        )
        return all_ok, [done]
    assert_op = tf.debugging.Assert(
        all_ok, [tf.cond(all_ok, lambda: tf.constant(""), first_message)]
    )
    return tf.constant(True), [assert_op]


def finish_examples(ds, skip_corrupt):
    """Drops the records flagged by `apply_record_checks` when skipping."""
    if not skip_corrupt:
        return ds
    ds = ds.filter(no_autograph(lambda example, keep: keep))
    return ds.map(
        no_autograph(lambda example, keep: example),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def assert_finite_features(elem, features, image_id, keep):
    """`features`, after a check that they are finite.

    The failure names the file, the record's index in that file and the
    image id (the pipeline's own check, `pipeline.check_features`, knows
    only the position in the split's stream). A well-formed record with
    NaN/Inf features fails with or without `skip_corrupt`, as with the
    pipeline's check; a malformed one that `skip_corrupt` drops (`keep`
    False, see `apply_record_checks`) is not checked.
    """
    finite = tf.logical_or(
        tf.reduce_all(tf.math.is_finite(features)), tf.logical_not(keep)
    )

    def message():
        return text(
            NON_FINITE_MESSAGE + " record ",
            elem["index"],
            " of ",
            elem["file"],
            " (image_id ",
            image_id,
            "); the features must be finite",
        )

    check = tf.debugging.Assert(
        finite, [tf.cond(finite, lambda: tf.constant(""), message)]
    )
    with tf.control_dependencies([check]):
        return tf.identity(features)


def decode_fixed(value, dtype, num_bytes, shape):
    """Decodes raw little-endian bytes (zero-padded / cut to `num_bytes`).

    float16 values come back as float32, exactly, one of two ways
    (`half_to_float32`).
    """
    # The padded decoder has no float16 kernel: decode the bits as uint16.
    raw_dtype = tf.uint16 if dtype == tf.float16 else dtype
    out = tf.io.decode_raw(
        value, raw_dtype, little_endian=True, fixed_length=int(num_bytes)
    )
    if raw_dtype != dtype:
        out = half_to_float32(out)
    return tf.reshape(out, shape)


def half_to_float32(bits):
    """float32 values of float16 bit patterns (uint16), exactly.

    A DT_HALF tensor makes TensorFlow's oneDNN graph pass log `E...
    util.cc:131] oneDNN supports DT_HALF only on platforms with AVX-512
    ...` on CPUs without AVX-512 FP16, an error-level C++ line. Where
    such lines can show (`TF_CPP_MIN_LOG_LEVEL` below 3: a user who asked
    for TensorFlow's errors), the bits are converted with integer ops
    (`half_bits`: no DT_HALF tensor); otherwise (every command line's
    default, see `cli.common`) by the native cast, 2.4x faster per record
    on a 2-core AMD EPYC (0.26 against 0.71 ms at 196x512), which is 20%
    of a training epoch on float16 data. Both give the same values for all
    65,536 patterns (`tests/test_own_images.py`).
    """
    if _cpp_errors_shown():
        return float16_bits_to_float32(bits)
    return tf.cast(tf.bitcast(bits, tf.float16), tf.float32)


def _cpp_errors_shown():
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) < 3
    except ValueError:
        return True


def file_stat(path):
    """`(size, mtime_nsec)` of a file, via `tf.io.gfile`."""
    st = tf.io.gfile.stat(path)
    return int(st.length), int(st.mtime_nsec)
