"""Group Prompts Aggregation (GPA): image tokens -> G semantic prompts."""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from epsilon_tf import _validation as check
from epsilon_tf.layers import folding
from epsilon_tf.layers.self_attention import SelfAttention
from epsilon_tf.layers.tracking import track_for_checkpoint

# Added to each prompt's assignment mass before dividing by it
# (`grouping="groups"`): a prompt that no token chose stays finite.
GROUP_MASS_EPSILON = 1e-6


@keras.saving.register_keras_serializable(package="epsilon_tf")
class TransformerEncoderBlock(layers.Layer):
    """A pre-norm Transformer encoder block (self-attention + MLP).

    Args:
        num_heads: int. Attention heads. Defaults to 8.
        mlp_ratio: float. Hidden width of the MLP relative to the input
            width. Defaults to 2.0.
        dropout: float. Dropout on attention weights and MLP output.
            Defaults to 0.0.
        layer_norm_epsilon: float. Epsilon of the two layer norms.
            Defaults to 1e-6.

    Call arguments:
        inputs: float tensor [batch, tokens, width].
        training: bool. Enables dropout.

    `fold_for_inference()` returns the block's folded serving form
    (`FoldedEncoderBlock`).

    Example:

    >>> block = TransformerEncoderBlock(num_heads=4)
    >>> block(np.zeros((2, 10, 32), "float32")).shape
    TensorShape([2, 10, 32])
    """

    def __init__(
        self,
        num_heads=8,
        mlp_ratio=2.0,
        dropout=0.0,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check.positive_int("num_heads", num_heads)
        if not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ValueError(
                "`mlp_ratio` must be a positive number. "
                f"Received: mlp_ratio={mlp_ratio!r}"
            )
        self.mlp_ratio = float(mlp_ratio)
        self.dropout = check.rate("dropout", dropout)
        self.layer_norm_epsilon = check.positive_number(
            "layer_norm_epsilon", layer_norm_epsilon
        )

    def build(self, input_shape):
        check.input_shape_of("inputs", input_shape, 3)
        width = input_shape[-1]
        if width % self.num_heads:
            raise ValueError(
                f"The token width ({width}) must be divisible by "
                f"`num_heads`. Received: num_heads={self.num_heads}"
            )
        hidden = max(1, int(round(width * self.mlp_ratio)))
        dtype = self.dtype_policy
        self.attention_norm = layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_norm",
            dtype=dtype,
        )
        self.attention = SelfAttention(
            num_heads=self.num_heads,
            key_dim=width // self.num_heads,
            dropout=self.dropout,
            name="attention",
            dtype=dtype,
        )
        self.mlp_norm = layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="mlp_norm", dtype=dtype
        )
        self.mlp_hidden = layers.Dense(
            hidden, activation="gelu", name="mlp_1", dtype=dtype
        )
        self.mlp_output = layers.Dense(width, name="mlp_2", dtype=dtype)
        self.mlp_dropout = layers.Dropout(self.dropout, dtype=dtype)
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_hidden.build(input_shape)
        self.mlp_output.build(tuple(input_shape[:-1]) + (hidden,))

    def call(self, inputs, training=None):
        x = self.attention_norm(inputs)
        x = inputs + self.attention(x, training=training)
        y = self.mlp_output(self.mlp_hidden(self.mlp_norm(x)))
        return x + self.mlp_dropout(y, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config

    def fold_for_inference(self, precision="float32"):
        """The block's folded inference form (`FoldedEncoderBlock`)."""
        return FoldedEncoderBlock(folding.require_built(self), precision)


class FoldedEncoderBlock:
    """`TransformerEncoderBlock.call` (inference), folded.

    Each layer norm's scale and offset are folded into the product after
    it; the query, key and value projections are one [D, 3D] product with
    `1/sqrt(key_dim)` folded into the query columns; the residual stream
    is a 2-D [batch * tokens, D] matrix, so that grappler fuses every
    product with its bias (and activation) into one oneDNN op.

    Args:
        block: a built `TransformerEncoderBlock`.
        precision: str. `"float32"` or `"bfloat16"` (the products in
            bfloat16, the residual stream and norms in float32).

    Call arguments:
        x: float32 tensor [batch, tokens, D] (static tokens and D).
    """

    def __init__(self, block, precision="float32"):
        attention = block.attention
        self.compute = folding.compute_dtype(precision)
        self.heads = int(attention.num_heads)
        self.key_dim = int(attention.key_dim)
        gamma, beta, self.attention_epsilon = folding.norm_weights(
            block.attention_norm
        )
        width = int(gamma.shape[0])
        self.width = width
        scale = 1.0 / math.sqrt(self.key_dim)
        kernels, biases = [], []
        for dense, factor in (
            (attention.query_dense, scale),
            (attention.key_dense, 1.0),
            (attention.value_dense, 1.0),
        ):
            kernel, bias = folding.dense_weights(dense, width)
            kernels.append(kernel * factor)
            biases.append(bias * factor)
        qkv = folding.fold_norm(
            gamma, beta, np.concatenate(kernels, 1), np.concatenate(biases)
        )
        out = folding.dense_weights(
            attention.output_dense, self.heads * self.key_dim
        )
        gamma, beta, self.mlp_epsilon = folding.norm_weights(block.mlp_norm)
        mlp_in = folding.fold_norm(
            gamma, beta, *folding.dense_weights(block.mlp_hidden)
        )
        self.activation = block.mlp_hidden.activation
        self.weights = folding.constants(
            (*qkv, *out, *mlp_in, *folding.dense_weights(block.mlp_output)),
            self.compute,
        )

    def stream(self, x, batch, tokens):
        """The block on the 2-D residual stream x [batch * tokens, D]."""
        qkv_kernel, qkv_bias, out_kernel, out_bias = self.weights[:4]
        in_kernel, in_bias, mlp_kernel, mlp_bias = self.weights[4:]
        heads, key_dim, compute = self.heads, self.key_dim, self.compute
        h = tf.cast(folding.normalize(x, self.attention_epsilon), compute)
        qkv = tf.reshape(
            folding.affine(h, qkv_kernel, qkv_bias),
            (batch, tokens, 3, heads, key_dim),
        )
        q, k, v = tf.unstack(tf.transpose(qkv, (2, 0, 3, 1, 4)))
        attention = tf.nn.softmax(tf.matmul(q, k, transpose_b=True))
        mixed = tf.reshape(
            tf.transpose(tf.matmul(attention, v), (0, 2, 1, 3)),
            (-1, heads * key_dim),
        )
        x = x + tf.cast(folding.affine(mixed, out_kernel, out_bias), x.dtype)
        h = tf.cast(folding.normalize(x, self.mlp_epsilon), compute)
        hidden = self.activation(folding.affine(h, in_kernel, in_bias))
        return x + tf.cast(
            folding.affine(hidden, mlp_kernel, mlp_bias), x.dtype
        )

    def __call__(self, x):
        tokens = x.shape[1]
        y = self.stream(
            tf.reshape(x, (-1, self.width)), tf.shape(x)[0], tokens
        )
        return tf.reshape(y, (-1, tokens, self.width))


@keras.saving.register_keras_serializable(package="epsilon_tf")
class GroupPromptsAggregation(layers.Layer):
    """Groups image tokens into `num_prompts` semantic prompts (GPA).

    `num_prompts` learnable prompt tokens GT are concatenated with the N
    image tokens F, `Input = [GT; F]`, and passed through `num_layers`
    Transformer encoder blocks. A grouping attention then aggregates the
    encoded tokens into one vector per prompt,
    `GrS = A . F_V` with `A = softmax(GT_Q . F_K^T / sqrt(d))`, and a final
    `Dense(embedding_dim)` maps each group vector into the word-vector
    space.

    With `grouping="tokens"` (default) the softmax runs over the N tokens,
    so each prompt attends to the regions it needs. With
    `grouping="groups"` it runs over the prompts (GroupViT-style): every
    token is shared out among the prompts, and each group vector is the
    assignment-weighted mean of its tokens.

    Args:
        num_prompts: int. Number of group prompts G. Defaults to 7.
        embedding_dim: int. Width E of the word-vector space. Defaults to
            300.
        num_layers: int. Transformer encoder blocks L. Defaults to 1.
        num_heads: int. Attention heads per block. Defaults to 8.
        mlp_ratio: float. MLP width relative to the token width. Defaults
            to 2.0.
        grouping: str. `"tokens"` or `"groups"`, the axis the grouping
            softmax normalizes over. Defaults to `"tokens"`.
        dropout: float. Dropout inside the encoder. Defaults to 0.0.
        layer_norm_epsilon: float. Epsilon of every layer norm (the
            encoder blocks' and the final one). Defaults to 1e-6.

    Call arguments:
        inputs: float tensor [batch, N, D], the projected image tokens.
        training: bool. Enables dropout.

    `fold_for_inference()` returns the layer's folded serving form
    (`FoldedGroupPromptsAggregation`).

    Returns:
        A tuple `(prompts, assignments)`: `prompts` [batch, G, E], the
        local semantic prompts; `assignments` [batch, G, N], the grouping
        attention map (what the visualizations draw).

    Example:

    >>> gpa = GroupPromptsAggregation(num_prompts=7, embedding_dim=300)
    >>> prompts, maps = gpa(np.zeros((2, 196, 512), "float32"))
    >>> prompts.shape, maps.shape
    (TensorShape([2, 7, 300]), TensorShape([2, 7, 196]))
    """

    def __init__(
        self,
        num_prompts=7,
        embedding_dim=300,
        num_layers=1,
        num_heads=8,
        mlp_ratio=2.0,
        grouping="tokens",
        dropout=0.0,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_prompts = check.positive_int("num_prompts", num_prompts)
        self.embedding_dim = check.positive_int("embedding_dim", embedding_dim)
        self.num_layers = check.non_negative_int("num_layers", num_layers)
        self.num_heads = check.positive_int("num_heads", num_heads)
        self.mlp_ratio = mlp_ratio
        self.grouping = check.choice("grouping", grouping, ("tokens", "groups"))
        self.dropout = check.rate("dropout", dropout)
        self.layer_norm_epsilon = check.positive_number(
            "layer_norm_epsilon", layer_norm_epsilon
        )

    def build(self, input_shape):
        check.input_shape_of("inputs", input_shape, 3)
        width = input_shape[-1]
        if width is None:
            raise ValueError(
                "The token width (last axis of `inputs`) must be known. "
                f"Received: shape={tuple(input_shape)}"
            )
        self.width = width
        self.prompt_tokens = self.add_weight(
            name="prompt_tokens",
            shape=(self.num_prompts, width),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        joint_shape = (input_shape[0], None, width)
        dtype = self.dtype_policy
        self.blocks = []
        for i in range(self.num_layers):
            block = TransformerEncoderBlock(
                num_heads=self.num_heads,
                mlp_ratio=self.mlp_ratio,
                dropout=self.dropout,
                layer_norm_epsilon=self.layer_norm_epsilon,
                name=f"encoder_block_{i}",
                dtype=dtype,
            )
            block.build(joint_shape)
            self.blocks.append(
                track_for_checkpoint(self, block, f"encoder_block_{i}")
            )
        self.encoded_norm = layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="encoded_norm", dtype=dtype
        )
        self.encoded_norm.build(joint_shape)
        self.query = layers.Dense(width, name="group_query", dtype=dtype)
        self.key = layers.Dense(width, name="group_key", dtype=dtype)
        self.value = layers.Dense(width, name="group_value", dtype=dtype)
        for dense in (self.query, self.key, self.value):
            dense.build(joint_shape)
        self.output_projection = layers.Dense(
            self.embedding_dim, name="to_word_space", dtype=dtype
        )
        self.output_projection.build((input_shape[0], None, width))

    def call(self, inputs, training=None):
        batch = ops.shape(inputs)[0]
        prompts = ops.broadcast_to(
            ops.expand_dims(self.prompt_tokens, 0),
            (batch, self.num_prompts, self.width),
        )
        x = ops.concatenate([ops.cast(prompts, inputs.dtype), inputs], axis=1)
        for block in self.blocks:
            x = block(x, training=training)
        x = self.encoded_norm(x)
        group_tokens = x[:, : self.num_prompts]
        image_tokens = x[:, self.num_prompts :]
        q = self.query(group_tokens)
        k = self.key(image_tokens)
        v = self.value(image_tokens)
        logits = ops.einsum("bgd,bnd->bgn", q, k) / math.sqrt(self.width)
        if self.grouping == "tokens":
            assignments = ops.softmax(logits, axis=-1)
            grouped = ops.einsum("bgn,bnd->bgd", assignments, v)
        else:
            # One prompt: the softmax over the prompts is exactly 1 (Keras
            # warns about a softmax over an axis of size 1).
            assignments = (ops.ones_like(logits) if self.num_prompts == 1
                           else ops.softmax(logits, axis=1))
            mass = ops.sum(assignments, axis=-1, keepdims=True)
            grouped = ops.einsum("bgn,bnd->bgd", assignments, v) / (
                mass + GROUP_MASS_EPSILON
            )
        return self.output_projection(grouped), assignments

    def compute_output_shape(self, input_shape):
        check.input_shape_of("inputs", input_shape, 3)
        batch, tokens = input_shape[0], input_shape[1]
        return (
            (batch, self.num_prompts, self.embedding_dim),
            (batch, self.num_prompts, tokens),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            num_prompts=self.num_prompts,
            embedding_dim=self.embedding_dim,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            grouping=self.grouping,
            dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config

    def fold_for_inference(self, precision="float32"):
        """The layer's folded inference form (`FoldedGroupPromptsAggregation`).

        Args:
            precision: str. `"float32"` or `"bfloat16"` (the encoder
                blocks' products in bfloat16; the grouping stays float32).
        """
        return FoldedGroupPromptsAggregation(
            folding.require_built(self), precision
        )


class FoldedGroupPromptsAggregation:
    """`GroupPromptsAggregation.call` (inference), folded.

    The encoder blocks are `FoldedEncoderBlock`s on one 2-D residual
    stream. The grouping attention never projects the N image tokens: the
    final layer norm's scale and offset and the key projection are folded
    into the group queries (`q Wk^T`, a G-row product), the value and
    word-space projections are one matrix applied to the G grouped rows,
    and the key bias term, constant along the softmax axis, is dropped
    where it cancels (`grouping="tokens"`). Exact because each softmax row
    sums to 1 (`"tokens"`) or because the mass division is kept
    (`"groups"`).

    Args:
        gpa: a built `GroupPromptsAggregation`.
        precision: str. `"float32"` or `"bfloat16"`.

    Call arguments:
        tokens: float32 tensor [batch, N, D] (static N and D).

    Returns:
        `(prompts [batch, G, E], assignments [batch, G, N])`, float32.
    """

    def __init__(self, gpa, precision="float32"):
        width = int(gpa.width)
        self.width = width
        self.num_prompts = gpa.num_prompts
        self.grouping = gpa.grouping
        self.prompt_tokens = folding.constant(folding.to_f64(gpa.prompt_tokens))
        self.blocks = [b.fold_for_inference(precision) for b in gpa.blocks]
        gamma, beta, self.epsilon = folding.norm_weights(gpa.encoded_norm)
        wq, bq = folding.dense_weights(gpa.query)
        wk, bk = folding.dense_weights(gpa.key)
        wv, bv = folding.dense_weights(gpa.value)
        wo, bo = folding.dense_weights(gpa.output_projection)
        scale = 1.0 / math.sqrt(width)
        # q = n_g Wq' + bq' on the bare-normalized prompts n_g.
        query = folding.fold_norm(gamma, beta, wq, bq)
        key_kernel = gamma[:, None] * wk  # k = n_im Wk' + (beta Wk + bk)
        key_bias = beta @ wk + bk
        # logits = (q Wk'^T) n_im^T + q . key_bias, both scaled.
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
        self.weights = folding.constants(
            (group_kernel, group_bias, value_kernel, *biases)
        )

    def __call__(self, tokens):
        batch = tf.shape(tokens)[0]
        g, width = self.num_prompts, self.width
        prompts = tf.broadcast_to(self.prompt_tokens[None], (batch, g, width))
        x = tf.concat([prompts, tokens], axis=1)
        count = x.shape[1]
        x = tf.reshape(x, (-1, width))
        for block in self.blocks:
            x = block.stream(x, batch, count)
        n = tf.reshape(
            folding.normalize(x, self.epsilon), (batch, count, width)
        )
        group, image = n[:, :g], n[:, g:]
        group_kernel, group_bias, value_kernel = self.weights[:3]
        queries = folding.rows_affine(group, group_kernel, group_bias)
        if self.grouping == "tokens":
            logits = tf.matmul(queries, image, transpose_b=True)
            assignments = tf.nn.softmax(logits, axis=-1)
            grouped = tf.matmul(assignments, image)
            (bias,) = self.weights[3:]
            prompts = folding.rows_affine(grouped, value_kernel, bias)
        else:
            value_bias, out_bias = self.weights[3:]
            logits = (
                tf.matmul(queries[..., :-1], image, transpose_b=True)
                + queries[..., -1:]
            )
            assignments = tf.nn.softmax(logits, axis=1)
            mass = tf.reduce_sum(assignments, axis=-1, keepdims=True)
            grouped = tf.matmul(assignments, image)
            prompts = (
                folding.rows_affine(grouped, value_kernel) + mass * value_bias
            ) / (mass + GROUP_MASS_EPSILON) + out_bias
        return prompts, assignments
