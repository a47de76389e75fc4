"""LESA (Huynh & Elhamifar, CVPR 2020) as a functional Keras model.

Follows `core/model_share_attention.py` of github.com/hbdat/cvpr20_LESA
as its NUS-WIDE zero-shot script builds it (`build_model_rank(
is_conv=True)`, T = 10, constant L2-normalized word vectors); deviations
in BUILD_NOTES.md, "Baselines: LESA and BiAM".
"""

import keras

from epsilon_tf.layers import (
    GridConvolution,
    RegionLabelScoring,
    SharedMultiAttention,
)

# Layer names are part of the contract (`with_labels`, the exporter).
CONV, ATTENTION, PROJECTION, POOL = (
    "lesa_conv", "lesa_attention", "visual_to_word", "global_pool",
)
PARTS = (CONV, ATTENTION, PROJECTION, POOL)
SCORING = "label_scoring"


def make_parts(config, embedding_dim):
    """The trained layers of LESA for `config` (a `ModelConfig`)."""
    channels = config.feature_shape[1]
    parts = {
        ATTENTION: SharedMultiAttention(
            num_attentions=config.lesa_attentions, name=ATTENTION
        ),
        # LESA's W [D, 300] maps word vectors to the visual space; applying
        # its transpose to the attended features scores the same products.
        PROJECTION: keras.layers.Dense(
            embedding_dim, use_bias=False, kernel_initializer="he_normal",
            name=PROJECTION,
        ),
        POOL: keras.layers.GlobalAveragePooling1D(keepdims=True, name=POOL),
    }
    if config.lesa_conv:
        # slim.conv2d(512, [2, 2], normalizer_fn=batch_norm): no bias,
        # tf.layers.batch_normalization's momentum 0.99 and epsilon 1e-3.
        parts[CONV] = GridConvolution(
            channels, 2, use_bias=False, order="conv_bn_relu",
            momentum=0.99, epsilon=1e-3, name=CONV,
        )
    return parts


def make_scoring(label_embeddings=None):
    """LESA's scoring: the best of the T attended features, per label."""
    return RegionLabelScoring(
        reduction="max", return_region_scores=True,
        label_embeddings=label_embeddings, name=SCORING,
    )


def forward(parts, features, score):
    """LESA's forward pass over tensors or Keras tensors.

    Args:
        parts: dict of the trained layers (`make_parts`).
        features: [batch, N, C].
        score: callable `(semantic [b, P, E], offsets or None) ->
            (scores [b, K], per-vector scores [b, P, K])`.

    Returns:
        Dict: `scores` [b, K]; `attention` [b, T, N] (the maps);
        `attention_logits` [b, T, N]; `attention_scores` [b, T, K] (each
        attention's label scores); `pooled_scores` [b, K] (the scores of
        the mean-pooled regions, for LESA's global regularizer).
    """
    x = parts[CONV](features) if CONV in parts else features
    attended, maps, logits = parts[ATTENTION](x)
    scores, attention_scores = score(parts[PROJECTION](attended), None)
    pooled, _ = score(parts[PROJECTION](parts[POOL](x)), None)
    return {
        "scores": scores,
        "attention": maps,
        "attention_logits": logits,
        "attention_scores": attention_scores,
        "pooled_scores": pooled,
    }
