"""`FeatureStandardization`: a fixed per-feature affine from training data."""

import keras
import numpy as np
from keras import layers


@keras.saving.register_keras_serializable(package="epsilon_tf")
class FeatureStandardization(layers.Layer):
    """Standardizes the last axis with statistics of the training split.

    `y = (x - mean) / std`, per feature, with `mean` and `std` fixed
    (non-trainable weights, saved with the model and its checkpoints) and
    set once before training by `set_statistics` (the trainer does this
    from the training images: `epsilon_tf.training.standardization`).
    Unlike a LayerNormalization of every region on its own, it keeps each
    region's strength relative to the others, and it puts mean- and
    max-pooled ReLU features, whose scales differ by orders of magnitude,
    on one scale: what ESZSL does to its pooled features.

    Args:
        epsilon: float. Floor of `std`. Defaults to 1e-6.

    Call arguments:
        inputs: float tensor [..., F].

    Returns:
        Float tensor of the same shape.

    Example:

    >>> norm = FeatureStandardization()
    >>> norm.build((None, 4))
    >>> norm.set_statistics(np.full(4, 2.0), np.full(4, 0.5))
    >>> norm(np.full((1, 4), 3.0, "float32")).numpy().tolist()
    [[2.0, 2.0, 2.0, 2.0]]
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(
                "`epsilon` must be a positive float. "
                f"Received: epsilon={epsilon!r}"
            )
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        width = input_shape[-1]
        if width is None:
            raise ValueError(
                "`FeatureStandardization` needs a known last dimension. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.mean = self.add_weight(
            name="mean", shape=(width,), initializer="zeros",
            trainable=False,
        )
        self.std = self.add_weight(
            name="std", shape=(width,), initializer="ones", trainable=False,
        )

    def set_statistics(self, mean, std):
        """Sets the per-feature mean and standard deviation.

        Args:
            mean: array [F].
            std: array [F]; values below `epsilon` become `epsilon`.
        """
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        std = np.asarray(std, dtype=np.float32).reshape(-1)
        width = int(self.mean.shape[0])
        if mean.shape != (width,) or std.shape != (width,):
            raise ValueError(
                f"`mean` and `std` must have shape ({width},). Received: "
                f"{mean.shape} and {std.shape}"
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise ValueError("`mean` and `std` must be finite")
        self.mean.assign(mean)
        self.std.assign(np.maximum(std, self.epsilon))

    def call(self, inputs):
        mean = keras.ops.cast(self.mean, inputs.dtype)
        std = keras.ops.cast(self.std, inputs.dtype)
        return (inputs - mean) / std

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config
