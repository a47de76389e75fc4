"""`SharedMultiAttention`: LESA's T label-agnostic attentions over regions."""

import keras
from keras import layers, ops

from epsilon_tf import _validation as check


@keras.saving.register_keras_serializable(package="epsilon_tf")
class SharedMultiAttention(layers.Layer):
    """T attention maps over the regions, shared by every label (LESA).

    For the region features X [N, C] of one image (LESA, CVPR 2020,
    `core/model_share_attention.py`, `_attention_layer_MLP`):
    `H = tanh(X W1 + b1)` [N, hidden], logits `A = (H W2 + b2)^T` [T, N],
    maps `alpha = softmax(A)` over the N regions, and attended features
    `F = alpha X` [T, C]. (LESA appends a constant 1 to X and to H instead
    of using biases; the products are the same.)

    Args:
        num_attentions: int. T. Defaults to 10.
        hidden_dim: int or None. Width of H; None takes C (as LESA).
            Defaults to None.

    Call arguments:
        inputs: float tensor [batch, N, C].

    Returns:
        A tuple `(attended [batch, T, C], maps [batch, T, N],
        logits [batch, T, N])`.

    Example:

    >>> attention = SharedMultiAttention(num_attentions=10)
    >>> attended, maps, logits = attention(np.zeros((2, 196, 512), "float32"))
    >>> attended.shape, maps.shape
    (TensorShape([2, 10, 512]), TensorShape([2, 10, 196]))
    """

    def __init__(self, num_attentions=10, hidden_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.num_attentions = check.positive_int(
            "num_attentions", num_attentions
        )
        self.hidden_dim = (
            None if hidden_dim is None
            else check.positive_int("hidden_dim", hidden_dim)
        )

    def build(self, input_shape):
        _, _, channels = check.input_shape_of("inputs", input_shape, 3)
        hidden = self.hidden_dim or channels
        # LESA: variance_scaling_initializer (He, truncated normal).
        self.hidden = layers.Dense(
            hidden, activation="tanh", kernel_initializer="he_normal",
            name="hidden", dtype=self.dtype_policy,
        )
        self.hidden.build((None, None, channels))
        self.logits = layers.Dense(
            self.num_attentions, kernel_initializer="he_normal",
            name="logits", dtype=self.dtype_policy,
        )
        self.logits.build((None, None, hidden))

    def call(self, inputs):
        logits = ops.transpose(self.logits(self.hidden(inputs)), (0, 2, 1))
        maps = ops.softmax(logits, axis=-1)
        attended = ops.einsum("btn,bnc->btc", maps, inputs)
        return attended, maps, logits

    def compute_output_shape(self, input_shape):
        batch, num, channels = check.input_shape_of("inputs", input_shape, 3)
        maps = (batch, self.num_attentions, num)
        return (batch, self.num_attentions, channels), maps, maps

    def get_config(self):
        config = super().get_config()
        config.update(
            num_attentions=self.num_attentions, hidden_dim=self.hidden_dim
        )
        return config
