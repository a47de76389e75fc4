"""Epsilon's Keras layers."""

from epsilon_tf.layers.feature_standardization import FeatureStandardization
from epsilon_tf.layers.global_forward_propagation import (
    GlobalForwardPropagation,
)
from epsilon_tf.layers.group_prompts_aggregation import (
    GroupPromptsAggregation,
    TransformerEncoderBlock,
)
from epsilon_tf.layers.label_scoring import LabelScoring
from epsilon_tf.layers.learnable_fusion import LearnableFusion

__all__ = [
    "FeatureStandardization",
    "GlobalForwardPropagation",
    "GroupPromptsAggregation",
    "LabelScoring",
    "LearnableFusion",
    "TransformerEncoderBlock",
]
