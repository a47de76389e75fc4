"""Converts any `SplitReader` into the native sharded TFRecord format.

One streaming pass: examples are read from the reader's `tf.data`
pipeline and written by `NativeWriter` (which validates each one), so a
release's features are converted once and trained on from the faster,
self-describing native files. The command line is `python -m
epsilon_tf.tools.convert`.
"""

import sys
import time

from epsilon_tf.data.pipeline import input_errors
from epsilon_tf.data.readers.native_writer import NativeWriter


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
        report = split_reader.skip_report
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
