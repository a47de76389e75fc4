"""Counting the examples of streamed release files, once, with a cache.

The LESA TFRecords and BiAM's Open Images HDF5 chunks do not say how many
images they hold, but the learning-rate schedule (warmup, then cosine
decay) and the progress output need the number of steps per epoch. The
count is taken with a cheap pass: TFRecord framing is walked without
parsing a record (each record is `uint64 length, uint32 crc, data, uint32
crc`; only the lengths are read, the data is skipped or, in a compressed
file, decompressed and dropped), and an HDF5 chunk's image names are
listed without reading a feature. Counts are cached in
`<cache_dir>/record_counts.json`, keyed by the file's absolute path, size
and modification time, so a resume or a rerun does not pay again.
"""

import json
import os
import struct
import sys
import threading
import time

from epsilon_tf.config import write_json
from epsilon_tf.data.records.compression import decompressed_chunks
from epsilon_tf.data.records.framing import HEADER_BYTES

CACHE_FILE = "record_counts.json"
_LOCK = threading.Lock()


def count_records_in_stream(chunks):
    """Counts TFRecord records in a byte stream by walking the framing.

    Args:
        chunks: iterable of bytes (the uncompressed record stream).

    Returns:
        `(count, complete)`: complete records, and whether the stream ends
        exactly at a record boundary.
    """
    count = 0
    skip = 0
    header = b""
    for chunk in chunks:
        pos, n = 0, len(chunk)
        while pos < n:
            if skip:
                take = min(skip, n - pos)
                skip -= take
                pos += take
                continue
            need = HEADER_BYTES - len(header)
            header += chunk[pos : pos + need]
            pos += min(need, n - pos)
            if len(header) == HEADER_BYTES:
                (length,) = struct.unpack("<Q", header[:8])
                skip = length + 4
                header = b""
                count += 1
    complete = skip == 0 and not header
    return (count if complete else count - (skip > 0)), complete


def _guarded(chunks, problems):
    """`chunks`, stopping (and noting why) where the stream is broken."""
    try:
        yield from chunks
    except ValueError as e:
        problems.append(str(e))


def count_tfrecord_file(path, compression, strict=False):
    """The number of complete records in one TFRecord file (framing only).

    Uncompressed files are walked with seeks, so only the 12-byte headers
    are read; compressed files are decompressed once. A file cut short or
    corrupt counts its complete records before the damage: the readers
    report the damage itself (file, record and what was expected) when
    they reach it, or skip it with `--skip_corrupt`.

    Args:
        path: str.
        compression: str. "", "ZLIB" or "GZIP".
        strict: bool. Raise instead on a damaged file. Defaults to False.

    Returns:
        int.

    Raises:
        ValueError: with `strict`, the file is cut short or its stream is
            corrupt.
    """
    problems = []
    with open(path, "rb") as f:
        if compression:
            count, complete = count_records_in_stream(
                _guarded(decompressed_chunks(f, compression), problems)
            )
        else:
            size = os.fstat(f.fileno()).st_size
            count, pos, complete = 0, 0, True
            while pos < size:
                header = f.read(HEADER_BYTES)
                if len(header) < HEADER_BYTES:
                    complete = False
                    break
                (length,) = struct.unpack("<Q", header[:8])
                pos += HEADER_BYTES + length + 4
                if pos > size:
                    complete = False
                    break
                f.seek(pos)
                count += 1
    if strict and (problems or not complete):
        why = problems[0] if problems else "the file is cut short"
        raise ValueError(f"{path}: {why} after {count} complete records")
    return count


def _key(path):
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def _load_cache(cache_path):
    try:
        with open(cache_path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cached_count(files, count_fn, cache_dir, kind, progress=True):
    """The total of `count_fn(path)` over `files`, cached per file.

    Args:
        files: sequence of str.
        count_fn: callable path -> int.
        cache_dir: str or None. Where `record_counts.json` lives (None:
            no cache).
        kind: str. What is counted, part of the cache key ("tfrecord",
            "biam_open_images").
        progress: bool. Print a line per file counted (cached files are
            silent).

    Returns:
        int.
    """
    cache_path = os.path.join(cache_dir, CACHE_FILE) if cache_dir else None
    cache = _load_cache(cache_path) if cache_path else {}
    total = 0
    changed = False
    for path in files:
        abspath, size, mtime = _key(path)
        entry = cache.get(f"{kind}:{abspath}")
        if (isinstance(entry, dict) and entry.get("size") == size
                and entry.get("mtime_ns") == mtime):
            total += int(entry["count"])
            continue
        start = time.time()
        n = int(count_fn(path))
        if progress:
            print(
                f"counted {n} examples in {path} ({size / 2**20:.0f} MiB, "
                f"{time.time() - start:.1f}s; cached in "
                f"{cache_path or 'memory only'})",
                file=sys.stdout,
                flush=True,
            )
        cache[f"{kind}:{abspath}"] = {
            "size": size, "mtime_ns": mtime, "count": n
        }
        changed = True
        total += n
    if changed and cache_path:
        with _LOCK:
            os.makedirs(cache_dir, exist_ok=True)
            merged = _load_cache(cache_path)
            merged.update(cache)
            write_json(cache_path, merged)
    return total
