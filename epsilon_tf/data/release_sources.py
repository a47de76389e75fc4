"""`DatasetSource`s over the LESA and BiAM releases (docs/design.md §3)."""

import functools
import os

from epsilon_tf.data.base import DatasetSource
from epsilon_tf.data.catalog import EVAL_KS
from epsilon_tf.data.readers import label_files
from epsilon_tf.data.readers.lesa_tfrecord import (
    lesa_nus_wide_split,
    lesa_open_images_split,
)
from epsilon_tf.data.records import record_count
from epsilon_tf.data.records.compression import detect_compression
from epsilon_tf.data.records.files import expand_files
from epsilon_tf.errors import DiskFullError

NUS_WIDE_FILES = {
    "tags": "TagList1k.txt",
    "concepts": "Concepts81.txt",
    "vectors": "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300",
}
OPEN_IMAGES_FILES = {
    "trainable": "classes-trainable.txt",
    "unseen": "unseen_labels.pkl",
    "top": "top_400_unseen.csv",
    "descriptions": "class-descriptions.csv",
}


def _label_file(cfg, name):
    if not cfg.label_dir:
        raise ValueError(
            f"--dataset={cfg.dataset} needs --label_dir, the directory of "
            f"the release's label files (it must hold {name})"
        )
    path = os.path.join(cfg.label_dir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Label file not found: {path} (expected in --label_dir)"
        )
    return path


def _word_vectors(cfg, default_name=None):
    if cfg.word_vectors:
        if not os.path.exists(cfg.word_vectors):
            raise FileNotFoundError(
                f"Word-vector file not found: {cfg.word_vectors}"
            )
        return cfg.word_vectors
    if default_name:
        return _label_file(cfg, default_name)
    raise ValueError(
        f"--dataset={cfg.dataset} needs --word_vectors: a pickle of "
        "[seen (K_seen, E), unseen (K_unseen, E)] arrays (the releases do "
        "not ship Open Images vectors)"
    )


def _biam_hdf5():
    """The BiAM reader module, imported (with h5py) only when BiAM files
    are read."""
    from epsilon_tf.data.readers import biam_hdf5

    return biam_hdf5


def _nus_wide(cfg, shape):
    tags = _label_file(cfg, NUS_WIDE_FILES["tags"])
    concepts = _label_file(cfg, NUS_WIDE_FILES["concepts"])
    space = label_files.nus_wide_label_space(
        tags, concepts, _word_vectors(cfg, NUS_WIDE_FILES["vectors"])
    )
    splits = {}
    if cfg.data_format == "lesa":
        seen_tags = label_files.nus_wide_seen_tag_indices(tags, concepts)
        num_tags = len(label_files.read_lines(tags))
        for split, pattern in (("train", cfg.train_files),
                               ("test", cfg.test_files)):
            if pattern:
                splits[split] = lesa_nus_wide_split(
                    expand_files(pattern, f"{split}_files"), split, space,
                    seen_tags, feature_shape=shape,
                    skip_corrupt=cfg.skip_corrupt, num_tags=num_tags,
                )
    else:
        for split, pattern in (("train", cfg.train_files),
                               ("test", cfg.test_files)):
            if not pattern:
                continue
            files = expand_files(pattern, f"{split}_files")
            if len(files) != 1:
                raise ValueError(
                    f"--{split}_files must name one BiAM NUS-WIDE .h5 file. "
                    f"Received {len(files)} matches of {pattern!r}"
                )
            if not cfg.names_file:
                raise ValueError(
                    "--data_format=biam with --dataset=nus_wide needs "
                    "--names_file, the pickled {'img_names': [...]} list "
                    "('{split}' in it is replaced by train/test)"
                )
            names = cfg.names_file.replace("{split}", split)
            splits[split] = _biam_hdf5().biam_nus_wide_split(
                files[0], names, split, space, feature_shape=shape,
                skip_corrupt=cfg.skip_corrupt,
            )
    return space, splits


def _open_images(cfg, shape):
    space, meta = label_files.open_images_label_space(
        *(_label_file(cfg, OPEN_IMAGES_FILES[k])
          for k in ("trainable", "unseen", "top", "descriptions")),
        _word_vectors(cfg),
        return_metadata=True,
    )
    top = meta.top_unseen_indices
    num_unseen = len(meta.all_unseen_mids)
    splits = {}
    for split, pattern in (("train", cfg.train_files),
                           ("test", cfg.test_files)):
        if not pattern:
            continue
        files = expand_files(pattern, f"{split}_files")
        if cfg.data_format == "lesa":
            splits[split] = lesa_open_images_split(
                files, split, space, top, feature_shape=shape,
                skip_corrupt=cfg.skip_corrupt, num_unseen_total=num_unseen,
            )
        else:
            splits[split] = _biam_hdf5().biam_open_images_split(
                files, split, space, top, feature_shape=shape,
                num_unseen_total=num_unseen, skip_corrupt=cfg.skip_corrupt,
            )
    return space, splits


def _count_examples(cfg, files):
    """Examples in a LESA or BiAM Open Images split (cached per file).

    None when a file is damaged and `skip_corrupt` is off: the reader then
    stops at the damage with the file, the record and what it expected
    (with `skip_corrupt`, a damaged file counts its complete records).
    """
    if cfg.data_format == "lesa":
        def count(path):
            return record_count.count_tfrecord_file(
                path, detect_compression(path),
                strict=not cfg.skip_corrupt,
            )

        kind = "tfrecord" if cfg.skip_corrupt else "tfrecord_strict"
    else:
        count = _biam_hdf5().count_open_images_chunk
        kind = "biam_open_images"
    try:
        return record_count.cached_count(files, count, cfg.cache_dir, kind)
    except DiskFullError:
        raise  # the cache could not be written: the run would not be either
    except (ValueError, KeyError, OSError):
        return None


def release_source(data_config):
    """The `DatasetSource` of a release's files, as `DataConfig` describes.

    `--train_files`/`--test_files` are glob patterns; either may be left
    out (eval.py needs only the test split). Label files are looked up in
    `--label_dir` under the release's names (`NUS_WIDE_FILES`,
    `OPEN_IMAGES_FILES`).
    """
    cfg = data_config
    if cfg.dataset not in ("nus_wide", "open_images"):
        raise ValueError(
            f"--data_format={cfg.data_format} reads the nus_wide and "
            f"open_images releases. Received: --dataset={cfg.dataset}"
        )
    if not (cfg.train_files or cfg.test_files):
        raise ValueError(
            f"--data_format={cfg.data_format} needs --train_files and/or "
            "--test_files (glob patterns of the release's feature files)"
        )
    shape = tuple(cfg.feature_shape)
    build = _nus_wide if cfg.dataset == "nus_wide" else _open_images
    space, splits = build(cfg, shape)
    for reader in splits.values():
        if reader.num_examples is None:
            reader.counter = functools.partial(
                _count_examples, cfg, reader.files
            )
    return DatasetSource(
        name=cfg.dataset,
        label_space=space,
        feature_shape=shape,
        splits=splits,
        eval_ks=EVAL_KS[cfg.dataset],
    )
