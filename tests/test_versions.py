"""`export.versions`: atomic numbered version directories (no TensorFlow)."""

import os

import pytest

from epsilon_tf.export import versions


def _write(pending, text):
    os.makedirs(pending.tmp)
    with open(os.path.join(pending.tmp, "payload"), "w") as f:
        f.write(text)


def _payload(base, version):
    with open(os.path.join(base, str(version), "payload")) as f:
        return f.read()


def test_versions_are_numbered_and_appear_whole(tmp_path):
    base = str(tmp_path / "export")
    with versions.write_version(base) as pending:
        assert pending.version == 1
        assert os.path.basename(pending.tmp).startswith(".tmp-1-")
        _write(pending, "one")
        # Not visible to a poller while it is being written.
        assert versions.list_versions(base) == []
    assert pending.final == os.path.join(base, "1")
    with versions.write_version(base, version=5) as pending:
        _write(pending, "five")
    with versions.write_version(base) as pending:
        _write(pending, "six")
    assert versions.list_versions(base) == [1, 5, 6]
    assert sorted(os.listdir(base)) == ["1", "5", "6"]  # no temporaries
    assert _payload(base, 6) == "six"


def test_a_failed_write_changes_nothing(tmp_path):
    base = str(tmp_path / "export")
    with versions.write_version(base) as pending:
        _write(pending, "one")
    with pytest.raises(RuntimeError, match="disk"):
        with versions.write_version(base, version=1, overwrite=True) as p:
            _write(p, "half")
            raise RuntimeError("disk full")
    assert sorted(os.listdir(base)) == ["1"]
    assert _payload(base, 1) == "one"


def test_existing_versions_need_overwrite(tmp_path):
    base = str(tmp_path / "export")
    with versions.write_version(base) as pending:
        _write(pending, "old")
    with pytest.raises(FileExistsError, match="--overwrite"):
        with versions.write_version(base, version=1):
            pytest.fail("entered the block of an existing version")
    with versions.write_version(base, version=1, overwrite=True) as pending:
        _write(pending, "new")
    assert _payload(base, 1) == "new"
    assert sorted(os.listdir(base)) == ["1"]


def test_retire_other_versions_keeps_one(tmp_path):
    base = str(tmp_path / "export")
    for text in ("a", "b", "c"):
        with versions.write_version(base) as pending:
            _write(pending, text)
    versions.retire_other_versions(base, keep=2)
    assert sorted(os.listdir(base)) == ["2"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_version_numbers_are_positive_integers(bad, tmp_path):
    with pytest.raises(ValueError, match="positive integer"):
        with versions.write_version(str(tmp_path), version=bad):
            pass
