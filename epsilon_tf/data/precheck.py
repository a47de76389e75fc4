"""Checks of the data flags' files that need no TensorFlow.

The command lines run these before TensorFlow is imported (seconds) and
before anything is written: a glob that matches nothing, a directory where
a file is expected, an empty record file or one that holds no records, a
missing label file, a word-vector pickle that is malformed or asks for
code to run. Each is one error naming the flag and the file. The readers
check the same things again (for callers of the Python API) and everything
that needs the records themselves.

Remote paths (`gs://...`) are left to the readers.
"""

import glob
import os
import zlib

from epsilon_tf.data.readers.safe_pickle import load_pickle

# TFRecord framing: 8-byte length, 4-byte length CRC, data, 4-byte data CRC.
_RECORD_OVERHEAD = 16


def _local(path):
    return "://" not in str(path)


def expand_pattern(pattern, flag):
    """The files of a glob pattern, or of a comma-separated list of them.

    Raises:
        FileNotFoundError: a part matches no file.
        IsADirectoryError: a part names (or matches) a directory.
    """
    files = []
    for part in (p.strip() for p in str(pattern).split(",")):
        if not part:
            continue
        if not _local(part):
            files.append(part)
            continue
        matches = sorted(glob.glob(part))
        if not matches:
            raise FileNotFoundError(f"--{flag}: {part!r} matches no file")
        for match in matches:
            if os.path.isdir(match):
                raise IsADirectoryError(
                    f"--{flag}: {match} is a directory, not a feature file "
                    f"(give the files, e.g. {os.path.join(match, '*')})"
                )
        files.extend(matches)
    return files


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def masked_crc32c(data):
    """The masked CRC-32C that TFRecord framing stores."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def is_tfrecord_header(head):
    """True when `head` starts like an uncompressed TFRecord file."""
    if len(head) < 12:
        return False
    return masked_crc32c(head[:8]) == int.from_bytes(head[8:12], "little")


def is_zlib_header(head):
    return (
        len(head) >= 2
        and head[0] & 0x0F == 8
        and head[0] >> 4 <= 7
        and (head[0] * 256 + head[1]) % 31 == 0
    )


def compression_from_name(path):
    """ "ZLIB", "GZIP" or "" from a file's base name (ZLIB wins)."""
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
        first = inflater.decompress(head, _RECORD_OVERHEAD)
    except zlib.error:
        return found  # corrupt: the reader reports where
    if not first and inflater.eof:
        raise ValueError(
            f"Record file {path} holds no records (an empty {found} stream)"
        )
    return found


def record_file_compression(path):
    """`compression_from_bytes` of a local file (dir, empty: errors)."""
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"{path} is a directory, not a record file (give the files, "
            f"e.g. {os.path.join(path, '*.tfrecords')})"
        )
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return compression_from_bytes(path, head, size)


def _file(flag, path, what="file"):
    if not os.path.exists(path):
        raise FileNotFoundError(f"--{flag}: {what} not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"--{flag}: {path} is a directory, not a {what}"
        )


def _pickle(flag, path):
    _file(flag, path, "pickle file")
    load_pickle(path)


# The label files each release needs in --label_dir (release_sources).
_LABEL_FILES = {
    "nus_wide": ("TagList1k.txt", "Concepts81.txt"),
    "open_images": (
        "classes-trainable.txt", "unseen_labels.pkl", "top_400_unseen.csv",
        "class-descriptions.csv",
    ),
}
NUS_WIDE_VECTORS = "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300"


def check_data_config(cfg):
    """Checks the local files a `DataConfig` names; raises on the first.

    Only the release formats ("lesa", "biam") name files beyond a folder.
    """
    if cfg.data_format not in ("lesa", "biam") or cfg.dataset == "synthetic":
        return
    for flag in ("train_files", "test_files"):
        pattern = getattr(cfg, flag)
        if not pattern:
            continue
        for path in expand_pattern(pattern, flag):
            if not _local(path):
                continue
            if cfg.data_format == "lesa":
                try:
                    record_file_compression(path)
                except ValueError as e:
                    raise ValueError(f"--{flag}: {e}") from None
            else:
                _h5(flag, path)
    if cfg.label_dir and _local(cfg.label_dir):
        for name in _LABEL_FILES.get(cfg.dataset, ()):
            _file("label_dir", os.path.join(cfg.label_dir, name),
                  "label file")
    vectors = cfg.word_vectors
    if not vectors and cfg.dataset == "nus_wide" and cfg.label_dir:
        vectors = os.path.join(cfg.label_dir, NUS_WIDE_VECTORS)
        if not os.path.exists(vectors):
            return  # the reader names what is missing
    if vectors and _local(vectors):
        _pickle("word_vectors", vectors)
    if cfg.names_file and cfg.data_format == "biam":
        for split in ("train", "test"):
            if getattr(cfg, f"{split}_files"):
                path = cfg.names_file.replace("{split}", split)
                if _local(path):
                    _file("names_file", path, "pickle file")


def _h5(flag, path):
    import h5py  # only for the BiAM files, and not at start-up

    try:
        with h5py.File(path, "r"):
            pass
    except OSError as e:
        raise ValueError(
            f"--{flag}: {path} is not a readable HDF5 file ({e})"
        ) from None
