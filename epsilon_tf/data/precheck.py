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

import os

from epsilon_tf.data.readers.safe_pickle import load_pickle
from epsilon_tf.data.records.compression import record_file_compression
from epsilon_tf.data.records.files import expand_files, is_local


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
        for path in expand_files(pattern, flag, remote=False):
            if not is_local(path):
                continue
            if cfg.data_format == "lesa":
                try:
                    record_file_compression(path)
                except ValueError as e:
                    raise ValueError(f"--{flag}: {e}") from None
            else:
                _h5(flag, path)
    if cfg.label_dir and is_local(cfg.label_dir):
        for name in _LABEL_FILES.get(cfg.dataset, ()):
            _file("label_dir", os.path.join(cfg.label_dir, name),
                  "label file")
    vectors = cfg.word_vectors
    if not vectors and cfg.dataset == "nus_wide" and cfg.label_dir:
        vectors = os.path.join(cfg.label_dir, NUS_WIDE_VECTORS)
        if not os.path.exists(vectors):
            return  # the reader names what is missing
    if vectors and is_local(vectors):
        _pickle("word_vectors", vectors)
    if cfg.names_file and cfg.data_format == "biam":
        for split in ("train", "test"):
            if getattr(cfg, f"{split}_files"):
                path = cfg.names_file.replace("{split}", split)
                if is_local(path):
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
