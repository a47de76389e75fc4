"""Model builders."""

from epsilon_tf.models.epsilon import (
    build_epsilon,
    fusion_weight,
    semantic_model,
    with_labels,
)

__all__ = ["build_epsilon", "fusion_weight", "semantic_model", "with_labels"]
