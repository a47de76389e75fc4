"""The compression of record files, detected and handled in one place.

A record file is an uncompressed TFRecord file, or one compressed as a
whole with ZLIB or GZIP (what `tf.data.TFRecordDataset` reads with
`compression_type`). The compression is detected from a file's first
bytes: an uncompressed TFRecord starts with a length whose CRC follows it,
a GZIP file with 1f 8b, a ZLIB stream with a valid two-byte zlib header.
Only when none of these holds (a file corrupt from its first byte) does
the name decide ("ZLIB" or "GZIP" in the base name, else none).

No TensorFlow at import: the command lines check files with
`record_file_compression` before TensorFlow loads; `detect_compression`
(the readers', for any `tf.io.gfile` path) loads it when called.
"""

import os
import zlib

from epsilon_tf.data.records.framing import RECORD_OVERHEAD, is_tfrecord_header

# The compressions a record file may have ("" or None: none).
COMPRESSIONS = ("ZLIB", "GZIP")
_HEAD_BYTES = 1 << 16
_CHUNK = 8 << 20


def compression_option(compression):
    """A `compression` argument as "ZLIB", "GZIP" or None (no compression).

    Raises:
        ValueError: anything else than those, "" or "NONE".
    """
    if compression in (None, "", "NONE", "none"):
        return None
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"`compression` must be one of {COMPRESSIONS} or None. "
            f"Received: compression={compression!r}"
        )
    return compression


def is_zlib_header(head):
    return (
        len(head) >= 2
        and head[0] & 0x0F == 8
        and head[0] >> 4 <= 7
        and (head[0] * 256 + head[1]) % 31 == 0
    )


def compression_from_name(path):
    """ "ZLIB", "GZIP" or "" from a file's base name (ZLIB wins).

    Only a hint: `compression_from_bytes` reads the file's first bytes.
    """
    base = os.path.basename(os.fspath(path))
    if "ZLIB" in base:
        return "ZLIB"
    if "GZIP" in base:
        return "GZIP"
    return ""


def compression_from_bytes(path, head, size):
    """ "ZLIB", "GZIP" or "" from a record file's first bytes.

    Args:
        path: str. The file (for messages and the name fallback).
        head: bytes. Its first bytes (64 KiB is plenty).
        size: int. Its size in bytes.

    Raises:
        ValueError: the file is empty or holds no records.
    """
    if size == 0:
        raise ValueError(f"Record file {path} is empty (0 bytes)")
    if is_tfrecord_header(head):
        return ""
    if head[:2] == b"\x1f\x8b":
        found = "GZIP"
    elif is_zlib_header(head):
        found = "ZLIB"
    else:
        # Corrupt from its first byte: the name decides, the reader reports.
        return compression_from_name(path)
    inflater = zlib.decompressobj(31 if found == "GZIP" else 15)
    try:
        first = inflater.decompress(head, RECORD_OVERHEAD)
    except zlib.error:
        return found  # corrupt: the reader reports where
    if not first and inflater.eof:
        raise ValueError(
            f"Record file {path} holds no records (an empty {found} stream)"
        )
    return found


def _not_a_directory(path, isdir):
    if isdir(path):
        raise IsADirectoryError(
            f"{path} is a directory, not a record file (give the files, "
            f"e.g. {os.path.join(path, '*.tfrecords')})"
        )


def record_file_compression(path):
    """`compression_from_bytes` of a local file (dir, empty: errors)."""
    _not_a_directory(path, os.path.isdir)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    return compression_from_bytes(path, head, size)


_DETECTED = {}


def detect_compression(path):
    """`compression_from_bytes` of any `tf.io.gfile` path, cached.

    Cached by the file's size and modification time.

    Raises:
        IsADirectoryError / ValueError: a directory, an empty file or a
            file that holds no records, naming it.
    """
    import tensorflow as tf  # only for the readers, never at start-up

    path = os.fspath(path)
    _not_a_directory(path, tf.io.gfile.isdir)
    stat = tf.io.gfile.stat(path)
    key = (path, int(stat.length), int(stat.mtime_nsec))
    if key not in _DETECTED:
        head = b""
        if key[1]:
            with tf.io.gfile.GFile(path, "rb") as f:
                head = f.read(_HEAD_BYTES)
        _DETECTED[key] = compression_from_bytes(path, head, key[1])
    return _DETECTED[key]


def decompressed_chunks(f, compression, chunk_size=_CHUNK):
    """Yields the bytes of an open file, decompressed by `compression`.

    Args:
        f: a binary file object.
        compression: str. "" (none), "ZLIB" or "GZIP".
        chunk_size: int. Bytes read (and at most produced) per step.

    Yields:
        bytes.

    Raises:
        ValueError: the stream is corrupt or ends without its end marker.
    """
    if not compression:
        while True:
            chunk = f.read(chunk_size)
            if not chunk:
                return
            yield chunk
    inflater = zlib.decompressobj(31 if compression == "GZIP" else 15)
    offset = 0
    while not inflater.eof:
        chunk = f.read(chunk_size)
        if not chunk:
            raise ValueError(
                f"its {compression} stream is truncated: the file ends "
                f"after {offset} bytes without the end-of-stream marker"
            )
        buf = chunk
        try:
            while buf and not inflater.eof:
                out = inflater.decompress(buf, chunk_size)
                if out:
                    yield out
                buf = inflater.unconsumed_tail
        except zlib.error as e:
            raise ValueError(
                f"its {compression} stream is corrupt within compressed "
                f"bytes {offset}..{offset + len(chunk)} ({e})"
            ) from None
        offset += len(chunk)
