"""Every split's stream runs without tf.data's autotune model thread
(`epsilon_tf.data.base.stream_options`), through every pipeline built on
it, and gives the same elements in the same order as with the autotuner.
"""

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny

from epsilon_tf.config import LossConfig, TrainConfig
from epsilon_tf.data import memory_cache
from epsilon_tf.data.pipeline import make_dataset
from epsilon_tf.training.task import Task


def _native_source(directory):
    return tiny.native_source(tiny.write_native(directory))


@pytest.fixture(params=["in_memory", "native", "memory_cache"])
def source(request, tmp_path):
    if request.param == "in_memory":
        return tiny.in_memory_source()
    native = _native_source(tmp_path)
    if request.param == "native":
        return native
    return memory_cache.cache_in_memory(native)


def _pipelines(source):
    """Every kind of dataset the trainer and the evaluation iterate."""
    task = Task(tiny.model_config(), LossConfig(), TrainConfig(batch_size=8),
                source.label_space, source=source)
    return {
        "reader": source.split("train").dataset(files_seed=1),
        "train": task.build_train_inputs(8, seed=3),
        "validation": task.build_validation_inputs(16, cache=True),
        "test": make_dataset(source.split("test"), 16),
        "checked": make_dataset(source.split("train"), 8, shuffle_seed=2,
                                check_finite=True),
    }


def test_no_autotune_model_thread_anywhere(source):
    for name, dataset in _pipelines(source).items():
        assert dataset.options().autotune.enabled is False, name
        # The pipeline still runs (and yields what it should).
        first = next(iter(dataset))
        assert first is not None, name


def _with_autotune(dataset):
    options = tf.data.Options()
    options.autotune.enabled = True
    return dataset.with_options(options)


def _elements(dataset):
    out = []
    for element in dataset:
        flat = tf.nest.flatten(element)
        out.append([np.asarray(t) for t in flat])
    return out


def test_same_stream_as_with_the_autotuner(tmp_path):
    """Autotune changes parallelism and buffers, never the data: the
    shuffled, carved, checked, parallel-batched stream is the same element
    for element (the reference: the same pipeline with autotune on)."""
    source = _native_source(tmp_path)
    for name, dataset in _pipelines(source).items():
        tf.random.set_seed(7)
        ours = _elements(dataset)
        tf.random.set_seed(7)
        theirs = _elements(_with_autotune(dataset))
        assert len(ours) == len(theirs) > 0, name
        for a, b in zip(ours, theirs, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y, err_msg=name)
    # The train stream is really shuffled (not trivially in file order).
    ids = np.concatenate([b["image_id"].numpy() for b in make_dataset(
        source.split("train"), 8, shuffle_seed=3)])
    in_order = np.concatenate([b["image_id"].numpy() for b in make_dataset(
        source.split("train"), 8)])
    assert sorted(ids) == sorted(in_order) and list(ids) != list(in_order)
