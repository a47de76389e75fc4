"""Converts any `SplitReader` into the native sharded TFRecord format.

One streaming pass: examples are read from the reader's `tf.data`
pipeline and written by `NativeWriter` (which validates each one), so a
release's features are converted once and trained on from the faster,
self-describing native files.

Command line (one split per call):

    python -m epsilon_tf.data.convert --format=lesa_nus_wide \\
        --inputs='TFRecords/NUS_WIDE_Train_full_feature_ZLIB.tfrecords' \\
        --split=train --label_dir=../shared/data/nus_wide --out=feats/nus

Formats: lesa_nus_wide, lesa_open_images, biam_nus_wide (needs
`--names_pickle`), biam_open_images. NUS-WIDE label files are read from
`--label_dir` (TagList1k.txt, Concepts81.txt and the word-vector pickle);
Open Images ones from `--label_dir` (classes-trainable.txt,
unseen_labels.pkl, top_400_unseen.csv, class-descriptions.csv) plus
`--word_vectors`.
"""

import argparse
import sys
import time

from epsilon_tf.cli import common
from epsilon_tf.config import DataConfig

PROGRAM = "python -m epsilon_tf.data.convert"


def convert_split(
    split_reader,
    out_directory,
    split_name,
    feature_dtype="float16",
    examples_per_shard=1024,
    progress=True,
    label_space=None,
    compression="ZLIB",
    overwrite=False,
):
    """Writes one split of any reader in the native format, in one pass.

    Args:
        split_reader: `SplitReader`. The split to convert (read in its
            natural order, unshuffled).
        out_directory: str. Output folder.
        split_name: str. Name of the native split written.
        feature_dtype: str. "float16" or "float32". Defaults to "float16".
        examples_per_shard: int. Defaults to 1024.
        progress: bool. Print progress to stderr. Defaults to True.
        label_space: `LabelSpace` or None. When given, the label names are
            stored in the sidecar (its seen labels for a "seen" split,
            all labels for an "all" split) and the label count is checked.
            Defaults to None (no names stored).
        compression: str or None. "ZLIB", "GZIP" or None. Defaults to
            "ZLIB".
        overwrite: bool. Replace an existing native split. Defaults to
            False.

    Returns:
        dict, the sidecar contents (number of examples, shards, ...).

    Example:

    >>> convert_split(lesa_reader, "feats/nus", "train", "float16", 2048,
    ...               label_space=space)
    """
    # TensorFlow only when called, after `common.prepare` in `main`.
    from epsilon_tf.data.pipeline import input_errors
    from epsilon_tf.data.readers.native_tfrecord import NativeWriter

    ds = split_reader.dataset()
    spec = ds.element_spec
    feature_shape = tuple(spec["features"].shape.as_list())
    num_labels = spec["labels"].shape[0]
    label_names = None
    if label_space is not None:
        if split_reader.label_set == "seen":
            label_names = [label_space.names[i] for i in label_space.seen]
        else:
            label_names = list(label_space.names)
        if num_labels is not None and num_labels != len(label_names):
            raise ValueError(
                f"Split {split_reader.name!r} yields {num_labels} labels but "
                f"the label space has {len(label_names)} "
                f"{split_reader.label_set} labels"
            )
    total = split_reader.num_examples
    start = time.time()
    last = start
    count = 0
    with NativeWriter(
        out_directory,
        split_name,
        feature_shape,
        label_names=label_names,
        feature_dtype=feature_dtype,
        examples_per_shard=examples_per_shard,
        compression=compression,
        label_set=split_reader.label_set,
        num_labels=None if label_names is not None else num_labels,
        overwrite=overwrite,
    ) as writer, input_errors():
        for example in ds.prefetch(64).as_numpy_iterator():
            writer.write(
                example["image_id"], example["features"], example["labels"]
            )
            count += 1
            now = time.time()
            if progress and now - last >= 10:
                last = now
                of = f"/{total}" if total else ""
                print(
                    f"[convert {split_name}] {count}{of} examples, "
                    f"{count / (now - start):.0f}/s",
                    file=sys.stderr,
                    flush=True,
                )
    meta = writer.metadata()
    if progress:
        print(
            f"[convert {split_name}] wrote {meta['num_examples']} examples in "
            f"{len(meta['shards'])} shards to {out_directory} "
            f"({time.time() - start:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
        report = getattr(split_reader, "skip_report", None)
        if report is not None and report.total:
            print(
                f"[convert {split_name}] skipped: {report}",
                file=sys.stderr,
                flush=True,
            )
            for file, entry in sorted(report.by_file().items()):
                print(
                    f"[convert {split_name}]   {file}: "
                    f"{entry['bad_records']} bad records"
                    + ("; cut short (corrupt or truncated) after "
                       f"{entry['readable_records']} records"
                       if entry["corrupt"] else ""),
                    file=sys.stderr,
                    flush=True,
                )
    return meta


def _reader_from_args(args):
    """(SplitReader, LabelSpace) of the release files the flags name.

    Goes through `release_sources.release_source`, the same wiring as
    `train.py --data_format=lesa|biam`: a split named "test" is read with
    every label, any other ("train", "val") with the seen labels.
    """
    # TensorFlow (the readers) only after `common.prepare` in `main`.
    from epsilon_tf.data.release_sources import release_source

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
    source = release_source(DataConfig(
        dataset=dataset,
        data_format=data_format,
        label_dir=args.label_dir,
        word_vectors=args.word_vectors,
        names_file=args.names_pickle,
        feature_shape=shape,
        skip_corrupt=args.skip_corrupt,
        **{f"{slot}_files": args.inputs},
    ))
    return source.split(slot), source.label_space


def main(argv=None):
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(
        description="Convert a LESA/BiAM split to the native format."
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
    common.prepare(["--debug"] if args.debug else [])
    reader, space = _reader_from_args(args)
    convert_split(
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
