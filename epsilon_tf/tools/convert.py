"""Converts a split of the LESA or BiAM release to the native format.

The command line of `epsilon_tf.data.convert.convert_split` (one split
per call):

    python -m epsilon_tf.tools.convert --format=lesa_nus_wide \\
        --inputs='TFRecords/NUS_WIDE_Train_full_feature_ZLIB.tfrecords' \\
        --split=train --label_dir=../shared/data/nus_wide --out=feats/nus

Formats: lesa_nus_wide, lesa_open_images, biam_nus_wide (needs
`--names_pickle`), biam_open_images. NUS-WIDE label files are read from
`--label_dir` (TagList1k.txt, Concepts81.txt and the word-vector pickle);
Open Images ones from `--label_dir` (classes-trainable.txt,
unseen_labels.pkl, top_400_unseen.csv, class-descriptions.csv) plus
`--word_vectors`. The label space is saved beside the shards, so
`train.py --data_format=native --data_dir=OUT` reads them.
"""

import argparse
import sys

from epsilon_tf.cli import common
from epsilon_tf.config import DataConfig

PROGRAM = "python -m epsilon_tf.tools.convert"


def _data_config(args):
    """The `DataConfig` of the release files the flags name, and the slot
    ("train" or "test") they fill: a split named "test" is read with every
    label, any other ("train", "val") with the seen labels."""
    data_format, dataset = args.format.split("_", 1)
    try:
        shape = tuple(
            int(x)
            for x in args.feature_shape.lower().replace("x", ",").split(",")
        )
    except ValueError:
        shape = ()
    common.check(len(shape) == 2 and min(shape) >= 1, "feature_shape",
                 args.feature_shape, "REGIONSxCHANNELS, e.g. 196x512")
    slot = "test" if args.split == "test" else "train"
    config = DataConfig(
        dataset=dataset,
        data_format=data_format,
        label_dir=args.label_dir,
        word_vectors=args.word_vectors,
        names_file=args.names_pickle,
        feature_shape=shape,
        skip_corrupt=args.skip_corrupt,
        **{f"{slot}_files": args.inputs},
    )
    return config, slot


def main(argv=None):
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Convert a LESA/BiAM split to the native format.",
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=[
            "lesa_nus_wide",
            "lesa_open_images",
            "biam_nus_wide",
            "biam_open_images",
        ],
    )
    parser.add_argument(
        "--inputs", required=True, help="file, glob, or comma list"
    )
    parser.add_argument("--split", required=True, help="train, val or test")
    parser.add_argument("--label_dir", required=True)
    parser.add_argument("--word_vectors", default=None)
    parser.add_argument("--names_pickle", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--out_split", default=None)
    parser.add_argument(
        "--feature_shape", default="196x512",
        help="REGIONSxCHANNELS (as train.py), e.g. 196x512",
    )
    parser.add_argument(
        "--feature_dtype", default="float16", choices=["float16", "float32"]
    )
    parser.add_argument("--examples_per_shard", type=int, default=1024)
    parser.add_argument(
        "--compression", default="ZLIB", choices=["ZLIB", "GZIP", "NONE"]
    )
    parser.add_argument("--skip_corrupt", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(common.DEBUG_FLAG, action="store_true",
                        help="Show tracebacks and TensorFlow's logs.")
    args = parser.parse_args(argv)
    common.check(args.examples_per_shard >= 1, "examples_per_shard",
                 args.examples_per_shard, "a positive integer")
    data_config, slot = _data_config(args)
    common.prepare(["--debug"] if args.debug else [])
    # TensorFlow (the readers and the writer) only after `common.prepare`.
    from epsilon_tf.data import convert, release_sources

    # The same wiring as `train.py --data_format=lesa|biam`.
    source = release_sources.release_source(data_config)
    reader, space = source.split(slot), source.label_space
    convert.convert_split(
        reader,
        args.out,
        args.out_split or args.split,
        feature_dtype=args.feature_dtype,
        examples_per_shard=args.examples_per_shard,
        label_space=space,
        compression=None if args.compression == "NONE" else args.compression,
        overwrite=args.overwrite,
    )
    # Beside the shards, so `--data_format=native --data_dir=OUT` finds it.
    space.save(args.out)
    print(f"Converted {args.split} -> {args.out} (label space saved there)")
    return 0


if __name__ == "__main__":
    with common.clean_exit(PROGRAM):
        sys.exit(main())
