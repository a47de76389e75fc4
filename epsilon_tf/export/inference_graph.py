"""Epsilon's inference pass as plain TensorFlow ops over folded weights.

The exported signatures do not trace the Keras layers. They run this
graph, which computes the same function with fewer, larger ops, because at
batch 1 on a CPU the per-op cost of the many small ops in the Keras graph
is as large as the matrix products (BUILD_NOTES.md, "Serving latency"):

- Every LayerNormalization's scale and offset are folded into the weights
  of the matrix product that follows it, so a layer norm is a bare
  normalization.
- The attention's query, key and value projections are one matrix product
  (the `1/sqrt(key_dim)` scale folded into the query columns), and the
  residual stream stays a 2-D [batch * tokens, width] matrix, so that
  grappler fuses each product with its bias (and GELU) into one oneDNN op.
- GPA's grouping attention never projects the N image tokens: the group
  queries are mapped into the token space instead (`q Wk^T`, a G-row
  product), the value and word-space projections are one matrix applied to
  the G grouped rows, and the key bias term, constant along the softmax
  axis, is dropped where it cancels (`grouping="tokens"`).
- The fusion weight, temperatures and score scale are one positive
  coefficient per branch, applied to the branch's scores.

Every fold is exact algebra; only the rounding differs from the Keras
model (the export tests compare the two to 1e-5).

`precision="bfloat16"` stores the Transformer's weights in bfloat16 and
runs its matrix products in bfloat16 (AMX/AVX512-BF16 on recent Intel
CPUs), keeping the residual stream, the normalizations, the grouping, GFP
and the label scores in float32. It is an opt-in speed/accuracy trade
(BUILD_NOTES.md gives the measured score differences); float32 is the
default and the reference.
"""

import math

import numpy as np
import tensorflow as tf

from epsilon_tf.models.epsilon import (
    FUSION,
    GFP,
    GPA,
    SCALE,
    SEMANTIC_NORM,
    fusion_weight,
)

PRECISIONS = ("float32", "bfloat16")
_LN_EPSILON = 1e-6
_UNIT_NORM_EPSILON = 1e-12


def _f64(weight):
    return np.asarray(weight.numpy(), dtype=np.float64)


def _dense(layer):
    return _f64(layer.kernel), _f64(layer.bias)


def _norm(layer):
    if not (layer.center and layer.scale) or layer.rms_scaling:
        raise ValueError(
            f"Layer {layer.name!r}: only LayerNormalization with center "
            "and scale (no RMS scaling) can be folded"
        )
    if not math.isclose(layer.epsilon, _LN_EPSILON):
        raise ValueError(
            f"Layer {layer.name!r} has epsilon {layer.epsilon}; the "
            f"inference graph assumes {_LN_EPSILON}"
        )
    return _f64(layer.gamma), _f64(layer.beta)


def _fold_norm(norm, kernel, bias):
    """`LN(x) W + b` == `n(x) W' + b'` with n the bare normalization."""
    gamma, beta = norm
    return gamma[:, None] * kernel, beta @ kernel + bias


def _normalize(x):
    """Layer normalization without scale and offset, over the last axis."""
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    centered = x - mean
    variance = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
    return centered * tf.math.rsqrt(variance + _LN_EPSILON)


def _unit(x):
    """`x / max(||x||, 1e-12)` over the last axis (UnitNormalization)."""
    square_sum = tf.reduce_sum(tf.square(x), axis=-1, keepdims=True)
    return x * tf.math.rsqrt(tf.maximum(square_sum, _UNIT_NORM_EPSILON**2))


def _affine(x, kernel, bias):
    return tf.nn.bias_add(tf.matmul(x, kernel), bias)


def _rows_affine(x, kernel, bias=None):
    """`x @ kernel (+ bias)` for x [batch, rows, in], as one 2-D product.

    At batch 1 a 2-D MatMul of a few rows costs a quarter of the batched
    (einsum) form on this CPU (BUILD_NOTES.md, "Serving latency").
    """
    rows = x.shape[1]
    y = tf.matmul(tf.reshape(x, (-1, x.shape[2])), kernel)
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    return tf.reshape(y, (-1, rows, y.shape[-1]))


def _as_numpy(array, dtype):
    array = np.asarray(array, dtype=np.float32)
    return array.astype(dtype.as_numpy_dtype) if dtype != tf.float32 else array


class InferenceGraph:
    """The forward pass of a trained Epsilon model, folded for serving.

    The weights are read once from the Keras model and folded in float64.
    The graph holds them as NumPy arrays that become constants of the
    functions that call it (at trace time), so a SavedModel of those
    functions needs neither Keras nor `epsilon_tf`. Constants rather than
    variables: TensorFlow's oneDNN MatMul keeps its reordered copy of a
    constant weight (`is_filter_const`) but reorders a variable's on every
    call, which at batch 1 costs about as much as the product itself
    (BUILD_NOTES.md, "Serving latency").
    Trace the graph once (one `tf.function` around `semantic`) and call
    that function from every signature, so the SavedModel stores the
    weights once.

    Args:
        model: a functional model from `build_epsilon` (or reloaded from
            `.keras`). Its trained layers are read, not kept.
        precision: str. `"float32"` (default) or `"bfloat16"` (the
            Transformer's matrix products in bfloat16).

    Example:

    >>> graph = InferenceGraph(model)
    >>> out = graph.semantic(features)      # prompts, maps, global vectors
    >>> scores = graph.scores(out, unit_label_vectors)   # == model scores
    """

    def __init__(self, model, precision="float32"):
        if precision not in PRECISIONS:
            raise ValueError(
                f"`precision` must be one of {PRECISIONS}. "
                f"Received: precision={precision!r}"
            )
        self.precision = precision
        self._compute = tf.bfloat16 if precision == "bfloat16" else tf.float32
        names = {layer.name for layer in model.layers}
        self.branches = tuple(b for b in (GPA, GFP) if b in names)
        self.normalize_semantic = SEMANTIC_NORM in names
        trunk = _fold_norm(
            _norm(model.get_layer("token_norm")),
            *_dense(model.get_layer("token_projection")),
        )
        self.token_projection = self._arrays(trunk, self._compute)
        self.width = int(trunk[0].shape[1])
        if GPA in names:
            self._build_gpa(model.get_layer(GPA))
        if GFP in names:
            self._build_gfp(model.get_layer(GFP))
        self._build_coefficients(model, names)

    # Weights --------------------------------------------------------------

    @staticmethod
    def _arrays(arrays, dtype=tf.float32):
        return tuple(_as_numpy(a, dtype) for a in arrays)

    def _build_gpa(self, gpa):
        width = self.width
        self.num_prompts = gpa.num_prompts
        self.grouping = gpa.grouping
        self.prompt_tokens = np.asarray(gpa.prompt_tokens.numpy(), np.float32)
        self.blocks = []
        for block in gpa.blocks:
            attention = block.attention
            heads = attention.num_heads
            key_dim = width // heads
            kernels, biases = [], []
            for dense, factor in (
                (attention.query_dense, 1.0 / math.sqrt(key_dim)),
                (attention.key_dense, 1.0),
                (attention.value_dense, 1.0),
            ):
                kernels.append(
                    _f64(dense.kernel).reshape(width, width) * factor
                )
                biases.append(_f64(dense.bias).reshape(width) * factor)
            qkv = _fold_norm(
                _norm(block.attention_norm),
                np.concatenate(kernels, axis=1),
                np.concatenate(biases),
            )
            out_kernel = _f64(attention.output_dense.kernel).reshape(
                width, width
            )
            out_bias = _f64(attention.output_dense.bias)
            mlp_in = _fold_norm(
                _norm(block.mlp_norm), *_dense(block.mlp_hidden)
            )
            mlp_out = _dense(block.mlp_output)
            arrays = self._arrays(
                (*qkv, out_kernel, out_bias, *mlp_in, *mlp_out), self._compute
            )
            self.blocks.append((heads, arrays))

        gamma, beta = _norm(gpa.encoded_norm)
        wq, bq = _dense(gpa.query)
        wk, bk = _dense(gpa.key)
        wv, bv = _dense(gpa.value)
        wo, bo = _dense(gpa.output_projection)
        scale = 1.0 / math.sqrt(width)
        query = _fold_norm((gamma, beta), wq, bq)  # q = n_g Wq' + bq'
        key_kernel = gamma[:, None] * wk  # k = n_im Wk' + (beta Wk + bk)
        key_bias = beta @ wk + bk
        # logits = q Wk'^T n_im^T + q . key_bias, both scaled
        group_kernel = query[0] @ key_kernel.T * scale
        group_bias = query[1] @ key_kernel.T * scale
        if self.grouping == "groups":
            # The key-bias term varies over the prompts, the softmax axis:
            # keep it as one more output column.
            group_kernel = np.concatenate(
                [group_kernel, (query[0] @ key_bias * scale)[:, None]], axis=1
            )
            group_bias = np.append(group_bias, query[1] @ key_bias * scale)
        value_kernel = (gamma[:, None] * wv) @ wo
        value_bias = (beta @ wv + bv) @ wo
        if self.grouping == "tokens":
            # Each assignment row sums to 1: A (im Wv + bv) = (A im) Wv + bv.
            biases = (value_bias + bo,)
        else:
            biases = (value_bias, bo)
        self.grouping_weights = self._arrays(
            (group_kernel, group_bias, value_kernel, *biases)
        )

    def _build_gfp(self, gfp):
        self.num_global = gfp.num_global
        self.embedding_dim = gfp.embedding_dim
        self.pooling = gfp.pooling
        arrays = list(_dense(gfp.input_projection))
        for norm, inner, outer in gfp.block_layers:
            arrays += [*_fold_norm(_norm(norm), *_dense(inner)), *_dense(outer)]
        arrays += list(
            _fold_norm(_norm(gfp.output_norm), *_dense(gfp.output_projection))
        )
        self.gfp_weights = self._arrays(arrays)

    def _build_coefficients(self, model, names):
        rescaling = model.get_layer(SCALE)
        if float(rescaling.offset) != 0.0:
            raise ValueError(
                f"Layer {SCALE!r} has offset {rescaling.offset}; the "
                "inference graph folds a pure scale only"
            )
        scale = float(rescaling.scale)
        weight = fusion_weight(model)
        if FUSION in names:
            temperature = np.exp(
                model.get_layer(FUSION).log_temperature.numpy()
            )
            coefficients = [
                weight * temperature[0] * scale,
                (1.0 - weight) * temperature[1] * scale,
            ]
        else:
            coefficients = [scale]
        # max_p(c s_p) == c max_p(s_p) needs c > 0: sigmoid, exp and the
        # (validated) score scale are positive.
        if min(coefficients) <= 0:
            raise ValueError(
                f"Branch score coefficients must be positive. Received: "
                f"{coefficients}"
            )
        self.coefficients = np.asarray(coefficients, np.float32)
        self.fusion_weight = np.float32(weight)

    # Forward --------------------------------------------------------------

    def _encoder_block(self, x, batch, tokens, heads, weights):
        """One pre-norm block on the 2-D residual stream [batch*tokens, D]."""
        qkv_kernel, qkv_bias, out_kernel, out_bias = weights[:4]
        in_kernel, in_bias, mlp_kernel, mlp_bias = weights[4:]
        width = self.width
        key_dim = width // heads
        compute = self._compute
        h = tf.cast(_normalize(x), compute)
        qkv = tf.reshape(
            _affine(h, qkv_kernel, qkv_bias), (batch, tokens, 3, heads, key_dim)
        )
        q, k, v = tf.unstack(tf.transpose(qkv, (2, 0, 3, 1, 4)))
        attention = tf.nn.softmax(tf.matmul(q, k, transpose_b=True))
        mixed = tf.reshape(
            tf.transpose(tf.matmul(attention, v), (0, 2, 1, 3)), (-1, width)
        )
        x = x + tf.cast(_affine(mixed, out_kernel, out_bias), tf.float32)
        h = tf.cast(_normalize(x), compute)
        hidden = tf.nn.gelu(_affine(h, in_kernel, in_bias), approximate=False)
        return x + tf.cast(_affine(hidden, mlp_kernel, mlp_bias), tf.float32)

    def _gpa(self, tokens):
        batch = tf.shape(tokens)[0]
        g = self.num_prompts
        prompts = tf.broadcast_to(
            self.prompt_tokens[None], (batch, g, self.width)
        )
        x = tf.concat([prompts, tokens], axis=1)
        count = x.shape[1]
        x = tf.reshape(x, (-1, self.width))
        for heads, weights in self.blocks:
            x = self._encoder_block(x, batch, count, heads, weights)
        n = tf.reshape(_normalize(x), (batch, count, self.width))
        group, image = n[:, :g], n[:, g:]
        group_kernel, group_bias, value_kernel = self.grouping_weights[:3]
        queries = _rows_affine(group, group_kernel, group_bias)
        if self.grouping == "tokens":
            logits = tf.matmul(queries, image, transpose_b=True)
            assignments = tf.nn.softmax(logits, axis=-1)
            grouped = tf.matmul(assignments, image)
            (bias,) = self.grouping_weights[3:]
            prompts = _rows_affine(grouped, value_kernel, bias)
        else:
            value_bias, out_bias = self.grouping_weights[3:]
            logits = (
                tf.matmul(queries[..., :-1], image, transpose_b=True)
                + queries[..., -1:]
            )
            assignments = tf.nn.softmax(logits, axis=1)
            mass = tf.reduce_sum(assignments, axis=-1, keepdims=True)
            grouped = tf.matmul(assignments, image)
            prompts = (
                _rows_affine(grouped, value_kernel) + mass * value_bias
            ) / (mass + 1e-6) + out_bias
        return prompts, assignments

    def _gfp(self, tokens):
        pools = []
        if self.pooling in ("avg_max", "avg"):
            pools.append(tf.reduce_mean(tokens, axis=1))
        if self.pooling in ("avg_max", "max"):
            pools.append(tf.reduce_max(tokens, axis=1))
        weights = self.gfp_weights
        x = _affine(tf.concat(pools, axis=-1), weights[0], weights[1])
        for i in range(2, len(weights) - 2, 4):
            hidden = tf.nn.gelu(
                _affine(_normalize(x), weights[i], weights[i + 1]),
                approximate=False,
            )
            x = x + _affine(hidden, weights[i + 2], weights[i + 3])
        y = _affine(_normalize(x), weights[-2], weights[-1])
        return tf.reshape(y, (-1, self.num_global, self.embedding_dim))

    def semantic(self, features):
        """`features` [batch, N, C] float32 -> the semantic outputs.

        Returns:
            A dict with `local_prompts` [batch, G, E] and `assignments`
            [batch, G, N] (GPA) and `global_vectors` [batch, M, E] (GFP),
            exactly the model's outputs of the same names.
        """
        n, c = features.shape[1], features.shape[2]
        kernel, bias = self.token_projection
        flat = tf.cast(_normalize(tf.reshape(features, (-1, c))), self._compute)
        tokens = tf.reshape(
            tf.cast(_affine(flat, kernel, bias), tf.float32),
            (-1, n, self.width),
        )
        outputs = {}
        if GPA in self.branches:
            prompts, assignments = self._gpa(tokens)
            outputs["local_prompts"] = (
                _unit(prompts) if self.normalize_semantic else prompts
            )
            outputs["assignments"] = assignments
        if GFP in self.branches:
            vectors = self._gfp(tokens)
            outputs["global_vectors"] = (
                _unit(vectors) if self.normalize_semantic else vectors
            )
        return outputs

    def scores(self, outputs, label_embeddings):
        """The fused, scaled label scores [batch, K] of `semantic`'s outputs.

        Args:
            outputs: the dict `semantic` returns.
            label_embeddings: float32 [K, E], rows L2-normalized.
        """
        total = None
        keys = [k for k in ("local_prompts", "global_vectors") if k in outputs]
        for i, key in enumerate(keys):
            vectors = outputs[key]
            products = tf.matmul(
                tf.reshape(vectors, (-1, vectors.shape[2])),
                label_embeddings,
                transpose_b=True,
            )  # 2-D, see `_rows_affine`
            branch = tf.reduce_max(
                tf.reshape(
                    products,
                    (-1, vectors.shape[1], tf.shape(label_embeddings)[0]),
                ),
                axis=1,
            )
            branch = branch * self.coefficients[i]
            total = branch if total is None else total + branch
        return total
