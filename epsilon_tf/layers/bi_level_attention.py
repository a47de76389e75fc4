"""BiAM's two context blocks: region-level and scene-level attention."""

import keras
from keras import layers, ops

from epsilon_tf import _validation as check
from epsilon_tf.layers.grid_convolution import GridConvolution
from epsilon_tf.layers.self_attention import SelfAttention

# PyTorch's BatchNorm2d(momentum=0.99) keeps 1% of the old statistics:
# Keras' momentum is the other weight.
BIAM_BN_MOMENTUM = 0.01


@keras.saving.register_keras_serializable(package="epsilon_tf")
class RegionContextBlock(layers.Layer):
    """BiAM's region-contextualized block (RCB): self-attention + FFN.

    For region features H [N, C] (BiAM, ICCV 2021, `model.py`, `RCB`):
    `O = H + dropout(MHA(H, H, H))` with `num_heads` heads of width
    C / num_heads (attention dropout `dropout`), then
    `E = O + W2 relu(W1 O + b1) + b2` with W1 of width `ffn_dim`. No
    normalization (as BiAM).

    Args:
        num_heads: int. Attention heads (C must divide by it). Defaults
            to 8.
        ffn_dim: int or None. Inner width of the feed-forward part; None
            takes 2 C (as BiAM). Defaults to None.
        dropout: float. Attention and output dropout. Defaults to 0.1.

    Call arguments:
        inputs: float tensor [batch, N, C].
        training: bool. Enables dropout.

    Returns:
        A tuple `(E [batch, N, C], attention [batch, heads, N, N])`.

    Example:

    >>> rcb = RegionContextBlock(num_heads=8)
    >>> e, attention = rcb(np.zeros((2, 196, 256), "float32"))
    >>> attention.shape
    TensorShape([2, 8, 196, 196])
    """

    def __init__(self, num_heads=8, ffn_dim=None, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = check.positive_int("num_heads", num_heads)
        self.ffn_dim = (
            None if ffn_dim is None else check.positive_int("ffn_dim", ffn_dim)
        )
        self.dropout = check.rate("dropout", dropout)

    def build(self, input_shape):
        _, num, channels = check.input_shape_of("inputs", input_shape, 3)
        if channels % self.num_heads:
            raise ValueError(
                f"The {channels} channels must divide into `num_heads` "
                f"heads. Received: num_heads={self.num_heads}"
            )
        dtype = self.dtype_policy
        self.attention = SelfAttention(
            self.num_heads, channels // self.num_heads,
            dropout=self.dropout, name="attention", dtype=dtype,
        )
        self.attention.build((None, num, channels))
        self.output_dropout = layers.Dropout(self.dropout, dtype=dtype)
        self.ffn_inner = layers.Dense(
            self.ffn_dim or 2 * channels, activation="relu", name="ffn_1",
            dtype=dtype,
        )
        self.ffn_inner.build((None, num, channels))
        self.ffn_outer = layers.Dense(channels, name="ffn_2", dtype=dtype)
        self.ffn_outer.build((None, num, self.ffn_inner.units))

    def call(self, inputs, training=None):
        attended, attention = self.attention(
            inputs, return_attention_scores=True, training=training
        )
        x = inputs + self.output_dropout(attended, training=training)
        return x + self.ffn_outer(self.ffn_inner(x)), attention

    def compute_output_shape(self, input_shape):
        batch, num, channels = check.input_shape_of("inputs", input_shape, 3)
        return (batch, num, channels), (batch, self.num_heads, num, num)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads, ffn_dim=self.ffn_dim,
            dropout=self.dropout,
        )
        return config


@keras.saving.register_keras_serializable(package="epsilon_tf")
class SceneContextBlock(layers.Layer):
    """BiAM's scene-contextualized block (SCB): a scene-gated channel map.

    For region features H [N, C] and a global feature g [G] of the image
    (BiAM, `model.py`, `SCB`): `Q = leaky_relu(H Wc + bc, 0.2)` (BiAM's
    query and value are the same 1x1 convolution of H, so V = Q),
    `k = Wg dropout(g) + bg` [C], the channel gate
    `r = sigmoid(mean_n(Q) * k)` [C], `Cg = r * Q` (every region's
    channels scaled) and `E = Cg + BN(relu(conv3x3(Cg)))` over the region
    grid.

    Args:
        dropout: float. Dropout on g (BiAM: 0.2). Defaults to 0.2.
        grid_shape: tuple (rows, cols) or None (square). Defaults to None.

    Call arguments:
        inputs: list `[H [batch, N, C], g [batch, G]]`.
        training: bool. Dropout and batch statistics.

    Returns:
        A tuple `(E [batch, N, C], gate r [batch, C])`.

    Example:

    >>> scb = SceneContextBlock()
    >>> e, gate = scb([np.zeros((2, 196, 256), "float32"),
    ...                np.zeros((2, 512), "float32")])
    >>> gate.shape
    TensorShape([2, 256])
    """

    def __init__(self, dropout=0.2, grid_shape=None, **kwargs):
        super().__init__(**kwargs)
        self.dropout = check.rate("dropout", dropout)
        self.grid_shape = None if grid_shape is None else tuple(
            int(v) for v in grid_shape
        )

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(
            input_shape
        ) != 2 or not isinstance(input_shape[0], (list, tuple)):
            raise ValueError(
                "`SceneContextBlock` is called on [regions, global_feature]. "
                f"Received: {input_shape}"
            )
        regions, scene = input_shape
        _, num, channels = check.input_shape_of("regions", regions, 3)
        check.input_shape_of("global_feature", scene, 2)
        dtype = self.dtype_policy
        self.channel = layers.Dense(channels, name="channel", dtype=dtype)
        self.channel.build((None, num, channels))
        self.scene_dropout = layers.Dropout(self.dropout, dtype=dtype)
        self.scene_key = layers.Dense(channels, name="scene_key", dtype=dtype)
        self.scene_key.build((None, scene[-1]))
        self.context = GridConvolution(
            channels, 3, use_bias=True, order="conv_relu_bn",
            grid_shape=self.grid_shape, momentum=BIAM_BN_MOMENTUM,
            name="context", dtype=dtype,
        )
        self.context.build((None, num, channels))

    def call(self, inputs, training=None):
        regions, scene = inputs
        query = ops.leaky_relu(self.channel(regions), negative_slope=0.2)
        key = self.scene_key(self.scene_dropout(scene, training=training))
        gate = ops.sigmoid(ops.mean(query, axis=1) * key)
        gated = gate[:, None, :] * query
        return gated + self.context(gated, training=training), gate

    def compute_output_shape(self, input_shape):
        regions, _ = input_shape
        return tuple(regions), (regions[0], regions[-1])

    def get_config(self):
        config = super().get_config()
        config.update(dropout=self.dropout, grid_shape=self.grid_shape)
        return config
