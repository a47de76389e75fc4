"""In-graph checks of a SavedModel signature's inputs.

The signatures declare their inputs' shapes, but neither TF Serving nor a
loaded signature called from Python compares a fed tensor with the
declaration, so `check_input` validates rank, sizes and (optionally)
finiteness inside the graph, with messages naming the input.
"""

import numpy as np
import tensorflow as tf


def shape_text(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_input(x, name, expected, finite=False):
    """Asserts the shape of a signature input; returns it reshaped.

    The signatures declare their inputs' shapes, but neither TF Serving
    nor a loaded signature called from Python checks a fed tensor against
    them (tested), and a declared shape lets TensorFlow fold shape checks
    into constants. So the input's static shape is first erased
    (`PlaceholderWithDefault` with an unknown shape) and the rank is read
    from the shape's values; these in-graph assertions then reject a bad
    request, with a message naming the input, the expected and the
    received shape. Exactly one of the two
    assertions can fail (rank, then sizes). The input is then coerced to
    the expected shape by a reshape that cannot fail (a no-op for a valid
    input), so no kernel error can pre-empt the assertion's message; the
    assertions are stateful, so the function always runs them.

    Args:
        x: tensor of the signature input.
        name: str. The signature input's name, for the messages.
        expected: tuple. `(leading, *sizes)`: `leading` (str) names the
            free first axis ("batch"); the other sizes are fixed.
        finite: bool. Also reject NaN and Inf values (`CheckNumerics`,
            whose message names the input). Defaults to False.
    """
    x = tf.raw_ops.PlaceholderWithDefault(
        input=x, shape=tf.TensorShape(None), name=f"{name}_unchecked"
    )
    rank = len(expected)
    shape = tf.shape(x)
    # The rank counted from the runtime shape vector's values: inside a
    # function TensorFlow's optimizer still sees the declared rank through
    # `PlaceholderWithDefault` and folds `tf.rank` (or `tf.size(shape)`)
    # into a constant, which would let a rank-4 input through.
    received_rank = tf.reduce_sum(tf.cast(shape >= 0, tf.int32))
    rank_ok = tf.equal(received_rank, rank)
    tf.debugging.Assert(
        rank_ok,
        [
            f"Input `{name}` must have rank {rank}: expected shape "
            f"{shape_text(expected)}, received shape",
            shape,
        ],
        summarize=16,
        name=f"check_{name}_rank",
    )
    inner = tuple(int(d) for d in expected[1:])
    if inner:
        padded = tf.concat([shape, tf.fill([rank], -1)], axis=0)
        sizes_ok = tf.reduce_all(tf.equal(padded[1:rank], inner))
        tf.debugging.Assert(
            tf.logical_or(tf.logical_not(rank_ok), sizes_ok),
            [
                f"Input `{name}` has the wrong size: expected shape "
                f"{shape_text(expected)}, received shape",
                shape,
            ],
            summarize=16,
            name=f"check_{name}_shape",
        )
    row = int(np.prod(inner))
    flat = tf.reshape(x, [-1])
    rows = tf.size(flat) // row
    x = tf.reshape(flat[: rows * row], (-1,) + inner)
    if finite:
        x = tf.debugging.check_numerics(
            x,
            f"Input `{name}` must be finite: it holds NaN or Inf",
            name=f"check_{name}_finite",
        )
    return x
