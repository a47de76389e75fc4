"""Readers for the HDF5 feature files of the BiAM release (ICCV 2021).

NUS-WIDE: `nus_wide_train.h5` / `nus_wide_test.h5` hold, per image name,
the datasets `<name>-features` (float32, channel-first (512, 196)),
`<name>-labels` (925 seen labels for train; 1,006 = 925 seen then 81
unseen for test) and, in the test file, `<name>-labels_81` (not needed:
the 81 are the tail of `-labels`). The image names, in order, come from a
pickle `{'img_names': [...]}` (read with the restricted unpickler).

Open Images: chunk files of up to 640 images, each with
`<ImageID>.jpg-features` (channel-first (512, 196)), `<ImageID>.jpg-
seenlabels` (int8 x 7,186) and, for test, `<ImageID>.jpg-unseenlabels`
(int8 x 2,594; only the `top_400_unseen.csv` entries are kept). The images
of a chunk are its keys' prefixes in sorted order (what BiAM's
`np.unique` gives); the example's `image_id` is the ImageID without
".jpg".

Both stream through `tf.data.Dataset.from_generator`: each HDF5 file is
opened by the generator and read one image at a time, so nothing is
loaded whole. Errors (missing dataset, name not in the file, wrong shape
or label length, label values other than -1/0/+1) name the file, the
record index, the key and what was expected; with `skip_corrupt=True`
such an image is skipped instead, logged and counted once in the reader's
`skip_report` (as for the TFRecord readers). A file that is not HDF5 is
refused when the reader is built.
"""

import os

import h5py
import numpy as np
import tensorflow as tf

from epsilon_tf.data.base import (
    SplitReader,
    example_signature,
    first_invalid_label,
    shard_files,
)
from epsilon_tf.data.readers.release_layout import (
    DEFAULT_FEATURE_SHAPE,
    OPEN_IMAGES_NUM_UNSEEN,
    check_top_unseen,
    label_set_for,
    space_permutation,
)
from epsilon_tf.data.readers.safe_pickle import load_pickle
from epsilon_tf.data.records.checks import (
    NON_FINITE_MESSAGE,
    check_feature_shape,
    remember_data_error,
)
from epsilon_tf.data.records.files import expand_files
from epsilon_tf.data.records.stream import SkipReport
from epsilon_tf.errors import InputDataError

_MAX_CYCLE = 8
_OI_SUFFIXES = ("-features", "-seenlabels", "-unseenlabels")


def _open_h5(path):
    """Opens an HDF5 file read-only; non-local paths go through gfile."""
    if "://" in path:
        return h5py.File(tf.io.gfile.GFile(path, "rb"), "r")
    return h5py.File(path, "r")


def check_h5_file(path):
    """Fails unless `path` is an HDF5 file that opens (names it)."""
    if tf.io.gfile.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not an HDF5 file")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"HDF5 file not found: {path}")
    try:
        with _open_h5(path):
            pass
    except OSError as e:
        raise ValueError(f"{path} is not a readable HDF5 file ({e})") from None


def _guarded(records, path, skip_corrupt, report):
    """Runs `records` (a generator of (index, thunk)), handling bad ones.

    A data error of one image is skipped and counted (`skip_corrupt`) or
    remembered for `input_errors()` and re-raised.
    """
    for index, make in records:
        try:
            example = make()
        except InputDataError as e:
            # NaN/Inf features: fails even with `skip_corrupt` (as the
            # pipeline's check), naming the file and the record.
            message = (
                f"{NON_FINITE_MESSAGE} record {index} of {path} ({e}); the "
                "features must be finite"
            )
            remember_data_error(message)
            raise InputDataError(message) from None
        except (KeyError, ValueError) as e:
            message = str(e.args[0] if isinstance(e, KeyError) and e.args
                          else e)
            if message.startswith(f"{path}: "):
                message = message[len(path) + 2:]
            message = f"Bad record in {path} (record index {index}): {message}"
            if skip_corrupt:
                report.add("record", message, file=path, index=index)
                continue
            remember_data_error(message)
            raise ValueError(message) from None
        yield example


def _read_dataset(h5, path, key, name):
    if key not in h5:
        raise KeyError(
            f"{path}: dataset {key!r} (image {name!r}) is missing from the "
            "HDF5 file"
        )
    return np.asarray(h5[key][()])


def _features(h5, path, name, shape):
    key = f"{name}-features"
    value = _read_dataset(h5, path, key, name)
    stored = (shape[1], shape[0])
    if value.shape != stored:
        raise ValueError(
            f"{path}: dataset {key!r} has shape {value.shape}; expected the "
            f"channel-first {stored} (channels, regions) for feature_shape="
            f"{shape}"
        )
    if not np.all(np.isfinite(value)):
        raise InputDataError(f"image_id {name}, dataset {key!r}")
    return np.ascontiguousarray(value.T, dtype=np.float32)


def _labels(h5, path, name, suffix, expected_len):
    key = f"{name}{suffix}"
    value = _read_dataset(h5, path, key, name).reshape(-1)
    if value.shape[0] != expected_len:
        raise ValueError(
            f"{path}: dataset {key!r} has {value.shape[0]} labels; expected "
            f"{expected_len}"
        )
    invalid = first_invalid_label(value)
    if invalid is not None:
        i, bad = invalid
        raise ValueError(
            f"{path}: dataset {key!r} holds {bad!r} at position "
            f"{i}; labels must be -1, 0 or +1"
        )
    return value.astype(np.float32)


def _arrange(perm, parts):
    values = np.concatenate(parts)
    return values if perm is None else values[perm]


# ---------------------------------------------------------------------------
# NUS-WIDE


def read_image_names(names_pickle_path):
    """Reads BiAM's `{'img_names': [...]}` pickle.

    Args:
        names_pickle_path: str. The pickle (e.g. `img_names.pkl`,
            `test_img_names.pkl`).

    Returns:
        list of str.
    """
    obj = load_pickle(names_pickle_path)
    if not isinstance(obj, dict) or "img_names" not in obj:
        raise ValueError(
            f"{names_pickle_path} must hold a dict with key 'img_names'. "
            f"Received: {type(obj).__name__}"
            + (f" with keys {sorted(obj)[:5]}" if isinstance(obj, dict) else "")
        )
    names = []
    for i, name in enumerate(np.asarray(obj["img_names"], dtype=object)):
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"{names_pickle_path}: img_names[{i}] must be a non-empty "
                f"str. Received: {name!r}"
            )
        names.append(name)
    return names


def biam_nus_wide_split(
    h5_path,
    names_pickle_path,
    split,
    label_space,
    feature_shape=DEFAULT_FEATURE_SHAPE,
    skip_corrupt=False,
    skip_report=None,
):
    """A `SplitReader` over BiAM's `nus_wide_{train,test}.h5`.

    "test" gives labels over the whole label space (BiAM's 1,006 values:
    the 925 seen then the 81 unseen, arranged in `label_space` order); any
    other split gives the 925 seen labels. The images come in the order of
    the names pickle; a `files_seed` shuffles that order and an
    `input_context` shards the names (the split is a single file).

    Args:
        h5_path: str. The HDF5 file.
        names_pickle_path: str. Pickle `{'img_names': [...]}`.
        split: str. "train" or "test".
        label_space: `LabelSpace` (`nus_wide_label_space`).
        feature_shape: tuple (num_regions, channels); the file stores the
            transpose. Defaults to (196, 512).
        skip_corrupt: bool. Skip (log and count) an image whose datasets
            are missing or malformed instead of failing. Defaults to False.
        skip_report: `SkipReport` or None. Collects the skips.

    Returns:
        `SplitReader`.

    Example:

    >>> reader = biam_nus_wide_split(
    ...     "features/nus_wide_test.h5", "test_img_names.pkl", "test", space)
    """
    h5_path = os.fspath(h5_path)
    check_h5_file(h5_path)
    report = skip_report if skip_report is not None else SkipReport()
    shape = check_feature_shape(feature_shape)
    label_set = label_set_for(split)
    names = read_image_names(names_pickle_path)
    if label_set == "all":
        num_labels = label_space.num_labels
        perm = space_permutation(label_space)
        num_seen = len(label_space.seen)
    else:
        num_labels = len(label_space.seen)
        perm = None
    signature = example_signature(shape, num_labels)

    def read(h5, i):
        name = names[i]
        if f"{name}-features" not in h5 and f"{name}-labels" not in h5:
            raise KeyError(
                f"{h5_path}: image {name!r} (entry {i} of "
                f"{names_pickle_path}) is not in the HDF5 file (no "
                f"'{name}-features' / '{name}-labels' datasets)"
            )
        features = _features(h5, h5_path, name, shape)
        labels = _labels(h5, h5_path, name, "-labels", num_labels)
        if perm is not None:
            labels = _arrange(perm, [labels[:num_seen], labels[num_seen:]])
        return {
            "image_id": name.encode("utf-8"),
            "features": features,
            "labels": labels,
        }

    def generate(order):
        with _open_h5(h5_path) as h5:
            records = ((int(i), lambda i=i: read(h5, i)) for i in order)
            yield from _guarded(records, h5_path, skip_corrupt, report)

    def make_dataset(files_seed=None, input_context=None):
        order = np.arange(len(names))
        ctx = input_context
        if ctx is not None and ctx.num_input_pipelines > 1:
            order = order[ctx.input_pipeline_id :: ctx.num_input_pipelines]
        if files_seed is not None:
            order = np.random.default_rng(files_seed).permutation(order)
        return tf.data.Dataset.from_generator(
            lambda: generate(order), output_signature=signature
        )

    return SplitReader(
        name=split,
        label_set=label_set,
        make_dataset=make_dataset,
        num_examples=len(names),
        files=(h5_path,),
        skip_report=report,
    )


# ---------------------------------------------------------------------------
# Open Images


def open_images_chunk_names(h5, path):
    """The image names of one BiAM Open Images chunk, sorted.

    Args:
        h5: open `h5py.File`.
        path: str. Its path (for messages).

    Returns:
        list of str such as "000002b66c9c498e.jpg".
    """
    names = set()
    for key in h5.keys():
        for suffix in _OI_SUFFIXES:
            if key.endswith(suffix):
                names.add(key[: -len(suffix)])
                break
        else:
            raise ValueError(
                f"{path}: unexpected dataset {key!r} (expected names ending "
                f"in {_OI_SUFFIXES})"
            )
    return sorted(names)


def count_open_images_chunk(path):
    """The number of images in one BiAM Open Images chunk (names only)."""
    with _open_h5(path) as h5:
        return len(open_images_chunk_names(h5, path))


def biam_open_images_split(
    file_pattern_or_list,
    split,
    label_space,
    top_unseen_indices,
    feature_shape=DEFAULT_FEATURE_SHAPE,
    num_unseen_total=OPEN_IMAGES_NUM_UNSEEN,
    skip_corrupt=False,
    skip_report=None,
):
    """A `SplitReader` over BiAM's Open Images HDF5 chunk files.

    "test" gives labels over the whole label space (`-seenlabels`, then the
    `top_unseen_indices` entries of `-unseenlabels`, arranged in
    `label_space` order); other splits give `-seenlabels`.

    Args:
        file_pattern_or_list: str or list of str. Chunk file(s) or glob
            pattern(s).
        split: str. "train", "val" or "test".
        label_space: `LabelSpace` (`open_images_label_space`).
        top_unseen_indices: int array [num_unseen]. Positions in
            `-unseenlabels` of the space's unseen labels (top_400 order).
        feature_shape: tuple (num_regions, channels); the files store the
            transpose. Defaults to (196, 512).
        num_unseen_total: int. Length of `-unseenlabels`. Defaults to 2594.
        skip_corrupt: bool. Skip (log and count) an image whose datasets
            are missing or malformed instead of failing. Defaults to False.
        skip_report: `SkipReport` or None. Collects the skips.

    Returns:
        `SplitReader`.

    Example:

    >>> reader = biam_open_images_split(
    ...     "train_features_lesa/*.h5", "train", space,
    ...     meta.top_unseen_indices)
    """
    files = expand_files(file_pattern_or_list)
    for file in files:
        check_h5_file(file)
    report = skip_report if skip_report is not None else SkipReport()
    shape = check_feature_shape(feature_shape)
    label_set = label_set_for(split)
    num_seen = len(label_space.seen)
    top = np.asarray(top_unseen_indices, dtype=np.int64).reshape(-1)
    if label_set == "all":
        top = check_top_unseen(top, label_space, num_unseen_total)
        perm = space_permutation(label_space)
        num_labels = label_space.num_labels
    else:
        perm = None
        num_labels = num_seen
    signature = example_signature(shape, num_labels)

    def read(h5, path, name):
        features = _features(h5, path, name, shape)
        labels = _labels(h5, path, name, "-seenlabels", num_seen)
        if label_set == "all":
            unseen = _labels(h5, path, name, "-unseenlabels", num_unseen_total)
            labels = _arrange(perm, [labels, unseen[top]])
        image_id = name[:-4] if name.endswith(".jpg") else name
        return {
            "image_id": image_id.encode("utf-8"),
            "features": features,
            "labels": labels,
        }

    def generate(path):
        path = path.decode("utf-8") if isinstance(path, bytes) else path
        with _open_h5(path) as h5:
            try:
                names = open_images_chunk_names(h5, path)
            except ValueError as e:
                remember_data_error(str(e))
                raise
            records = (
                (i, lambda name=name: read(h5, path, name))
                for i, name in enumerate(names)
            )
            yield from _guarded(records, path, skip_corrupt, report)

    @tf.autograph.experimental.do_not_convert
    def per_file(path):
        return tf.data.Dataset.from_generator(
            generate, output_signature=signature, args=(path,)
        )

    def make_dataset(files_seed=None, input_context=None):
        return shard_files(files, files_seed, input_context).interleave(
            per_file,
            cycle_length=max(1, min(len(files), _MAX_CYCLE)),
            block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    return SplitReader(
        name=split,
        label_set=label_set,
        make_dataset=make_dataset,
        num_examples=None,
        files=tuple(files),
        skip_report=report,
    )
