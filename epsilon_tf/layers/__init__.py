"""Keras layers of Epsilon and of the LESA and BiAM baselines."""

from epsilon_tf.layers.bi_level_attention import (
    RegionContextBlock,
    SceneContextBlock,
)
from epsilon_tf.layers.feature_standardization import FeatureStandardization
from epsilon_tf.layers.global_forward_propagation import (
    GlobalForwardPropagation,
)
from epsilon_tf.layers.grid_convolution import GridConvolution
from epsilon_tf.layers.group_prompts_aggregation import (
    GroupPromptsAggregation,
    TransformerEncoderBlock,
)
from epsilon_tf.layers.label_scoring import LabelScoring
from epsilon_tf.layers.learnable_fusion import LearnableFusion
from epsilon_tf.layers.region_scoring import RegionLabelScoring
from epsilon_tf.layers.self_attention import SelfAttention
from epsilon_tf.layers.shared_multi_attention import SharedMultiAttention

__all__ = [
    "FeatureStandardization",
    "GlobalForwardPropagation",
    "GridConvolution",
    "GroupPromptsAggregation",
    "LabelScoring",
    "LearnableFusion",
    "RegionContextBlock",
    "RegionLabelScoring",
    "SceneContextBlock",
    "SelfAttention",
    "SharedMultiAttention",
    "TransformerEncoderBlock",
]
