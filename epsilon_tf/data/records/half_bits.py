"""float16 bits to float32 values with integer ops only (no DT_HALF op).

The native format may store features as float16. Decoding them with
`tf.bitcast(..., tf.float16)` puts DT_HALF tensors in the input graph,
and on a CPU without AVX-512 FP16 TensorFlow's oneDNN graph pass then
logs `E... util.cc:131] oneDNN supports DT_HALF only on platforms with
AVX-512 ...` (whenever TF_CPP_MIN_LOG_LEVEL lets errors through).
`float16_bits_to_float32` builds the IEEE-754 float32 bit pattern from
the half's sign, exponent and mantissa with uint32 arithmetic, so no
DT_HALF tensor exists; it is exact for every one of the 65,536 patterns
(subnormals, infinities and NaNs included).
"""

import tensorflow as tf


def float16_bits_to_float32(bits):
    """float32 values of IEEE half-precision bit patterns.

    Args:
        bits: uint16 tensor (any shape) of float16 bit patterns.

    Returns:
        float32 tensor of the same shape, equal to
        `tf.cast(tf.bitcast(bits, tf.float16), tf.float32)`.
    """
    h = tf.cast(bits, tf.uint32)
    sign = tf.bitwise.left_shift(tf.bitwise.bitwise_and(h, 0x8000), 16)
    exponent = tf.bitwise.bitwise_and(tf.bitwise.right_shift(h, 10), 0x1F)
    mantissa = tf.bitwise.bitwise_and(h, 0x3FF)
    shifted = tf.bitwise.left_shift(mantissa, 13)
    normal = tf.bitwise.bitwise_or(
        tf.bitwise.left_shift(exponent + 112, 23), shifted
    )
    special = tf.bitwise.bitwise_or(tf.constant(0x7F800000, tf.uint32),
                                    shifted)  # inf, NaN
    patterns = tf.where(tf.equal(exponent, 31), special, normal)
    values = tf.bitcast(tf.bitwise.bitwise_or(patterns, sign), tf.float32)
    # Zero and subnormals: mantissa * 2^-24, exactly representable.
    tiny = tf.cast(mantissa, tf.float32) * (2.0 ** -24)
    tiny = tf.where(tf.equal(sign, 0), tiny, -tiny)
    return tf.where(tf.equal(exponent, 0), tiny, values)
