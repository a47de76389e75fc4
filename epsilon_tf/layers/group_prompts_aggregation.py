"""Group Prompts Aggregation (GPA): image tokens -> G semantic prompts."""

import math

import keras
from keras import layers, ops

from epsilon_tf import _validation as check


@keras.saving.register_keras_serializable(package="epsilon_tf")
class TransformerEncoderBlock(layers.Layer):
    """A pre-norm Transformer encoder block (self-attention + MLP).

    Args:
        num_heads: int. Attention heads. Defaults to 8.
        mlp_ratio: float. Hidden width of the MLP relative to the input
            width. Defaults to 2.0.
        dropout: float. Dropout on attention weights and MLP output.
            Defaults to 0.0.

    Call arguments:
        inputs: float tensor [batch, tokens, width].
        training: bool. Enables dropout.

    Example:

    >>> block = TransformerEncoderBlock(num_heads=4)
    >>> block(np.zeros((2, 10, 32), "float32")).shape
    TensorShape([2, 10, 32])
    """

    def __init__(self, num_heads=8, mlp_ratio=2.0, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = check.positive_int("num_heads", num_heads)
        if not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ValueError(
                "`mlp_ratio` must be a positive number. "
                f"Received: mlp_ratio={mlp_ratio!r}"
            )
        self.mlp_ratio = float(mlp_ratio)
        self.dropout = check.rate("dropout", dropout)

    def build(self, input_shape):
        check.input_shape_of("inputs", input_shape, 3)
        width = input_shape[-1]
        if width % self.num_heads:
            raise ValueError(
                f"The token width ({width}) must be divisible by "
                f"`num_heads`. Received: num_heads={self.num_heads}"
            )
        hidden = max(1, int(round(width * self.mlp_ratio)))
        self.attention_norm = layers.LayerNormalization(
            epsilon=1e-6, name="attention_norm"
        )
        self.attention = layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=width // self.num_heads,
            dropout=self.dropout,
            name="attention",
        )
        self.mlp_norm = layers.LayerNormalization(epsilon=1e-6, name="mlp_norm")
        self.mlp_hidden = layers.Dense(hidden, activation="gelu", name="mlp_1")
        self.mlp_output = layers.Dense(width, name="mlp_2")
        self.mlp_dropout = layers.Dropout(self.dropout)
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_hidden.build(input_shape)
        self.mlp_output.build(tuple(input_shape[:-1]) + (hidden,))

    def call(self, inputs, training=None):
        x = self.attention_norm(inputs)
        x = inputs + self.attention(x, x, training=training)
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
        )
        return config


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

    Call arguments:
        inputs: float tensor [batch, N, D], the projected image tokens.
        training: bool. Enables dropout.

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
        self.blocks = []
        for i in range(self.num_layers):
            block = TransformerEncoderBlock(
                num_heads=self.num_heads,
                mlp_ratio=self.mlp_ratio,
                dropout=self.dropout,
                name=f"encoder_block_{i}",
            )
            block.build(joint_shape)
            self.blocks.append(block)
            # Also an attribute: `tf.train.Checkpoint` does not follow
            # sublayers held only in a Python list.
            setattr(self, f"encoder_block_{i}", block)
        self.encoded_norm = layers.LayerNormalization(
            epsilon=1e-6, name="encoded_norm"
        )
        self.encoded_norm.build(joint_shape)
        self.query = layers.Dense(width, name="group_query")
        self.key = layers.Dense(width, name="group_key")
        self.value = layers.Dense(width, name="group_value")
        for dense in (self.query, self.key, self.value):
            dense.build(joint_shape)
        self.output_projection = layers.Dense(
            self.embedding_dim, name="to_word_space"
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
            assignments = ops.softmax(logits, axis=1)
            mass = ops.sum(assignments, axis=-1, keepdims=True)
            grouped = ops.einsum("bgn,bnd->bgd", assignments, v) / (
                mass + 1e-6
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
        )
        return config
