"""Self-attention with Keras' MultiHeadAttention variables, fused products.

`SelfAttention` subclasses `keras.layers.MultiHeadAttention` and keeps
everything of it but the self-attention `call`: the same sublayers
(`query_dense`, `key_dense`, `value_dense`, `output_dense`, the softmax
and the attention dropout), hence the same variables, names, shapes,
`.keras` and checkpoint paths, and the same config. When query, key and
value are one tensor (`layer(x)` or `layer(x, x)`) and nothing else is
asked of it (no masks, no gate, default attention axes, a 3-D input),
the call is the fused form: the three [D, H, dk] kernels are
concatenated into one [D, 3 H dk] matrix (and the biases into one
vector), so the projections are one product on the 2-D
[batch * tokens, D] stream; the heads are split by one reshape and
transpose, `Q K^T` and `A V` are batched matrix products over
[batch, heads] and the output projection is one 2-D product. Every
other call is `MultiHeadAttention.call`.

On a 2-core AMD EPYC, forward + backward in training (dropout 0.1) takes
0.75x Keras' time at GPA's shape ([64, 56, 128], 4 heads) and 0.47x at
BiAM's ([64, 49, 256], 8 heads, scores returned); Epsilon's whole train
step at the synthetic world's shape, 0.85x (measured once with a
side-by-side script since retired; BUILD_NOTES.md, "Training").
"""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="epsilon_tf")
class SelfAttention(layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention`, fused for self-attention.

    Takes `MultiHeadAttention`'s arguments and has its variables and
    config; `value` may be omitted (self-attention). The math is Keras':
    `softmax(Q K^T / sqrt(key_dim))` over the keys, dropout on the
    attention probabilities in training only, and the attention scores
    [batch, heads, N, N] (before dropout) with
    `return_attention_scores=True`.

    The attribute `fused` (True; not part of the config) chooses the
    fused self-attention path; False sends every call to
    `MultiHeadAttention.call` (the tests compare the two paths in the
    same model). Set it before the first call that a `tf.function`
    traces.

    Example:

    >>> attention = SelfAttention(num_heads=4, key_dim=8)
    >>> x = np.zeros((2, 10, 32), "float32")
    >>> out, scores = attention(x, return_attention_scores=True)
    >>> out.shape, scores.shape
    (TensorShape([2, 10, 32]), TensorShape([2, 4, 10, 10]))
    """

    fused = True

    def build(self, query_shape, value_shape=None, key_shape=None):
        super().build(
            query_shape,
            query_shape if value_shape is None else value_shape,
            key_shape,
        )

    def call(
        self,
        query,
        value=None,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
    ):
        if value is None:
            value = query
        plain = (
            query_mask is None and value_mask is None and key_mask is None
            and attention_mask is None and not use_causal_mask
        )
        same = value is query and (key is None or key is query)
        if plain and same and self._fusable(query):
            return self._self_attention(
                query, return_attention_scores, training
            )
        return super().call(
            query, value, key=key, query_mask=query_mask,
            value_mask=value_mask, key_mask=key_mask,
            attention_mask=attention_mask,
            return_attention_scores=return_attention_scores,
            training=training, use_causal_mask=use_causal_mask,
        )

    def _fusable(self, query):
        """Whether the fused path computes this layer's call on `query`."""
        dense = (self._query_dense, self._key_dense, self._value_dense,
                 self._output_dense)
        return (
            self.fused
            and len(query.shape) == 3
            # A Keras mask on the query (`keras.src`'s get_keras_mask).
            and getattr(query, "_keras_mask", None) is None
            and not self._use_gate
            and not self._flash_attention
            and self._sliding_window is None
            and self._output_shape is None
            and self._activity_regularizer is None
            and tuple(self._attention_axes) == (1,)
            and all(getattr(d, "quantization_mode", None) is None
                    for d in dense)
        )

    def _self_attention(self, x, return_attention_scores, training):
        heads, key_dim, value_dim = (
            self._num_heads, self._key_dim, self._value_dim
        )
        width = x.shape[-1]
        batch, tokens = ops.shape(x)[0], ops.shape(x)[1]
        projections = (self._query_dense, self._key_dense, self._value_dense)
        kernel = ops.concatenate(
            [ops.reshape(d.kernel, (width, -1)) for d in projections], axis=1
        )
        qkv = ops.matmul(ops.reshape(x, (-1, width)), kernel)
        if self._use_bias:
            qkv = ops.add(qkv, ops.concatenate(
                [ops.reshape(d.bias, (-1,)) for d in projections], axis=0
            ))
        if key_dim == value_dim:
            q, k, v = ops.unstack(ops.transpose(
                ops.reshape(qkv, (batch, tokens, 3, heads, key_dim)),
                (2, 0, 3, 1, 4),
            ))
        else:
            q, k, v = (
                ops.transpose(
                    ops.reshape(part, (batch, tokens, heads, dim)),
                    (0, 2, 1, 3),
                )
                for part, dim in zip(
                    ops.split(qkv, [heads * key_dim, 2 * heads * key_dim], 1),
                    (key_dim, key_dim, value_dim),
                )
            )
        # [batch, heads, tokens, dim]; the scaling is Keras' (on Q).
        q = ops.multiply(q, ops.cast(self._inverse_sqrt_key_dim, q.dtype))
        scores = self._softmax(ops.einsum("bhnd,bhmd->bhnm", q, k))
        probabilities = self._dropout_layer(scores, training=training)
        mixed = ops.reshape(
            ops.transpose(ops.matmul(probabilities, v), (0, 2, 1, 3)),
            (-1, heads * value_dim),
        )
        out = self._output_dense
        y = ops.matmul(mixed, ops.reshape(out.kernel, (heads * value_dim, -1)))
        if self._use_bias:
            y = ops.add(y, out.bias)
        y = ops.reshape(y, (batch, tokens, -1))
        return (y, scores) if return_attention_scores else y

    def compute_output_shape(self, query_shape, value_shape=None,
                             key_shape=None):
        return super().compute_output_shape(
            query_shape, query_shape if value_shape is None else value_shape,
            key_shape,
        )

    def compute_output_spec(self, query, value=None, key=None, **kwargs):
        return super().compute_output_spec(
            query, query if value is None else value, key, **kwargs
        )
