"""Global Forward Propagation (GFP): pooled tokens -> M global vectors."""

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from epsilon_tf import _validation as check
from epsilon_tf.layers import folding
from epsilon_tf.layers.feature_standardization import FeatureStandardization
from epsilon_tf.layers.tracking import track_for_checkpoint


@keras.saving.register_keras_serializable(package="epsilon_tf")
class GlobalForwardPropagation(layers.Layer):
    """Maps globally pooled tokens to `num_global` diverse semantic vectors.

    The N tokens are pooled (`"avg"`, `"max"` or both concatenated,
    `"avg_max"`), projected to `hidden_dim`, passed through `num_blocks`
    residual feed-forward blocks `x + W2 gelu(W1 LN(x))`, layer-normalized
    and projected to `num_global * embedding_dim` outputs, reshaped to
    [num_global, embedding_dim].

    Args:
        num_global: int. Number M of global semantic vectors. Defaults to 3.
        embedding_dim: int. Width E of the word-vector space. Defaults to
            300.
        hidden_dim: int. Width of the residual stack. Defaults to 512.
        num_blocks: int. Residual feed-forward blocks. Defaults to 2.
        pooling: str. `"avg_max"`, `"avg"` or `"max"`. Defaults to
            `"avg_max"`.
        dropout: float. Dropout inside each block. Defaults to 0.0.
        input_source: str. Which tokens the model feeds this layer:
            `"tokens"` (the projected tokens GPA also reads) or
            `"features"` (the model's input region features: pooling
            comes before any projection, so an object on a few regions
            reaches the max-pooled vector at its own strength). The layer
            pools whatever it receives; `build_epsilon` and `with_labels`
            read this to wire it. Defaults to `"tokens"`.
        pooled_norm: bool. Standardize the pooled vector with fixed
            training-split statistics (`FeatureStandardization`, set by
            `epsilon_tf.training.standardization`) before the projection.
            Mean- and max-pooled ReLU features differ in scale by orders
            of magnitude, and a projection of the raw pooled vector learns
            slowly (BUILD_NOTES.md, "Learning on release-shaped data").
            Defaults to False.
        linear_path: bool. Add a linear map of the (standardized) pooled
            vector to the output: `y = MLP(x) + x V + b`. It can hold the
            closed-form ESZSL solution exactly (`warm_start_linear`), so
            the layer starts where the linear baseline ends and the
            residual stack learns what a linear map cannot. The path
            starts at zero. Defaults to False.
        layer_norm_epsilon: float. Epsilon of every layer norm. Defaults
            to 1e-6.

    `fold_for_inference()` returns the layer's folded serving form
    (`FoldedGlobalForwardPropagation`).

    Call arguments:
        inputs: float tensor [batch, N, D], the tokens named by
            `input_source`.
        training: bool. Enables dropout.

    Returns:
        Float tensor [batch, M, E], the global semantic vectors.

    Example:

    >>> gfp = GlobalForwardPropagation(num_global=3, embedding_dim=300)
    >>> gfp(np.zeros((2, 196, 512), "float32")).shape
    TensorShape([2, 3, 300])
    """

    def __init__(
        self,
        num_global=3,
        embedding_dim=300,
        hidden_dim=512,
        num_blocks=2,
        pooling="avg_max",
        dropout=0.0,
        input_source="tokens",
        pooled_norm=False,
        linear_path=False,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_global = check.positive_int("num_global", num_global)
        self.embedding_dim = check.positive_int("embedding_dim", embedding_dim)
        self.hidden_dim = check.positive_int("hidden_dim", hidden_dim)
        self.num_blocks = check.non_negative_int("num_blocks", num_blocks)
        self.pooling = check.choice(
            "pooling", pooling, ("avg_max", "avg", "max")
        )
        self.dropout = check.rate("dropout", dropout)
        self.input_source = check.choice(
            "input_source", input_source, ("tokens", "features")
        )
        self.pooled_norm = check.boolean("pooled_norm", pooled_norm)
        self.linear_path = check.boolean("linear_path", linear_path)
        if self.pooled_norm and self.input_source != "features":
            raise ValueError(
                "`pooled_norm=True` needs `input_source='features'` (fixed "
                "statistics of pooled projected tokens would go stale as "
                f"the projection trains). Received: input_source="
                f"{self.input_source!r}"
            )
        self.layer_norm_epsilon = check.positive_number(
            "layer_norm_epsilon", layer_norm_epsilon
        )

    def build(self, input_shape):
        check.input_shape_of("inputs", input_shape, 3)
        width = input_shape[-1]
        pooled = width * (2 if self.pooling == "avg_max" else 1)
        batch = input_shape[0]
        dtype = self.dtype_policy
        self.pooled_normalization = None
        if self.pooled_norm:
            self.pooled_normalization = FeatureStandardization(
                name="pooled_norm", dtype=dtype
            )
            self.pooled_normalization.build((batch, pooled))
        self.input_projection = layers.Dense(
            self.hidden_dim, name="pooled_in", dtype=dtype
        )
        self.input_projection.build((batch, pooled))
        self.block_layers = []
        for i in range(self.num_blocks):
            norm = layers.LayerNormalization(
                epsilon=self.layer_norm_epsilon, name=f"norm_{i}", dtype=dtype
            )
            inner = layers.Dense(
                self.hidden_dim, activation="gelu", name=f"ffn_{i}_1",
                dtype=dtype,
            )
            outer = layers.Dense(
                self.hidden_dim, name=f"ffn_{i}_2", dtype=dtype
            )
            for sub in (norm, inner, outer):
                sub.build((batch, self.hidden_dim))
                track_for_checkpoint(self, sub, sub.name)
            self.block_layers.append((norm, inner, outer))
        self.block_dropout = layers.Dropout(self.dropout, dtype=dtype)
        self.output_norm = layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="output_norm", dtype=dtype
        )
        self.output_norm.build((batch, self.hidden_dim))
        self.output_projection = layers.Dense(
            self.num_global * self.embedding_dim, name="to_word_space",
            dtype=dtype,
        )
        self.output_projection.build((batch, self.hidden_dim))
        self.linear = None
        if self.linear_path:
            self.linear = layers.Dense(
                self.num_global * self.embedding_dim, name="linear_path",
                kernel_initializer="zeros", dtype=dtype,
            )
            self.linear.build((batch, pooled))

    def pool(self, inputs):
        """The pooled vector [batch, D or 2D], before any normalization."""
        pools = []
        if self.pooling in ("avg_max", "avg"):
            pools.append(ops.mean(inputs, axis=1))
        if self.pooling in ("avg_max", "max"):
            pools.append(ops.max(inputs, axis=1))
        return ops.concatenate(pools, axis=-1)

    def call(self, inputs, training=None):
        pooled = self.pool(inputs)
        if self.pooled_normalization is not None:
            pooled = self.pooled_normalization(pooled)
        x = self.input_projection(pooled)
        for norm, inner, outer in self.block_layers:
            y = outer(inner(norm(x)))
            x = x + self.block_dropout(y, training=training)
        y = self.output_projection(self.output_norm(x))
        if self.linear is not None:
            y = y + self.linear(pooled)
        return ops.reshape(y, (-1, self.num_global, self.embedding_dim))

    def warm_start_linear(self, columns, mean, std, projection,
                          glorot_multiple=0.0):
        """Starts the layer at a closed-form linear solution (ESZSL's).

        The pooled vector's standardization takes `mean` and `std` on
        `columns`, the linear path maps those columns by `projection`
        (every global vector alike; the other columns start at zero) and
        the residual stack's output projection starts at zero, so the
        layer's output is `z V` with `z` the standardized pooled columns
        (`c z V` with `glorot_multiple`).

        Args:
            columns: slice of the pooled vector's columns `projection`
                reads.
            mean, std: arrays [D], the standardization of those columns.
            projection: array [D, E], V.
            glorot_multiple: float. When positive, V is rescaled by the
                `c > 0` that makes the RMS of its entries this multiple of
                the Glorot RMS `sqrt(2 / (fan_in + fan_out))` of the
                path's kernel. Epsilon L2-normalizes GFP's output before
                scoring (`normalize_semantic`, the default), so there `c`
                changes no score; it sets how far an optimizer step moves
                the path (an Adam step is about the learning rate per
                weight, whatever the weight's size).
                0 keeps V as given. Defaults to 0.
        """
        if self.linear is None or self.pooled_normalization is None:
            raise ValueError(
                "warm_start_linear needs `linear_path=True` and "
                "`pooled_norm=True`"
            )
        norm = self.pooled_normalization
        full_mean = np.array(norm.mean.numpy())
        full_std = np.array(norm.std.numpy())
        full_mean[columns] = mean
        full_std[columns] = std
        norm.set_statistics(full_mean, full_std)
        projection = np.asarray(projection, np.float32)
        rms = float(np.sqrt(np.mean(np.square(projection))))
        if glorot_multiple > 0 and rms > 0:
            fan_in, fan_out = self.linear.kernel.shape
            target = glorot_multiple * np.sqrt(2.0 / (fan_in + fan_out))
            projection = projection * np.float32(target / rms)
        kernel = np.zeros(self.linear.kernel.shape, np.float32)
        kernel[columns] = np.tile(projection, (1, self.num_global))
        self.linear.kernel.assign(kernel)
        self.linear.bias.assign(np.zeros(self.linear.bias.shape, np.float32))
        for weight in self.output_projection.weights:
            weight.assign(np.zeros(weight.shape, np.float32))

    def compute_output_shape(self, input_shape):
        check.input_shape_of("inputs", input_shape, 3)
        return (input_shape[0], self.num_global, self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_global=self.num_global,
            embedding_dim=self.embedding_dim,
            hidden_dim=self.hidden_dim,
            num_blocks=self.num_blocks,
            pooling=self.pooling,
            dropout=self.dropout,
            input_source=self.input_source,
            pooled_norm=self.pooled_norm,
            linear_path=self.linear_path,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config

    def fold_for_inference(self, precision="float32"):
        """The layer's folded inference form (`FoldedGlobalForwardPropagation`).

        GFP's products are few rows (one per image): they stay float32 at
        every `precision`.
        """
        folding.check_precision(precision)
        return FoldedGlobalForwardPropagation(folding.require_built(self))


class FoldedGlobalForwardPropagation:
    """`GlobalForwardPropagation.call` (inference), folded.

    Every layer norm's scale and offset, and the pooled vector's fixed
    standardization, are folded into the product after it; the pooled
    vector and the residual stack are 2-D [batch, width].

    Args:
        gfp: a built `GlobalForwardPropagation`.

    Call arguments:
        tokens: float32 tensor [batch, N, D], what the layer reads
            (`input_source`: projected tokens or input features).

    Returns:
        float32 tensor [batch, M, E], the global semantic vectors.
    """

    def __init__(self, gfp):
        self.pooling = gfp.pooling
        self.num_global = gfp.num_global
        self.embedding_dim = gfp.embedding_dim
        weights = folding.dense_weights(gfp.input_projection)
        if gfp.pooled_normalization is not None:
            weights = folding.fold_standardization(
                *folding.standardization_weights(gfp.pooled_normalization),
                *weights,
            )
        self.input_projection = folding.constants(weights)
        self.input_source = gfp.input_source
        self.blocks = []
        for norm, inner, outer in gfp.block_layers:
            gamma, beta, epsilon = folding.norm_weights(norm)
            self.blocks.append(
                (
                    epsilon,
                    folding.constants(
                        folding.fold_norm(
                            gamma, beta, *folding.dense_weights(inner)
                        )
                    ),
                    inner.activation,
                    folding.constants(folding.dense_weights(outer)),
                )
            )
        gamma, beta, self.epsilon = folding.norm_weights(gfp.output_norm)
        self.output_projection = folding.constants(
            folding.fold_norm(
                gamma, beta, *folding.dense_weights(gfp.output_projection)
            )
        )
        self.linear = None
        if gfp.linear is not None:
            weights = folding.dense_weights(gfp.linear)
            if gfp.pooled_normalization is not None:
                weights = folding.fold_standardization(
                    *folding.standardization_weights(
                        gfp.pooled_normalization),
                    *weights,
                )
            self.linear = folding.constants(weights)

    def __call__(self, tokens):
        pools = []
        if self.pooling in ("avg_max", "avg"):
            pools.append(tf.reduce_mean(tokens, axis=1))
        if self.pooling in ("avg_max", "max"):
            pools.append(tf.reduce_max(tokens, axis=1))
        pooled = tf.concat(pools, axis=-1)
        x = folding.affine(pooled, *self.input_projection)
        for epsilon, inner, activation, outer in self.blocks:
            hidden = activation(
                folding.affine(folding.normalize(x, epsilon), *inner)
            )
            x = x + folding.affine(hidden, *outer)
        y = folding.affine(
            folding.normalize(x, self.epsilon), *self.output_projection
        )
        if self.linear is not None:
            y = y + folding.affine(pooled, *self.linear)
        return tf.reshape(y, (-1, self.num_global, self.embedding_dim))
