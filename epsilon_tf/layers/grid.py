"""How region tokens lie on a grid, and the CLS token set apart from it.

The grid layers of LESA and BiAM (`GridConvolution`, BiAM's context
blocks) need the regions of a square s x s grid, row-major. Features come
in two such layouts:

- N = s * s tokens: the grid itself (VGG19 conv5: 14 x 14 = 196; ResNet
  layer4: 7 x 7 = 49);
- N = s * s + 1 tokens: a CLS token (token 0, a global summary of the
  image, as a ViT puts first) followed by the s x s patch grid (ViT-B/16
  at 224 px: 1 + 14 x 14 = 197).

Any other N is an error for a model with grid layers. `token_layout`
tells the two apart; `SplitClsToken` separates token 0 from the patches
so that the grid layers see the patches and the model uses the CLS token
explicitly (how, is each model's documented choice).
"""

import math

import keras
from keras import layers

from epsilon_tf import _validation as check


def token_layout(num_regions, model="this model"):
    """`(has_cls, side)` of `num_regions` tokens: s*s or 1 + s*s.

    Args:
        num_regions: int. N, the tokens of one image.
        model: str. The model's name, for the error message.

    Returns:
        `(False, s)` when N = s * s, `(True, s)` when N = s * s + 1 (a
        CLS token, then the s x s patches).

    Raises:
        ValueError: N is neither.

    Example:

    >>> token_layout(196), token_layout(197), token_layout(49)
    ((False, 14), (True, 14), (False, 7))
    """
    n = check.positive_int("num_regions", num_regions)
    side = math.isqrt(n)
    if side * side == n:
        return False, side
    side = math.isqrt(n - 1)
    if side * side == n - 1:
        return True, side
    raise ValueError(
        f"{model} needs region tokens on a square grid: N = s*s regions "
        "(e.g. 196 = 14x14) or a CLS token plus a square grid, N = s*s + 1 "
        f"(e.g. 197). Received: {n} regions per image (the features' "
        "shape, --feature_shape)"
    )


@keras.saving.register_keras_serializable(package="epsilon_tf")
class SplitClsToken(layers.Layer):
    """Splits `[batch, 1 + P, C]` tokens into the CLS token and the patches.

    Weightless.

    Args:
        keepdims: bool. Return the CLS token as [batch, 1, C] (True) or
            [batch, C] (False). Defaults to False.

    Call arguments:
        inputs: float tensor [batch, 1 + P, C], token 0 the CLS token.

    Returns:
        A tuple `(cls, patches)`: [batch, C] (or [batch, 1, C]) and
        [batch, P, C].

    Example:

    >>> cls, patches = SplitClsToken()(np.zeros((2, 197, 8), "float32"))
    >>> cls.shape, patches.shape
    (TensorShape([2, 8]), TensorShape([2, 196, 8]))
    """

    def __init__(self, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = check.boolean("keepdims", keepdims)

    def build(self, input_shape):
        _, num, _ = check.input_shape_of("inputs", input_shape, 3)
        if num is not None and num < 2:
            raise ValueError(
                "`SplitClsToken` needs a CLS token and at least one patch. "
                f"Received: {num} tokens"
            )

    def call(self, inputs):
        cls = inputs[:, :1, :] if self.keepdims else inputs[:, 0, :]
        return cls, inputs[:, 1:, :]

    def compute_output_shape(self, input_shape):
        batch, num, channels = input_shape
        patches = None if num is None else num - 1
        cls = (batch, 1, channels) if self.keepdims else (batch, channels)
        return cls, (batch, patches, channels)

    def get_config(self):
        config = super().get_config()
        config.update(keepdims=self.keepdims)
        return config
