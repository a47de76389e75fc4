"""Readers for the TFRecord feature files of the LESA release (CVPR 2020).

Every record is a `tf.train.Example` of raw-bytes features written by
LESA's `extract_data/*.py` scripts:

NUS-WIDE (`NUS_WIDE_{Train,Test}_full_feature_ZLIB.tfrecords`):
    `img_id` (the image path), `feature` (float32 196x512: VGG19 conv5_4),
    `label_1k` (float32 x 1,000, TagList1k order, +-1, the 75 tags that are
    also concepts set to 0), `label_81` (float32 x 81, Concepts81 order).
Open Images (`OI_*_feature_2018_04_ZLIB.tfrecords`):
    train/val: `img_id`, `feature`, `label` (int32 x 7,186, +-1 or 0);
    test: `img_id`, `feature`, `seen_label` (int32 x 7,186) and
    `unseen_label` (int32 x 2,594; only the 400 of `top_400_unseen.csv`
    are kept, in that order).

Compression is detected per file from its first bytes (`records.
compression.detect_compression`): an uncompressed TFRecord starts with a
length whose CRC follows it, a GZIP file with 1f 8b, a ZLIB stream with a
valid two-byte zlib header. Only when none of these holds (a file corrupt
from its first byte) does the name decide ("ZLIB" or "GZIP" in the base
name, else none). A directory, an empty file and a file that holds no
records are refused when the reader is built, naming the file.

Errors name the file and the record index. Framing, CRC and decompression
errors (`DataLossError` inside `TFRecordDataset`) are caught per file with
`ignore_errors` and then detected at the file's end by comparing the bytes
read with the bytes the file holds: its size for an uncompressed file, or,
for a ZLIB/GZIP file, the length of its decompressed stream, measured once
per file (and cached) by a background Python thread that decompresses the
file alongside the reader (`records.verify`; one extra core and a second
read of the file, first pass only). With `skip_corrupt=True` a bad record
is skipped and a corrupt file's unreadable rest is dropped; each skip is
logged with the running totals and counted in the reader's `skip_report`.
A record after the first corrupt byte of a file cannot be recovered
(TFRecord framing cannot resynchronize), so skips count files cut short,
not lost records. One case no reader can detect: an uncompressed file cut
exactly between two records is a valid, shorter TFRecord file (the format
has no trailer); the native format records its sizes to catch that too.
"""

import numpy as np
import tensorflow as tf

from epsilon_tf.data.base import SplitReader, shard_files
from epsilon_tf.data.readers.release_layout import (
    DEFAULT_FEATURE_SHAPE,
    NUS_WIDE_NUM_TAGS,
    OPEN_IMAGES_NUM_UNSEEN,
    check_top_unseen,
    label_set_for,
    space_permutation,
)
from epsilon_tf.data.records.checks import check_feature_shape, checked_map
from epsilon_tf.data.records.compression import detect_compression
from epsilon_tf.data.records.files import expand_files
from epsilon_tf.data.records.stream import (
    SkipReport,
    apply_record_checks,
    assert_finite_features,
    byte_length_check,
    check_stream_end,
    decode_fixed,
    finish_examples,
    label_values_check,
    no_autograph,
    present_check,
    record_stream,
)
from epsilon_tf.data.records.verify import VERIFIER, start_verification

# ---------------------------------------------------------------------------
# Shared reader assembly


def _labels_in_space_order(perm, parts):
    values = tf.concat(parts, axis=0)
    return values if perm is None else tf.gather(values, perm)


def _checked_example(elem, parsed, labels, checks, shape, skip_corrupt,
                     report):
    """The example dict of one parsed LESA record, after its checks.

    With `skip_corrupt` returns `(example, keep)` for `finish_examples`.
    """
    keep, deps = apply_record_checks(elem, checks, skip_corrupt, report)
    with tf.control_dependencies(deps):
        features = decode_fixed(
            parsed["feature"], tf.float32, int(np.prod(shape)) * 4, shape
        )
        example = {
            "image_id": tf.identity(parsed["img_id"]),
            "features": assert_finite_features(
                elem, features, parsed["img_id"], keep
            ),
            "labels": tf.identity(labels),
        }
    return (example, keep) if skip_corrupt else example


def _compression_fn(compressions):
    """A graph function file name -> its detected compression."""
    names = list(compressions)
    values = [compressions[n] for n in names]

    def compression(filename):
        match = tf.equal(tf.constant(names), filename)
        index = tf.argmax(tf.cast(match, tf.int32))
        return tf.gather(tf.constant(values), index)

    return compression


def _build_reader(files, split, label_set, parse_fn, skip_corrupt, skip_report):
    report = skip_report if skip_report is not None else SkipReport()
    compressions = {f: detect_compression(f) for f in files}
    graph_compression = _compression_fn(compressions)
    hint = (
        ""
        if skip_corrupt
        else "Pass skip_corrupt=True to skip the unreadable rest of such "
        "files (the skips are logged and counted)."
    )

    def make_dataset(files_seed=None, input_context=None):
        files_ds = start_verification(
            shard_files(files, files_seed, input_context), compressions
        )
        stream = record_stream(files_ds, graph_compression, len(files))
        stream = check_stream_end(
            stream,
            VERIFIER.expectation,
            skip_corrupt,
            report,
            hint,
            graph_compression,
        )
        ds = checked_map(
            stream, no_autograph(lambda elem: parse_fn(elem, report))
        )
        return finish_examples(ds, skip_corrupt)

    return SplitReader(
        name=split,
        label_set=label_set,
        make_dataset=make_dataset,
        num_examples=None,
        files=tuple(files),
        skip_report=report,
        compressions=compressions,
    )


def _string_spec(keys):
    return {
        k: tf.io.FixedLenFeature([], tf.string, default_value="") for k in keys
    }


# ---------------------------------------------------------------------------
# NUS-WIDE


def lesa_nus_wide_split(
    file_pattern_or_list,
    split,
    label_space,
    tag_to_seen_index,
    feature_shape=DEFAULT_FEATURE_SHAPE,
    skip_corrupt=False,
    num_tags=NUS_WIDE_NUM_TAGS,
    skip_report=None,
):
    """A `SplitReader` over LESA's NUS-WIDE TFRecords.

    "test" gives labels over the whole label space (the seen values taken
    from `label_1k`, the unseen ones from `label_81`, arranged in
    `label_space` order); any other split name gives the seen labels only
    (`label_space.seen` order).

    Args:
        file_pattern_or_list: str or list of str. File(s) or glob
            pattern(s).
        split: str. "train", "test", ...
        label_space: `LabelSpace` from `nus_wide_label_space` (its unseen
            labels are the concepts, in Concepts81 order).
        tag_to_seen_index: int array [num_seen]. For each seen label, its
            position in TagList1k (`nus_wide_seen_tag_indices`):
            `seen_labels = label_1k[tag_to_seen_index]`.
        feature_shape: tuple (num_regions, channels) of `feature`.
            Defaults to (196, 512).
        skip_corrupt: bool. Skip, log and count bad records and corrupt
            files instead of raising. Defaults to False.
        num_tags: int. Values in `label_1k`. Defaults to 1000.
        skip_report: `SkipReport` or None. Collects skip counts (a new one
            is made when None; it is `reader.skip_report`).

    Returns:
        `SplitReader`.

    Example:

    >>> reader = lesa_nus_wide_split(
    ...     "TFRecords/NUS_WIDE_Train_full_feature_ZLIB.tfrecords", "train",
    ...     space, nus_wide_seen_tag_indices(tags_path, concepts_path))
    """
    files = expand_files(file_pattern_or_list)
    shape = check_feature_shape(feature_shape)
    label_set = label_set_for(split)
    seen_index = np.asarray(tag_to_seen_index, dtype=np.int64).reshape(-1)
    if len(seen_index) != len(label_space.seen):
        raise ValueError(
            "`tag_to_seen_index` must have one entry per seen label. "
            f"Received {len(seen_index)} entries for "
            f"{len(label_space.seen)} seen labels"
        )
    if seen_index.size and (
        seen_index.min() < 0 or seen_index.max() >= num_tags
    ):
        raise ValueError(
            f"`tag_to_seen_index` values must lie in [0, {num_tags}). "
            f"Received: min={seen_index.min()}, max={seen_index.max()}"
        )
    num_unseen = len(label_space.unseen)
    feature_bytes = int(np.prod(shape)) * 4
    desc = f"{shape[0]}x{shape[1]} float32"
    keys = ["img_id", "feature", "label_1k"]
    perm = None
    if label_set == "all":
        keys.append("label_81")
        perm = space_permutation(label_space)
    spec = _string_spec(keys)

    def parse(elem, report):
        p = tf.io.parse_single_example(elem["record"], spec)
        checks = [
            present_check(elem, p["img_id"], "img_id", "an image id"),
            byte_length_check(
                elem, p["feature"], "feature", feature_bytes, desc
            ),
            byte_length_check(
                elem,
                p["label_1k"],
                "label_1k",
                num_tags * 4,
                f"{num_tags} float32",
            ),
        ]
        label_1k = decode_fixed(
            p["label_1k"], tf.float32, num_tags * 4, [num_tags]
        )
        seen = tf.gather(label_1k, seen_index)
        checks.append(label_values_check(elem, seen, "label_1k"))
        if label_set == "all":
            checks.append(
                byte_length_check(
                    elem,
                    p["label_81"],
                    "label_81",
                    num_unseen * 4,
                    f"{num_unseen} float32",
                )
            )
            unseen = decode_fixed(
                p["label_81"], tf.float32, num_unseen * 4, [num_unseen]
            )
            checks.append(label_values_check(elem, unseen, "label_81"))
            labels = _labels_in_space_order(perm, [seen, unseen])
        else:
            labels = seen
        return _checked_example(
            elem, p, labels, checks, shape, skip_corrupt, report
        )

    return _build_reader(
        files, split, label_set, parse, skip_corrupt, skip_report
    )


# ---------------------------------------------------------------------------
# Open Images


def lesa_open_images_split(
    file_pattern_or_list,
    split,
    label_space,
    top_unseen_indices,
    feature_shape=DEFAULT_FEATURE_SHAPE,
    skip_corrupt=False,
    num_unseen_total=OPEN_IMAGES_NUM_UNSEEN,
    skip_report=None,
):
    """A `SplitReader` over LESA's Open Images TFRecords.

    "test" records hold `seen_label` and `unseen_label`; the labels come out
    over the whole label space (seen values, then the `top_unseen_indices`
    entries of `unseen_label`, arranged in `label_space` order). Any other
    split ("train", "val") reads `label` over the seen labels.

    Args:
        file_pattern_or_list: str or list of str. File(s) or glob
            pattern(s).
        split: str. "train", "val" or "test".
        label_space: `LabelSpace` from `open_images_label_space` (seen =
            the trainable classes in order, unseen = the selected ones).
        top_unseen_indices: int array [num_unseen]. Positions in
            `unseen_label` of the label space's unseen labels, in order
            (`OpenImagesLabels.top_unseen_indices`, i.e.
            `top_400_unseen.csv`).
        feature_shape: tuple (num_regions, channels). Defaults to
            (196, 512).
        skip_corrupt: bool. Skip, log and count bad records and corrupt
            files instead of raising. Defaults to False.
        num_unseen_total: int. Values in `unseen_label`. Defaults to 2594.
        skip_report: `SkipReport` or None. Collects skip counts.

    Returns:
        `SplitReader`.

    Example:

    >>> space, meta = open_images_label_space(..., return_metadata=True)
    >>> reader = lesa_open_images_split(
    ...     "TFRecords/OI_seen_unseen_test_feature_2018_04_ZLIB.tfrecords",
    ...     "test", space, meta.top_unseen_indices)
    """
    files = expand_files(file_pattern_or_list)
    shape = check_feature_shape(feature_shape)
    label_set = label_set_for(split)
    num_seen = len(label_space.seen)
    top = np.asarray(top_unseen_indices, dtype=np.int64).reshape(-1)
    if label_set == "all":
        top = check_top_unseen(top, label_space, num_unseen_total)
    perm = space_permutation(label_space) if label_set == "all" else None
    feature_bytes = int(np.prod(shape)) * 4
    desc = f"{shape[0]}x{shape[1]} float32"
    if label_set == "all":
        spec = _string_spec(["img_id", "feature", "seen_label", "unseen_label"])
    else:
        spec = _string_spec(["img_id", "feature", "label"])

    def parse(elem, report):
        p = tf.io.parse_single_example(elem["record"], spec)
        checks = [
            present_check(elem, p["img_id"], "img_id", "an image id"),
            byte_length_check(
                elem, p["feature"], "feature", feature_bytes, desc
            ),
        ]
        seen_key = "seen_label" if label_set == "all" else "label"
        checks.append(
            byte_length_check(
                elem,
                p[seen_key],
                seen_key,
                num_seen * 4,
                f"{num_seen} int32",
            )
        )
        seen = tf.cast(
            decode_fixed(p[seen_key], tf.int32, num_seen * 4, [num_seen]),
            tf.float32,
        )
        checks.append(label_values_check(elem, seen, seen_key))
        if label_set == "all":
            checks.append(
                byte_length_check(
                    elem,
                    p["unseen_label"],
                    "unseen_label",
                    num_unseen_total * 4,
                    f"{num_unseen_total} int32",
                )
            )
            unseen_all = decode_fixed(
                p["unseen_label"],
                tf.int32,
                num_unseen_total * 4,
                [num_unseen_total],
            )
            unseen = tf.cast(tf.gather(unseen_all, top), tf.float32)
            checks.append(label_values_check(elem, unseen, "unseen_label"))
            labels = _labels_in_space_order(perm, [seen, unseen])
        else:
            labels = seen
        return _checked_example(
            elem, p, labels, checks, shape, skip_corrupt, report
        )

    return _build_reader(
        files, split, label_set, parse, skip_corrupt, skip_report
    )
