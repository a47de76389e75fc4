"""Example counts of streamed release files, and the schedule they enable."""

import json
import os
from collections import defaultdict

import numpy as np
import pytest
import tensorflow as tf

from epsilon_tf.data.records import record_count


def _write(path, sizes, compression=""):
    options = tf.io.TFRecordOptions(compression_type=compression)
    rng = np.random.default_rng(len(sizes))
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for size in sizes:
            writer.write(rng.bytes(size))


@pytest.mark.parametrize("compression", ["", "ZLIB", "GZIP"])
def test_counts_match_the_records_written(tmp_path, compression):
    # Sizes straddle the 12-byte header and the 8 MiB read chunk.
    sizes = [0, 1, 11, 12, 13, 5000, (8 << 20) + 7, 3, 0, 70000]
    path = tmp_path / "f.tfrecord"
    _write(path, sizes, compression)
    assert record_count.count_tfrecord_file(str(path), compression) == len(
        sizes
    )
    # The reference: TensorFlow's own reader.
    n = sum(1 for _ in tf.data.TFRecordDataset(str(path), compression))
    assert n == len(sizes)


def test_stream_walk_handles_any_chunking():
    blob = b""
    for size in (0, 5, 40, 1):
        blob += len(b"x" * size).to_bytes(8, "little") + b"\0" * 4
        blob += b"x" * size + b"\0" * 4
    for step in (1, 2, 7, 12, 13, len(blob)):
        chunks = [blob[i : i + step] for i in range(0, len(blob), step)]
        assert record_count.count_records_in_stream(chunks) == (4, True)
    assert record_count.count_records_in_stream([blob[:-3]]) == (3, False)


@pytest.mark.parametrize("compression", ["", "ZLIB"])
def test_truncated_file_is_reported(tmp_path, compression):
    path = tmp_path / "f.tfrecord"
    _write(path, [100, 200, 300], compression)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 50])
    # The complete records before the damage; the reader reports it.
    assert record_count.count_tfrecord_file(str(path), compression) < 3
    with pytest.raises(ValueError, match="truncated|cut short"):
        record_count.count_tfrecord_file(str(path), compression, strict=True)


def test_cache_is_used_until_the_file_changes(tmp_path):
    a, b = tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"
    _write(a, [10] * 5)
    _write(b, [10] * 7)
    calls = []

    def count(path):
        calls.append(os.path.basename(path))
        return record_count.count_tfrecord_file(path, "")

    cache = tmp_path / "cache"
    total = record_count.cached_count([str(a), str(b)], count, str(cache),
                                      "tfrecord", progress=False)
    assert total == 12 and calls == ["a.tfrecord", "b.tfrecord"]
    assert record_count.cached_count([str(a), str(b)], count, str(cache),
                                     "tfrecord", progress=False) == 12
    assert calls == ["a.tfrecord", "b.tfrecord"]  # no second pass
    _write(b, [10] * 9)
    os.utime(b, ns=(1, 1))  # a different mtime, whatever the clock
    assert record_count.cached_count([str(a), str(b)], count, str(cache),
                                     "tfrecord", progress=False) == 14
    assert calls[-1] == "b.tfrecord" and len(calls) == 3
    saved = json.loads((cache / record_count.CACHE_FILE).read_text())
    assert sorted(v["count"] for v in saved.values()) == [5, 9]


def test_lesa_schedule_warms_up_and_decays(tmp_path, monkeypatch):
    """TensorBoard's learning_rate ramps up, then decays, on LESA files."""
    from tensorboard.backend.event_processing import event_file_loader

    from epsilon_tf.config import DataConfig, LossConfig, TrainConfig
    from epsilon_tf.data.sources import make_source
    from epsilon_tf.training.run import train_and_evaluate
    from tests.helpers import tiny
    from tests.test_release_end_to_end import (
        WORLD,
        write_label_dir,
        write_lesa,
    )

    space, tags, _ = write_label_dir(tmp_path / "labels")
    write_lesa(tmp_path / "release", space, tags)
    data = DataConfig(
        dataset="nus_wide", data_format="lesa", feature_shape=(9, 16),
        label_dir=str(tmp_path / "labels"), cache_dir=str(tmp_path / "c"),
        train_files=f"{tmp_path}/release/NUS_WIDE_Train_*.tfrecords",
        test_files=f"{tmp_path}/release/NUS_WIDE_Test_*.tfrecords",
    )
    source = make_source(data)
    assert source.split("train").num_examples is None  # until counted
    model_dir = tmp_path / "run"
    epochs, batch, warmup = 3, 32, 6
    train_and_evaluate(
        tiny.model_config(feature_shape=(9, 16), embedding_dim=None),
        LossConfig(),
        TrainConfig(model_dir=str(model_dir), epochs=epochs,
                    batch_size=batch, warmup_steps=warmup,
                    learning_rate=1e-3, verbose=0, export=False,
                    summary_images=0, pr_curve_labels=0),
        source, baseline=False,
    )
    assert source.split("train").num_examples == WORLD.num_train
    lr = defaultdict(float)
    for path in (model_dir / "train").glob("events.out.tfevents.*"):
        for event in event_file_loader.EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "train/learning_rate":
                    lr[event.step] = float(tf.make_ndarray(value.tensor))
    steps = sorted(lr)
    per_epoch = int(WORLD.num_train * 0.9) // batch
    assert steps[0] == 1 and steps[-1] <= epochs * per_epoch
    assert lr[1] < 0.5e-3  # warming up, not the peak from step 1
    peak_step = max(steps, key=lr.get)
    assert warmup - 1 <= peak_step <= warmup + 10
    assert lr[steps[-1]] < 0.5 * lr[peak_step]  # cosine decay
    # The count was cached: a second source does not walk the files.
    monkeypatch.setattr(
        record_count, "count_tfrecord_file",
        lambda *a: pytest.fail("counted again"),
    )
    again = make_source(data)
    assert again.split("train").example_count() == WORLD.num_train
