"""Glob expansion (`data.records.files.expand_files`): one function for
the command lines' checks, the release sources and the readers."""

import os

import pytest

from epsilon_tf.data.records.files import expand_files


@pytest.fixture
def folder(tmp_path):
    for name in ("b.tfrecords", "a.tfrecords", "c.h5"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    return tmp_path


def test_patterns_in_order_matches_sorted_each_once(folder):
    pattern = f"{folder}/*.tfrecords, {folder}/c.h5,{folder}/a.tfrecords"
    assert expand_files(pattern) == [
        str(folder / "a.tfrecords"), str(folder / "b.tfrecords"),
        str(folder / "c.h5"),
    ]
    # A sequence is not split at commas; its patterns are expanded too.
    assert expand_files([folder / "c.h5", f"{folder}/?.tfrecords"]) == [
        str(folder / "c.h5"), str(folder / "a.tfrecords"),
        str(folder / "b.tfrecords"),
    ]


def test_messages_name_the_flag_or_the_pattern(folder):
    with pytest.raises(FileNotFoundError,
                       match=r"^--train_files: '.*/\*\.png' matches no file$"):
        expand_files(f"{folder}/c.h5,{folder}/*.png", "train_files")
    with pytest.raises(FileNotFoundError, match=r"^No files match .*\*\.png$"):
        expand_files(f"{folder}/*.png")
    with pytest.raises(FileNotFoundError,
                       match=r"^Record file not found: .*/none\.h5$"):
        expand_files([str(folder / "none.h5")])
    sub = os.path.join(folder, "sub")
    with pytest.raises(IsADirectoryError) as flagged:
        expand_files(f"{folder}/s*", "test_files")
    assert str(flagged.value) == (
        f"--test_files: {sub} is a directory, not a feature file (give the "
        f"files, e.g. {os.path.join(sub, '*')})"
    )
    with pytest.raises(IsADirectoryError, match="not a record file"):
        expand_files(sub)
    with pytest.raises(ValueError, match="is empty"):
        expand_files([])


def test_remote_patterns_pass_through_unless_expanded(folder):
    remote = "gs://bucket/train-*.tfrecords"
    local = str(folder / "c.h5")
    assert expand_files(f"{remote},{local}", "train_files",
                        remote=False) == [remote, local]
