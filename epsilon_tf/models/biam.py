"""BiAM (Narayan et al., ICCV 2021) as a functional Keras model.

Follows `model.py` of github.com/akshitac8/BiAM with the settings of its
`scripts/train_nus.sh` and `paper_logs/nus_wide.log` (256 channels, 8
heads, top-6 region scores); deviations in BUILD_NOTES.md, "Baselines:
LESA and BiAM".
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

# Layer names are part of the contract (`with_labels`, the exporter).
INPUT_CONV, REGION, SCENE_POOL, SCENE = (
    "biam_conv", "region_context", "scene_pool", "scene_context",
)
MERGE, FUSE, FUSE_ACT = "merge", "fuse", "fuse_activation"
PROJECTION, OFFSET, OFFSET_FLAT = "region_to_word", "region_offset", "offset"
PARTS = (INPUT_CONV, REGION, SCENE_POOL, SCENE, MERGE, FUSE, FUSE_ACT,
         PROJECTION, OFFSET, OFFSET_FLAT)
SCORING = "label_scoring"


def make_parts(config, embedding_dim):
    """The trained layers of BiAM for `config` (a `ModelConfig`)."""
    num_regions, channels = config.feature_shape
    # torch.nn.Linear(300, D)'s default initialization, U(+-1/sqrt(300)),
    # for both halves of BiAM's W (its weight and its bias).
    linear_init = keras.initializers.RandomUniform(
        -1 / math.sqrt(embedding_dim), 1 / math.sqrt(embedding_dim)
    )
    return {
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
        OFFSET_FLAT: keras.layers.Reshape((num_regions,), name=OFFSET_FLAT),
    }


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
        features: [batch, N, C].
        score: callable `(semantic [b, N, E], offsets [b, N]) -> scores`.

    Returns:
        Dict: `scores` [b, K]; `region_attention` [b, heads, N, N] (the
        region-level self-attention); `scene_gate` [b, channels] (the
        scene-level channel gate).
    """
    h = parts[INPUT_CONV](features)
    regions, attention = parts[REGION](h)
    scene, gate = parts[SCENE]([h, parts[SCENE_POOL](features)])
    e = parts[FUSE_ACT](parts[FUSE](parts[MERGE]([regions, scene])))
    offsets = parts[OFFSET_FLAT](parts[OFFSET](e))
    return {
        "scores": score(parts[PROJECTION](e), offsets),
        "region_attention": attention,
        "scene_gate": gate,
    }
