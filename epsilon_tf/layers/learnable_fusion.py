"""`LearnableFusion`: a class-agnostic weighted sum of two score maps."""

import math

import keras
import numpy as np
from keras import layers, ops

from epsilon_tf import _validation as check
from epsilon_tf.layers import folding


@keras.saving.register_keras_serializable(package="epsilon_tf")
class LearnableFusion(layers.Layer):
    """Fuses local and global label scores with a learned scalar weight.

    `s = a * t_l * s_local + (1 - a) * t_g * s_global`, `a = sigmoid(theta)`.
    `theta` is one trainable scalar (`mode="learned"`) or a constant
    (`mode="fixed"`, the ablation). With `learn_temperature=True` the
    per-branch temperatures `t = exp(log_t)` are learned too; otherwise
    they are 1. Nothing depends on the label, so the fusion transfers to
    unseen labels.

    Args:
        mode: str. `"learned"` or `"fixed"`. Defaults to `"learned"`.
        initial_weight: float in (0, 1). Initial (or fixed) value of `a`.
            Defaults to 0.5.
        learn_temperature: bool. Learn a temperature per branch. Defaults
            to False.

    Call arguments:
        inputs: list `[s_local, s_global]` of float tensors [batch, K].

    `fold_for_inference()` returns the layer's serving form
    (`FoldedLearnableFusion`): one coefficient per branch.

    Example:

    >>> fusion = LearnableFusion(initial_weight=0.25)
    >>> local = np.ones((2, 3), "float32")
    >>> glob = np.full((2, 3), 3.0, "float32")
    >>> fusion([local, glob]).numpy().tolist()  # 0.25 * 1 + 0.75 * 3
    [[2.5, 2.5, 2.5], [2.5, 2.5, 2.5]]
    >>> round(float(fusion.fusion_weight()), 6)
    0.25
    """

    def __init__(
        self,
        mode="learned",
        initial_weight=0.5,
        learn_temperature=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.mode = check.choice("mode", mode, ("learned", "fixed"))
        if (
            not isinstance(initial_weight, (int, float))
            or not 0.0 < initial_weight < 1.0
        ):
            raise ValueError(
                "`initial_weight` must be a float in (0, 1). "
                f"Received: initial_weight={initial_weight!r}"
            )
        self.initial_weight = float(initial_weight)
        self.learn_temperature = bool(learn_temperature)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(
                "`LearnableFusion` is called on [s_local, s_global]. "
                f"Received: input_shape={input_shape}"
            )
        local, glob = (tuple(s) for s in input_shape)
        if local != glob:
            raise ValueError(
                "The local and global scores must have the same shape. "
                f"Received: {local} and {glob}"
            )
        w = self.initial_weight
        self.theta = self.add_weight(
            name="theta",
            shape=(),
            initializer=keras.initializers.Constant(math.log(w / (1 - w))),
            trainable=self.mode == "learned",
        )
        self.log_temperature = self.add_weight(
            name="log_temperature",
            shape=(2,),
            initializer="zeros",
            trainable=self.learn_temperature,
        )

    def fusion_weight(self):
        """The current `a = sigmoid(theta)` as a scalar tensor."""
        return ops.sigmoid(self.theta)

    def call(self, inputs):
        local, glob = inputs
        a = ops.cast(ops.sigmoid(self.theta), local.dtype)
        t = ops.cast(ops.exp(self.log_temperature), local.dtype)
        return a * t[0] * local + (1.0 - a) * t[1] * glob

    def fold_for_inference(self):
        """The layer's inference form (`FoldedLearnableFusion`)."""
        return FoldedLearnableFusion(folding.require_built(self))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            mode=self.mode,
            initial_weight=self.initial_weight,
            learn_temperature=self.learn_temperature,
        )
        return config


class FoldedLearnableFusion:
    """`LearnableFusion.call` as one coefficient per branch.

    `s = c_l * s_local + c_g * s_global` with `c_l = a * t_l` and
    `c_g = (1 - a) * t_g`, computed once in float64.

    Args:
        fusion: a built `LearnableFusion`.

    Attributes:
        coefficients: float32 [2], `(c_l, c_g)`.
        fusion_weight: float, `a`.

    Call arguments:
        local, glob: float32 tensors [batch, K].
    """

    def __init__(self, fusion):
        a = 1.0 / (1.0 + np.exp(-folding.to_f64(fusion.theta)))
        t = np.exp(folding.to_f64(fusion.log_temperature))
        self.fusion_weight = float(a)
        self._coefficients = np.array([a * t[0], (1.0 - a) * t[1]])
        self.coefficients = folding.constant(self._coefficients)

    def scaled(self, factor):
        """The same form with both coefficients times `factor` (a score
        scale folded in)."""
        folded = object.__new__(FoldedLearnableFusion)
        folded.fusion_weight = self.fusion_weight
        folded._coefficients = self._coefficients * float(factor)
        folded.coefficients = folding.constant(folded._coefficients)
        return folded

    def __call__(self, local, glob):
        return local * self.coefficients[0] + glob * self.coefficients[1]
