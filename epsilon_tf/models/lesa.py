"""LESA (Huynh & Elhamifar, CVPR 2020) as a functional Keras model.

Follows `core/model_share_attention.py` of github.com/hbdat/cvpr20_LESA
as its NUS-WIDE zero-shot script builds it (`build_model_rank(
is_conv=True)`, T = 10, constant L2-normalized word vectors); deviations
in BUILD_NOTES.md, "Baselines: LESA and BiAM".

**A CLS token** (N = 1 + s*s features, e.g. ViT's 197 tokens): LESA's 2x2
convolution runs over the s x s patch grid only; the CLS token goes
through its own 1x1 convolution with batch norm and ReLU (the same
"conv_bn_relu" to the same channels) and is put back in front, so the T
attentions attend over the CLS token as one more region (index 0 of the
attention maps, as in the input) and the global pool covers it too.
Without the convolution (`lesa_conv=False`) every token, the CLS token
included, is a region as it is.
"""

import keras

from epsilon_tf.layers import (
    GridConvolution,
    RegionLabelScoring,
    SharedMultiAttention,
)
from epsilon_tf.layers.grid import SplitClsToken, token_layout

# Layer names are part of the contract (`with_labels`, the exporter).
CONV, ATTENTION, PROJECTION, POOL = (
    "lesa_conv", "lesa_attention", "visual_to_word", "global_pool",
)
CLS_SPLIT, CLS_CONV, TOKENS = "cls_split", "lesa_cls_conv", "lesa_tokens"
PARTS = (CONV, ATTENTION, PROJECTION, POOL, CLS_SPLIT, CLS_CONV, TOKENS)
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
        has_cls, _ = token_layout(config.feature_shape[0], "LESA")
        if has_cls:
            parts[CLS_SPLIT] = SplitClsToken(keepdims=True, name=CLS_SPLIT)
            parts[CLS_CONV] = GridConvolution(
                channels, 1, use_bias=False, order="conv_bn_relu",
                grid_shape=(1, 1), momentum=0.99, epsilon=1e-3,
                name=CLS_CONV,
            )
            parts[TOKENS] = keras.layers.Concatenate(axis=1, name=TOKENS)
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
        features: [batch, N, C] (N = s*s, or 1 + s*s with a CLS token
            first; any N without the convolution).
        score: callable `(semantic [b, P, E], offsets or None) ->
            (scores [b, K], per-vector scores [b, P, K])`.

    Returns:
        Dict: `scores` [b, K]; `attention` [b, T, N] (the maps);
        `attention_logits` [b, T, N]; `attention_scores` [b, T, K] (each
        attention's label scores); `pooled_scores` [b, K] (the scores of
        the mean-pooled regions, for LESA's global regularizer).
    """
    if CLS_SPLIT in parts:
        cls, patches = parts[CLS_SPLIT](features)
        x = parts[TOKENS]([parts[CLS_CONV](cls), parts[CONV](patches)])
    elif CONV in parts:
        x = parts[CONV](features)
    else:
        x = features
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
