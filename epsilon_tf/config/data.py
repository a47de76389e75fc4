"""Which data to read (`DataConfig`) and how to evaluate (`EvalConfig`)."""

import dataclasses
import os
from typing import Optional

from epsilon_tf.config.presets import EVAL_KS
from epsilon_tf.config.settings import (
    check_fields,
    parse_ks,
    parse_shape,
    setting,
    show_ks,
    show_shape,
)

DATASETS = tuple(EVAL_KS)
FORMATS = ("native", "lesa", "biam")
AP_VARIANTS = ("lesa", "biam_openimages")


@dataclasses.dataclass
class DataConfig:
    """Which data to read.

    Args:
        dataset: "synthetic", "nus_like" (the built-in benchmarks),
            "nus_wide" or "open_images"; or another member of the family
            of worlds (docs/worlds.md): "flickr_vgg_mild",
            "resnet_scenes", "web_crowded", "vit_tokens", "product_deep".
        data_format: "native", "lesa" or "biam".
        cache_dir: where the built-in benchmark is written.
        data_dir: directory of native-format data.
        train_files, test_files: glob patterns of release files.
        label_dir: directory of the release's label files.
        word_vectors: path of the word-vector pickle.
        feature_shape: (num_regions, channels) of the stored features.
        skip_corrupt: skip corrupt records (and report how many).
        names_file: BiAM NUS-WIDE: pickle of {'img_names': [...]} (per
            split; a '{split}' in the path is replaced by train/test).
    """

    dataset: str = setting(
        "synthetic",
        "Benchmark to use (synthetic and nus_like are built in).",
        choices=DATASETS,
    )
    data_format: str = setting(
        "native", "Layout of the feature files.", choices=FORMATS
    )
    cache_dir: str = setting(
        "cache", "Where the built-in benchmark is written."
    )
    data_dir: Optional[str] = setting(
        None, "Directory of native-format data (and its labels)."
    )
    train_files: Optional[str] = setting(
        None, "Glob of the release's training feature files."
    )
    test_files: Optional[str] = setting(
        None, "Glob of the release's test feature files."
    )
    label_dir: Optional[str] = setting(
        None,
        "Directory of the release's label files (TagList1k.txt, "
        "Concepts81.txt / classes-trainable.txt, unseen_labels.pkl, "
        "top_400_unseen.csv, class-descriptions.csv).",
    )
    word_vectors: Optional[str] = setting(
        None, "Word-vector pickle ([seen, unseen] arrays)."
    )
    feature_shape: tuple = setting(
        (196, 512), "Stored feature shape, REGIONSxCHANNELS.",
        parse=parse_shape, show=show_shape,
    )
    skip_corrupt: bool = setting(
        False,
        "Skip corrupt records (their number is reported) instead of failing.",
    )
    names_file: Optional[str] = setting(
        None,
        "BiAM NUS-WIDE: pickle of {'img_names': [...]} (per split; a "
        "'{split}' in the path is replaced by train/test).",
    )

    def __post_init__(self):
        check_fields(self)


# The metrics at each K of P/R/F1@K. `metric_columns` is the one list of
# metric names: the validation metric a run selects on is checked against
# it here, and `metrics.columns` builds every results table from it.
AT_K_METRICS = ("p", "r", "f1")


def metric_columns(ks):
    """`map`, then `p@K`, `r@K`, `f1@K` for each K (the tables' order)."""
    return ["map"] + [f"{m}@{k}" for k in ks for m in AT_K_METRICS]


@dataclasses.dataclass
class EvalConfig:
    """How the test split is scored (train.py; eval.py takes `ks` and
    `ap_variant`).

    Args:
        ks: the K of P/R/F1@K (None: the dataset's, `presets.EVAL_KS`).
        ap_variant: "lesa" (the standard protocol) or "biam_openimages"
            (BiAM's Open Images variant, not the standard number).
        baseline: also fit and report the ESZSL baseline.
    """

    ks: Optional[tuple] = setting(
        None,
        "Comma-separated K of P/R/F1@K (default: 3,5 for NUS-WIDE and the "
        "synthetic benchmark, 10,20 for Open Images).",
        flag="k", parse=parse_ks, show=show_ks,
    )
    ap_variant: str = setting(
        "lesa",
        "Evaluation semantics. 'lesa' is the standard protocol; "
        "'biam_openimages' is BiAM's Open Images variant (not the standard "
        "number): images without a positive dropped, mAP = BiAM's pooled "
        "AP.",
        choices=AP_VARIANTS,
    )
    baseline: bool = setting(
        True, "Also fit and report the ESZSL baseline."
    )

    def __post_init__(self):
        if self.ks is not None:
            self.ks = tuple(self.ks)
            parse_ks(show_ks(self.ks))  # the --k check
        check_fields(self)

    def eval_ks(self, dataset):
        """`ks`, or the K `dataset` is reported at."""
        return self.ks or EVAL_KS[dataset]


_DATA_PATH_FIELDS = (
    "cache_dir", "data_dir", "train_files", "test_files", "label_dir",
    "word_vectors", "names_file",
)


def recorded_data_config(data_config):
    """`data_config` with absolute paths, as a run records it.

    Each comma-separated part of a path field is made absolute (glob
    characters and a `{split}` placeholder are kept), so the record means
    the same files from any working directory.
    """
    changes = {}
    for name in _DATA_PATH_FIELDS:
        value = getattr(data_config, name)
        if value:
            changes[name] = ",".join(
                os.path.abspath(part.strip()) if part.strip() else part
                for part in str(value).split(",")
            )
    return dataclasses.replace(data_config, **changes)
