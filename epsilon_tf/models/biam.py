"""BiAM (Narayan et al., ICCV 2021) as a functional Keras model.

Follows `model.py` of github.com/akshitac8/BiAM with the settings of its
`scripts/train_nus.sh` and `paper_logs/nus_wide.log` (256 channels, 8
heads, top-6 region scores); deviations in BUILD_NOTES.md, "Baselines:
LESA and BiAM".

**A CLS token** (N = 1 + s*s features, e.g. ViT's 197 tokens): the region
branch (the 3x3 input convolution, the region-context self-attention, the
scene block's grid convolution) and the scores run over the s x s patch
grid only; the CLS token is the image's global summary, so it joins the
scene branch's global feature: `g = concat(mean over the patches, CLS)`
[2C] instead of the mean over every region [C]. The region maps are then
[batch, heads, s*s, s*s].
"""

import math

import keras

from epsilon_tf.layers import (
    GridConvolution,
    RegionContextBlock,
    RegionLabelScoring,
    SceneContextBlock,
)
from epsilon_tf.layers.bi_level_attention import BIAM_BN_MOMENTUM
from epsilon_tf.layers.grid import SplitClsToken, token_layout

# Layer names are part of the contract (`with_labels`, the exporter).
INPUT_CONV, REGION, SCENE_POOL, SCENE = (
    "biam_conv", "region_context", "scene_pool", "scene_context",
)
MERGE, FUSE, FUSE_ACT = "merge", "fuse", "fuse_activation"
PROJECTION, OFFSET, OFFSET_FLAT = "region_to_word", "region_offset", "offset"
CLS_SPLIT, SCENE_JOIN = "cls_split", "scene_global"
PARTS = (INPUT_CONV, REGION, SCENE_POOL, SCENE, MERGE, FUSE, FUSE_ACT,
         PROJECTION, OFFSET, OFFSET_FLAT, CLS_SPLIT, SCENE_JOIN)
SCORING = "label_scoring"


def make_parts(config, embedding_dim):
    """The trained layers of BiAM for `config` (a `ModelConfig`)."""
    num_regions, channels = config.feature_shape
    has_cls, side = token_layout(num_regions, "BiAM")
    # torch.nn.Linear(300, D)'s default initialization, U(+-1/sqrt(300)),
    # for both halves of BiAM's W (its weight and its bias).
    linear_init = keras.initializers.RandomUniform(
        -1 / math.sqrt(embedding_dim), 1 / math.sqrt(embedding_dim)
    )
    parts = {
        INPUT_CONV: GridConvolution(
            config.biam_channels, 3, use_bias=True, order="conv_relu_bn",
            momentum=BIAM_BN_MOMENTUM, epsilon=1e-3, name=INPUT_CONV,
        ),
        REGION: RegionContextBlock(
            num_heads=config.biam_heads, dropout=0.1, name=REGION
        ),
        SCENE_POOL: keras.layers.GlobalAveragePooling1D(name=SCENE_POOL),
        SCENE: SceneContextBlock(dropout=0.2, name=SCENE),
        MERGE: keras.layers.Concatenate(axis=-1, name=MERGE),
        FUSE: keras.layers.Dense(channels, name=FUSE),
        FUSE_ACT: keras.layers.LeakyReLU(negative_slope=0.2, name=FUSE_ACT),
        # m[r, k] = <e_r, W v_k + b> = <W^T e_r, v_k> + <e_r, b>: the
        # word-space region vectors and a per-region offset.
        PROJECTION: keras.layers.Dense(
            embedding_dim, use_bias=False, kernel_initializer=linear_init,
            name=PROJECTION,
        ),
        OFFSET: keras.layers.Dense(
            1, use_bias=False, kernel_initializer=linear_init, name=OFFSET
        ),
        OFFSET_FLAT: keras.layers.Reshape((side * side,), name=OFFSET_FLAT),
    }
    if has_cls:
        parts[CLS_SPLIT] = SplitClsToken(name=CLS_SPLIT)
        parts[SCENE_JOIN] = keras.layers.Concatenate(axis=-1, name=SCENE_JOIN)
    return parts


def make_scoring(label_embeddings=None, top_k=6):
    """BiAM's scoring: the mean of a label's `top_k` region scores."""
    return RegionLabelScoring(
        reduction="top_k_mean", top_k=top_k, use_offsets=True,
        label_embeddings=label_embeddings, name=SCORING,
    )


def forward(parts, features, score):
    """BiAM's forward pass over tensors or Keras tensors.

    Args:
        parts: dict of the trained layers (`make_parts`).
        features: [batch, N, C]: N = s*s regions, or 1 + s*s with a CLS
            token first.
        score: callable `(semantic [b, P, E], offsets [b, P]) -> scores`
            (P = s*s patch regions).

    Returns:
        Dict: `scores` [b, K]; `region_attention` [b, heads, P, P] (the
        region-level self-attention); `scene_gate` [b, channels] (the
        scene-level channel gate).
    """
    if CLS_SPLIT in parts:
        cls, patches = parts[CLS_SPLIT](features)
        scene_global = parts[SCENE_JOIN]([parts[SCENE_POOL](patches), cls])
    else:
        patches = features
        scene_global = parts[SCENE_POOL](features)
    h = parts[INPUT_CONV](patches)
    regions, attention = parts[REGION](h)
    scene, gate = parts[SCENE]([h, scene_global])
    e = parts[FUSE_ACT](parts[FUSE](parts[MERGE]([regions, scene])))
    offsets = parts[OFFSET_FLAT](parts[OFFSET](e))
    return {
        "scores": score(parts[PROJECTION](e), offsets),
        "region_attention": attention,
        "scene_gate": gate,
    }
