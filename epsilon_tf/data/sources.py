"""Turns a `DataConfig` into a `DatasetSource`."""

import os

from epsilon_tf.data.catalog import DATASETS, EVAL_KS, FORMATS, WORLD_FAMILY
from epsilon_tf.data.readers.native_tfrecord import native_source
from epsilon_tf.data.release_sources import release_source
from epsilon_tf.data.worlds import family, nus_like
from epsilon_tf.data.worlds.synthetic import synthetic_source
from epsilon_tf.labels import LabelSpace


def make_source(data_config, progress=True):
    """The `DatasetSource` a `DataConfig` describes.

    - `dataset="synthetic"`: the built-in benchmark, written once under
      `cache_dir` (or read from `data_dir` when given).
    - `dataset="nus_like"`: the realistic built-in benchmark (NUS-WIDE's
      labels and GloVe vectors from `label_dir`, by default
      `../shared/data/nus_wide`; generated 196x512 features), written once
      under `cache_dir`.
    - `dataset` one of `WORLD_FAMILY` ("flickr_vgg_mild", ...): the other
      members of the family of release-shaped worlds
      (`epsilon_tf.data.worlds.family`), same label files, written once
      under `cache_dir`.
    - `data_format="native"`: the project's own TFRecords in `data_dir`,
      with the label space saved beside them (`label_space.json`).
    - `data_format="lesa"` / `"biam"`: the release files of NUS-WIDE or
      Open Images (see `epsilon_tf.data.release_sources`).
    """
    cfg = data_config
    if cfg.dataset not in DATASETS:
        raise ValueError(
            f"`dataset` must be one of {DATASETS}. "
            f"Received: dataset={cfg.dataset!r}"
        )
    if cfg.data_format not in FORMATS:
        raise ValueError(
            f"`data_format` must be one of {FORMATS}. "
            f"Received: data_format={cfg.data_format!r}"
        )
    if cfg.dataset == "synthetic" and cfg.data_dir is None:
        return synthetic_source(cfg.cache_dir, progress=progress)
    world = cfg.dataset == "nus_like" or cfg.dataset in WORLD_FAMILY
    if world and cfg.data_dir is None:
        label_dir = cfg.label_dir or nus_like.default_label_dir()
        if label_dir is None:
            raise ValueError(
                f"--dataset={cfg.dataset} needs --label_dir, a directory "
                "holding TagList1k.txt, Concepts81.txt and the GloVe pickle "
                f"{nus_like.LABEL_FILES[2]} (../shared/data/nus_wide was "
                "not found)"
            )
        return family.member_source(
            cfg.cache_dir, cfg.dataset, label_dir, progress=progress
        )
    if cfg.data_format == "native":
        if not cfg.data_dir:
            raise ValueError(
                "data_format=native needs `data_dir` (a directory written "
                "by the converter or the synthetic generator)"
            )
        if not os.path.isdir(cfg.data_dir):
            raise FileNotFoundError(
                f"`data_dir` does not exist: {cfg.data_dir}"
            )
        space = LabelSpace.load(cfg.data_dir)
        return native_source(cfg.data_dir, space, EVAL_KS[cfg.dataset])
    return release_source(cfg)
