"""Folded inference forms: the pieces the layers' serving folds share.

A layer's `fold_for_inference()` returns its *folded form*: an object
whose `__call__` computes the layer's `call` in inference mode with fewer,
larger TensorFlow ops over weights folded in float64 and held as NumPy
arrays, which become graph constants when a `tf.function` traces the form
(the way Keras gives `quantize` / `quantized_call` to each layer). The
exporter composes the forms (`epsilon_tf/export/inference_graph.py`);
BUILD_NOTES.md, "Serving latency", says why they are fast:

- a LayerNormalization's scale and offset are folded into the weights of
  the matrix product that follows it (`fold_norm`), so the layer norm is
  a bare normalization (`normalize`, with the layer's own epsilon);
- products of a few rows run as one 2-D MatMul (`rows_affine`);
- weights are constants, not variables: TensorFlow's oneDNN MatMul keeps
  its reordered copy of a constant weight but reorders a variable's on
  every call.

A form reads its layer's weights once, when it is made: it is a snapshot,
not a view (fold again after training further). Every fold is exact
algebra, so a form equals its layer's `call` to float32 rounding
(tests/test_folding.py, on perturbed weights). With `precision=
"bfloat16"` the Transformer's matrix products run in bfloat16 (weights
stored in bfloat16), everything else in float32.

Unlike the layers (Keras ops, any backend), the forms are TensorFlow: they
exist for TensorFlow SavedModels.
"""

import numpy as np
import tensorflow as tf

PRECISIONS = ("float32", "bfloat16")


def check_precision(precision):
    """`precision` if it is one of `PRECISIONS`, else a ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {PRECISIONS}. "
            f"Received: precision={precision!r}"
        )
    return precision


def require_built(layer):
    """Raises unless `layer` is built (a fold reads its weights)."""
    if not layer.built:
        raise ValueError(
            f"Layer {layer.name!r} is not built: call it once (or build it) "
            "before folding it"
        )
    return layer


def compute_dtype(precision):
    """The dtype of the folded matrix products for `precision`."""
    return tf.bfloat16 if check_precision(precision) == "bfloat16" else (
        tf.float32
    )


def to_f64(weight):
    """A weight (variable or array) as a float64 NumPy array."""
    value = weight.numpy() if hasattr(weight, "numpy") else weight
    return np.asarray(value, dtype=np.float64)


def dense_weights(layer, input_dim=None):
    """`(kernel [in, out], bias [out])` of a Dense or EinsumDense, float64.

    An EinsumDense kernel (e.g. [width, heads, key_dim]) is reshaped to 2-D
    with `input_dim` rows; a missing bias is zeros.
    """
    kernel = to_f64(layer.kernel)
    kernel = kernel.reshape(input_dim or kernel.shape[0], -1)
    bias = getattr(layer, "bias", None)
    bias = (
        np.zeros(kernel.shape[1]) if bias is None else to_f64(bias).reshape(-1)
    )
    return kernel, bias


def norm_weights(layer):
    """`(gamma, beta, epsilon)` of a LayerNormalization over the last axis.

    A missing scale is ones, a missing offset zeros. RMS scaling is not a
    layer normalization and is refused.
    """
    if getattr(layer, "rms_scaling", False):
        raise ValueError(
            f"Layer {layer.name!r}: a LayerNormalization with "
            "`rms_scaling=True` has no folded form"
        )
    width = int(layer.gamma.shape[-1] if layer.scale else layer.beta.shape[-1])
    gamma = to_f64(layer.gamma) if layer.scale else np.ones(width)
    beta = to_f64(layer.beta) if layer.center else np.zeros(width)
    return gamma, beta, float(layer.epsilon)


def fold_norm(gamma, beta, kernel, bias):
    """`LN(x) W + b == n(x) W' + b'`, n the bare normalization."""
    return gamma[:, None] * kernel, beta @ kernel + bias


def fold_standardization(mean, std, kernel, bias):
    """`((x - mean) / std) W + b == x W' + b'` (a fixed affine folded in)."""
    scaled = kernel / std[:, None]
    return scaled, bias - mean @ scaled


def standardization_weights(layer):
    """`(mean, std)` of a `FeatureStandardization`, float64."""
    return to_f64(layer.mean), to_f64(layer.std)


def normalize(x, epsilon):
    """Layer normalization without scale and offset, over the last axis."""
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    centered = x - mean
    variance = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
    return centered * tf.math.rsqrt(variance + epsilon)


def affine(x, kernel, bias):
    """`x @ kernel + bias` for a 2-D `x` (one fusable MatMul + BiasAdd)."""
    return tf.nn.bias_add(tf.matmul(x, kernel), bias)


def rows_affine(x, kernel, bias=None):
    """`x @ kernel (+ bias)` for x [batch, rows, in], as one 2-D product.

    At batch 1 a 2-D MatMul of a few rows costs a quarter of the batched
    (einsum) form on this CPU (BUILD_NOTES.md, "Serving latency").
    """
    rows = x.shape[1]
    y = tf.matmul(tf.reshape(x, (-1, x.shape[2])), kernel)
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    return tf.reshape(y, (-1, rows, y.shape[-1]))


def constant(array, dtype=tf.float32):
    """A folded float64 array stored in `dtype` (float32 or bfloat16)."""
    array = np.asarray(array, dtype=np.float32)
    return array.astype(dtype.as_numpy_dtype) if dtype != tf.float32 else array


def constants(arrays, dtype=tf.float32):
    return tuple(constant(a, dtype) for a in arrays)


class FoldedNormDense:
    """The folded form of `dense(norm(x))`: a token norm, then a Dense.

    The norm is a LayerNormalization (its scale and offset folded into the
    Dense; the bare normalization stays), a `FeatureStandardization` (a
    fixed affine: folded whole) or an Identity.

    Epsilon's token projection (`token_norm` then `token_projection`) is
    this pair of Keras layers; the Dense's activation is applied as the
    layer applies it.

    Args:
        norm: a built `keras.layers.LayerNormalization` (last axis),
            `FeatureStandardization` or `keras.layers.Identity`.
        dense: the built `keras.layers.Dense` that follows it.
        precision: str. `"float32"` or `"bfloat16"` (the product in
            bfloat16). Defaults to `"float32"`.

    Call arguments:
        x: float32 tensor [..., C] with a static last axis and, for rank 3,
            a static second axis.

    Returns:
        float32 tensor [..., D], `dense(norm(x))`.
    """

    def __init__(self, norm, dense, precision="float32"):
        self.compute = compute_dtype(precision)
        weights = dense_weights(dense)
        if hasattr(norm, "set_statistics"):  # FeatureStandardization
            self.epsilon = None
            folded = fold_standardization(
                *standardization_weights(norm), *weights
            )
        elif hasattr(norm, "gamma") or hasattr(norm, "beta"):
            gamma, beta, self.epsilon = norm_weights(norm)
            folded = fold_norm(gamma, beta, *weights)
        else:  # Identity
            self.epsilon, folded = None, weights
        self.kernel, self.bias = constants(folded, self.compute)
        self.activation = dense.activation
        self.units = int(self.kernel.shape[1])

    def __call__(self, x):
        rank = x.shape.rank
        flat = tf.reshape(x, (-1, x.shape[-1])) if rank != 2 else x
        if self.epsilon is not None:
            flat = normalize(flat, self.epsilon)
        h = tf.cast(flat, self.compute)
        y = tf.cast(
            self.activation(affine(h, self.kernel, self.bias)), tf.float32
        )
        if rank == 2:
            return y
        return tf.reshape(y, (-1,) + tuple(x.shape[1:-1]) + (self.units,))
