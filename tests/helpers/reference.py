"""Plain NumPy statements of the layers' maths, the tests' references."""

import numpy as np
from scipy.special import erf


def np_layer_norm(x, layer):
    gamma, beta = (w.numpy() for w in layer.weights)
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + layer.epsilon) * gamma + beta


def np_dense(x, layer):
    kernel, bias = (w.numpy() for w in layer.weights)
    return x @ kernel + bias


def np_gelu(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_conv2d_same(x, kernel, bias=None):
    """Stride-1 'same' convolution, TensorFlow's padding (extra after).

    x [b, H, W, Cin], kernel [kh, kw, Cin, Cout].
    """
    kh, kw = kernel.shape[:2]
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(
        x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0))
    )
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(kh):
        for j in range(kw):
            out += padded[:, i:i + h, j:j + w, :] @ kernel[i, j]
    return out if bias is None else out + bias


def np_batch_norm_inference(x, layer):
    gamma, beta, mean, var = (w.numpy() for w in layer.weights)
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta
