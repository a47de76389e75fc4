"""`GridConvolution`: a 2-D convolution over the region grid of tokens.

`infer_grid` and `grid_of` lay the row-major region tokens out on their
grid (the heatmaps of `epsilon_tf.visualization` draw on the same layout).
"""

import math

import keras
from keras import layers, ops

from epsilon_tf import _validation as check

ORDERS = ("conv_bn_relu", "conv_relu_bn")


def infer_grid(num_regions, grid_shape=None):
    """The (rows, cols) layout of `num_regions` region tokens.

    Args:
        num_regions: int. N, the tokens of one image.
        grid_shape: tuple (rows, cols) or None. Used as given when its
            product is N; otherwise a square grid when N is a perfect
            square, else a single row (1, N).
    """
    if grid_shape is not None:
        rows, cols = (int(v) for v in grid_shape)
        if rows * cols != num_regions:
            raise ValueError(
                f"`grid_shape` {tuple(grid_shape)} does not hold "
                f"{num_regions} regions"
            )
        return rows, cols
    side = math.isqrt(int(num_regions))
    if side * side == num_regions:
        return side, side
    return 1, int(num_regions)


def grid_of(num_regions, grid_shape=None):
    """(rows, cols) of `num_regions` row-major region tokens.

    `grid_shape` when given (its product must be `num_regions`), else the
    square grid; a token count that is not a perfect square needs one.
    """
    rows, cols = infer_grid(num_regions, grid_shape)
    if grid_shape is None and rows != cols:
        raise ValueError(
            f"{num_regions} region tokens do not form a square grid; pass "
            "`grid_shape` (rows, cols)"
        )
    return rows, cols


@keras.saving.register_keras_serializable(package="epsilon_tf")
class GridConvolution(layers.Layer):
    """Convolves region tokens on their grid, then batch norm and ReLU.

    The tokens [batch, N, C] are laid out row-major on a (rows, cols) grid
    (region `r` at row `r // cols`, column `r % cols`, as VGG's 14 x 14 map
    is flattened by the LESA and BiAM releases), convolved with stride 1
    and "same" padding (TensorFlow's: an even kernel pads one more row and
    column after than before), batch-normalized and passed through a ReLU,
    in the order `order` names, and flattened back to [batch, N, filters].

    `"conv_bn_relu"` is LESA's `slim.conv2d(..., normalizer_fn=batch_norm)`
    (no convolution bias), `"conv_relu_bn"` BiAM's `CONV3_3`.

    Args:
        filters: int. Output channels.
        kernel_size: int. Side of the square kernel. Defaults to 3.
        use_bias: bool. Convolution bias. Defaults to True.
        order: str. `"conv_bn_relu"` or `"conv_relu_bn"`. Defaults to
            `"conv_relu_bn"`.
        grid_shape: tuple (rows, cols) or None (square). Defaults to None.
        momentum: float. Keras batch-norm momentum (the weight of the old
            moving statistics). Defaults to 0.99.
        epsilon: float. Batch-norm epsilon. Defaults to 1e-3.

    Call arguments:
        inputs: float tensor [batch, N, C].
        training: bool. Batch statistics (and their moving averages) when
            True, the moving statistics otherwise.

    Returns:
        Float tensor [batch, N, filters].

    Example:

    >>> conv = GridConvolution(filters=32, kernel_size=3)
    >>> conv(np.zeros((2, 49, 64), "float32")).shape
    TensorShape([2, 49, 32])
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        use_bias=True,
        order="conv_relu_bn",
        grid_shape=None,
        momentum=0.99,
        epsilon=1e-3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check.positive_int("filters", filters)
        self.kernel_size = check.positive_int("kernel_size", kernel_size)
        self.use_bias = bool(use_bias)
        self.order = check.choice("order", order, ORDERS)
        self.grid_shape = None if grid_shape is None else tuple(
            check.positive_int("grid_shape", int(v)) for v in grid_shape
        )
        self.momentum = check.rate("momentum", momentum)
        if not epsilon > 0:
            raise ValueError(
                f"`epsilon` must be positive. Received: epsilon={epsilon!r}"
            )
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        _, num_regions, channels = check.input_shape_of(
            "inputs", input_shape, 3
        )
        self.grid = grid_of(num_regions, self.grid_shape)
        self.conv = layers.Conv2D(
            self.filters, self.kernel_size, padding="same",
            use_bias=self.use_bias, name="conv", dtype=self.dtype_policy,
        )
        self.conv.build((None, *self.grid, channels))
        self.norm = layers.BatchNormalization(
            momentum=self.momentum, epsilon=self.epsilon, name="norm",
            dtype=self.dtype_policy,
        )
        self.norm.build((None, *self.grid, self.filters))

    def call(self, inputs, training=None):
        x = ops.reshape(inputs, (-1, *self.grid, inputs.shape[-1]))
        x = self.conv(x)
        if self.order == "conv_bn_relu":
            x = ops.relu(self.norm(x, training=training))
        else:
            x = self.norm(ops.relu(x), training=training)
        return ops.reshape(x, (-1, self.grid[0] * self.grid[1], self.filters))

    def compute_output_shape(self, input_shape):
        check.input_shape_of("inputs", input_shape, 3)
        return (input_shape[0], input_shape[1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            use_bias=self.use_bias,
            order=self.order,
            grid_shape=self.grid_shape,
            momentum=self.momentum,
            epsilon=self.epsilon,
        )
        return config
