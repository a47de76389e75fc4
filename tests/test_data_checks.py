"""Reader checks that need no subprocess: compression from the bytes,
directories and empty files, honest skip counts (LESA and BiAM), progress
lines, the atomic `--overwrite`, and the shared one-line error exit."""

import io

import pytest
import tensorflow as tf
from helpers import release

from epsilon_tf.data import precheck
from epsilon_tf.data.readers import lesa_tfrecord as lt
from epsilon_tf.data.records.stream import SkipReport


@pytest.fixture(scope="module")
def lesa(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lesa")
    paths = release.lesa_release(tmp)
    values = release.lesa_values("train", paths["space"], paths["tags"])
    return tmp, paths, values


def _reader(paths, files, **kwargs):
    from epsilon_tf.data.readers import label_files

    tags = paths["labels"] / "TagList1k.txt"
    concepts = paths["labels"] / "Concepts81.txt"
    return lt.lesa_nus_wide_split(
        files, "train", paths["space"],
        label_files.nus_wide_seen_tag_indices(str(tags), str(concepts)),
        feature_shape=(9, 8), num_tags=len(paths["tags"]), **kwargs,
    )


@pytest.mark.parametrize("compression", ["ZLIB", "GZIP", None])
def test_compression_comes_from_the_bytes_not_the_name(lesa, compression):
    tmp, paths, values = lesa
    # A name that says nothing (or says the wrong thing).
    path = release.write_records(
        tmp / f"renamed_{compression}_as_GZIP.records" if compression == "ZLIB"
        else tmp / f"renamed_{compression}.records", values[:10],
        compression=compression,
    )
    assert lt.detect_compression(str(path)) == (compression or "")
    reader = _reader(paths, str(path))
    ids = [ex["image_id"] for ex in reader.dataset().as_numpy_iterator()]
    assert ids == [v["img_id"] for v in values[:10]]


def test_directories_empty_files_and_empty_streams_are_named(lesa):
    tmp, paths, values = lesa
    with pytest.raises(IsADirectoryError, match=f"{tmp} is a directory"):
        _reader(paths, str(tmp))
    empty = tmp / "empty.tfrecords"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty \\(0 bytes\\)"):
        _reader(paths, str(empty))
    none = release.write_records(tmp / "none.tfrecords", [], "ZLIB")
    with pytest.raises(ValueError, match="holds no records"):
        precheck.record_file_compression(str(none))
    with pytest.raises(ValueError, match="holds no records"):
        _reader(paths, str(none))


def test_skip_corrupt_counts_each_bad_record_once(lesa):
    tmp, paths, values = lesa
    bad = [dict(v) for v in values[:20]]
    bad[7] = dict(bad[7], feature=b"short")
    path = release.write_records(tmp / "bad7.tfrecords", bad, "ZLIB")
    reader = _reader(paths, str(path), skip_corrupt=True)
    for _ in range(3):  # three passes: three epochs, validation, ...
        assert len(list(reader.dataset())) == 19
    report = reader.skip_report
    assert (report.bad_records, report.corrupt_files) == (1, 0)
    entry = report.by_file()[str(path)]
    assert entry["bad_records"] == 1 and entry["records"] == [7]


def test_skip_corrupt_counts_a_truncated_file_once(lesa):
    tmp, paths, values = lesa
    path = release.write_records(tmp / "cut.tfrecords", values[:20], None)
    path.write_bytes(path.read_bytes()[:-100])
    reader = _reader(paths, str(path), skip_corrupt=True)
    counts = {len(list(reader.dataset())) for _ in range(2)}
    assert counts == {19}
    entry = reader.skip_report.by_file()[str(path)]
    assert entry["corrupt"] and entry["readable_records"] == 19
    assert reader.skip_report.corrupt_files == 1


def test_biam_reader_honours_skip_corrupt(tmp_path):
    from epsilon_tf.data.pipeline import InputDataError, input_errors
    from epsilon_tf.data.readers.biam_hdf5 import biam_nus_wide_split

    space, _ = release.label_dir(tmp_path / "labels")
    h5, names = release.write_biam(tmp_path, space, "train",
                                   drop_key=(3, "-features"))
    reader = biam_nus_wide_split(h5, names, "train", space, (9, 8),
                                 skip_corrupt=True)
    total = release.world().num_examples("train")
    for _ in range(2):
        assert len(list(reader.dataset())) == total - 1
    assert reader.skip_report.bad_records == 1
    assert reader.skip_report.by_file()[str(h5)]["records"] == [3]
    strict = biam_nus_wide_split(h5, names, "train", space, (9, 8))
    with pytest.raises(InputDataError) as info:
        with input_errors():
            list(strict.dataset())
    message = str(info.value)
    assert message.startswith(f"Bad record in {h5} (record index 3)")
    assert "-features' (image" in message and "missing" in message
    assert "Traceback" not in message


def test_skip_report_without_a_file_counts_every_call():
    report = SkipReport()
    assert report.add("record", "x")
    assert report.add("record", "x")
    assert report.bad_records == 2
    assert report.add("record", "y", file="f", index=1)
    assert not report.add("record", "y", file="f", index=1)
    assert report.bad_records == 3


def test_progress_lines():
    from epsilon_tf.training.progress import ProgressLines, format_duration

    now = [0.0]
    out = io.StringIO()
    lines = ProgressLines(100, 32, every_seconds=10, stream=out,
                          clock=lambda: now[0])
    for step in range(1, 51):
        now[0] = 2.0 + (step - 1) * 0.5  # step 1 costs 2s (tracing)
        lines.update(step, loss=0.5, lr=1e-3)
    text = out.getvalue().splitlines()
    assert len(text) == 2  # every 10 seconds
    # 2 steps/s once the first (tracing) step is done: 64 examples/s.
    assert text[-1].startswith("  step 37/100 (37%)  64.0 examples/s")
    assert "ETA 32s" in text[-1] and "loss 0.5000" in text[-1]
    now[0] = 30.0
    lines.finish(loss=0.4)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("  step 50/100 (50%)") and last.endswith("[30s]")
    unknown = ProgressLines(None, 8, stream=io.StringIO())
    line = unknown.line(5)
    assert line.startswith("  step 5  ") and "ETA" not in line
    assert "/5" not in line and "%" not in line
    assert format_duration(3725) == "1h02m"
    assert format_duration(65) == "1m05s"


def test_overwrite_exchanges_the_version_in_one_step(tmp_path):
    from epsilon_tf.export import versions

    base = tmp_path / "export"
    (base / "1").mkdir(parents=True)
    (base / "1" / "old").write_text("old")
    tmp = base / ".tmp-1-0"
    tmp.mkdir()
    (tmp / "new").write_text("new")
    seen = []
    real = versions._exchange

    def spy(a, b):
        done = real(a, b)
        seen.append((done, (base / "1").exists()))
        return done

    versions._exchange = spy
    try:
        versions._replace_version(str(tmp), str(base / "1"), str(base), 1)
    finally:
        versions._exchange = real
    assert sorted(p.name for p in (base / "1").iterdir()) == ["new"]
    assert not tmp.exists()
    assert seen and seen[0][1]  # the version was there right after
    if not seen[0][0]:
        pytest.skip("no renameat2(RENAME_EXCHANGE) here: the fallback ran")


def test_clean_exit_one_line_and_debug(monkeypatch, capsys):
    from epsilon_tf.cli import common

    with pytest.raises(SystemExit) as info:
        with common.clean_exit("x.py"):
            raise FileNotFoundError(2, "No such file", "/a/b")
    assert info.value.code == 1
    assert capsys.readouterr().err == "x.py: error: /a/b: No such file\n"
    # A data error wrapped by TensorFlow: its one line, not the graph dump.
    with pytest.raises(SystemExit):
        with common.clean_exit("x.py"):
            raise tf.errors.InvalidArgumentError(
                None, None,
                "assertion failed: [Bad record in f (record index 3): key "
                "`x` is missing]\n\t [[{{node Assert}}]] [Op:IteratorGetNext]",
            )
    err = capsys.readouterr().err
    assert err == (
        "x.py: error: Bad record in f (record index 3): key `x` is missing\n"
    )
    monkeypatch.setenv("EPSILON_TRACEBACK", "1")
    with pytest.raises(ValueError):
        with common.clean_exit("x.py"):
            raise ValueError("shown with its traceback")


def test_import_check_needs_no_tensorflow():
    """The command lines check flags and files before TensorFlow loads."""
    import subprocess
    import sys

    from helpers import tiny

    code = (
        "import sys; import epsilon_tf.cli.common, epsilon_tf.flags, "
        "epsilon_tf.data.precheck, epsilon_tf.export, "
        "epsilon_tf.data.readers.safe_pickle, epsilon_tf.cli.evaluate, "
        "epsilon_tf.tools.convert, epsilon_tf.data.catalog; "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, cwd=tiny.ROOT, env=tiny.child_env())
    assert out.stdout.strip() == "False", out.stderr


def test_recorded_data_config_has_absolute_paths(tmp_path, monkeypatch):
    from epsilon_tf.config import DataConfig, recorded_data_config

    monkeypatch.chdir(tmp_path)
    cfg = recorded_data_config(DataConfig(
        dataset="nus_wide", data_format="lesa", train_files="a/*.tf,b/c.tf",
        label_dir="labels", names_file="n/{split}.pkl",
    ))
    assert cfg.train_files == f"{tmp_path}/a/*.tf,{tmp_path}/b/c.tf"
    assert cfg.label_dir == f"{tmp_path}/labels"
    assert cfg.names_file == f"{tmp_path}/n/{{split}}.pkl"
    assert cfg.test_files is None


def test_empty_validation_carve_fails_before_training(tmp_path):
    from helpers import tiny

    from epsilon_tf.config import LossConfig, TrainConfig
    from epsilon_tf.data.pipeline import InputDataError
    from epsilon_tf.training.run import build_trainer

    def same_ids(split, ids, feats, labels):
        return ["one id"] * len(ids), feats, labels

    source = tiny.in_memory_source(same_ids)
    trainer = build_trainer(
        tiny.model_config(), LossConfig(),
        TrainConfig(model_dir=str(tmp_path), epochs=1, batch_size=32,
                    verbose=0, summary_images=0),
        source,
    )
    with pytest.raises(InputDataError, match="image id"):
        trainer.train()
    assert int(trainer.optimizer.iterations.numpy()) == 0

