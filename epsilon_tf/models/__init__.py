"""Model builders: Epsilon and the LESA and BiAM baselines."""

from epsilon_tf.models.epsilon import (
    build_epsilon,
    fusion_weight,
    semantic_model,
)
from epsilon_tf.models.factory import (
    best_label_maps,
    build_model,
    model_kind,
    reference_outputs,
    with_labels,
)

__all__ = [
    "best_label_maps",
    "build_epsilon",
    "build_model",
    "fusion_weight",
    "model_kind",
    "reference_outputs",
    "semantic_model",
    "with_labels",
]
