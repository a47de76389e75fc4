"""How the readers' data checks run and report, and the shape they check.

The readers check every record inside the `tf.data` graph (`stream`) or
in a Python generator (BiAM's HDF5 files). This module holds what those
checks share with the pipeline that consumes the readers
(`epsilon_tf.data.pipeline`, which imports it from here):

- `checked_map`: the map a function with checks runs in;
- `remember_data_error` / `take_data_error`: the message of a data error
  raised in Python inside a pipeline, which `pipeline.input_errors`
  reports instead of TensorFlow's wrapped one;
- `check_feature_shape`: the one check of a `feature_shape` argument.
"""

import threading

import tensorflow as tf
from tensorflow.python.framework import config as tf_config

# The message of the last data error raised in Python inside a tf.data
# pipeline (a generator or a py_function), which TensorFlow re-raises
# wrapped in an OpError with the Python traceback as text.
_PYTHON_ERRORS = []
_PYTHON_ERRORS_LOCK = threading.Lock()

# The start of the message of NaN/Inf features (the readers' checks and
# the pipeline's); `pipeline.input_data_error` finds it in TensorFlow errors.
NON_FINITE_MESSAGE = "NaN or Inf in the features of"


def remember_data_error(message):
    """Notes a data error raised in Python inside a `tf.data` pipeline.

    `pipeline.input_errors()` then reports this message instead of
    TensorFlow's wrapped one (which carries the Python traceback as text).
    """
    with _PYTHON_ERRORS_LOCK:
        _PYTHON_ERRORS.clear()
        _PYTHON_ERRORS.append(" ".join(str(message).split()))


def take_data_error():
    """The message `remember_data_error` noted last (once), or None."""
    with _PYTHON_ERRORS_LOCK:
        return _PYTHON_ERRORS.pop() if _PYTHON_ERRORS else None


def parallel_calls():
    """`num_parallel_calls` for a map whose function has checks.

    Under op determinism (`TrainConfig.deterministic`, the default)
    tf.data's `make_deterministic` rewrite turns every parallel map whose
    function holds a stateful op (`Assert`, `py_function`) into a plain
    `MapDataset`, but keeps the `use_unbounded_threadpool` attribute that
    op does not have, and TensorFlow then logs a ~750-character
    "NodeDef mentions attribute use_unbounded_threadpool" error each time
    the pipeline is instantiated. Such a map runs sequentially under
    determinism anyway, so ask for that directly (None); without
    determinism it runs in parallel (AUTOTUNE).
    """
    if tf_config.is_op_determinism_enabled():
        return None
    return tf.data.AUTOTUNE


def checked_map(ds, fn):
    """`ds.map(fn)` for a function with checks (see `parallel_calls`)."""
    calls = parallel_calls()
    if calls is None:
        return ds.map(fn)
    return ds.map(fn, num_parallel_calls=calls, deterministic=True)


def check_feature_shape(feature_shape):
    """`feature_shape` as a tuple of two ints, (num_regions, channels).

    Raises:
        ValueError: not two positive sizes.
    """
    shape = tuple(int(d) for d in feature_shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(
            "`feature_shape` must be (num_regions, channels) with positive "
            f"sizes. Received: feature_shape={feature_shape!r}"
        )
    return shape
