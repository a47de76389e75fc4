"""Evaluation metrics of the LESA/BiAM multi-label zero-shot protocol."""

from epsilon_tf.metrics.ranking_metrics import (
    DEFAULT_MEMORY_BUDGET_BYTES,
    VARIANTS,
    average_precision_per_label,
    evaluate_scores,
    mean_average_precision,
    precision_recall_f1_at_k,
    top_k_indices,
)
from epsilon_tf.metrics.score_buffer import ScoreBuffer

__all__ = [
    "DEFAULT_MEMORY_BUDGET_BYTES",
    "VARIANTS",
    "ScoreBuffer",
    "average_precision_per_label",
    "evaluate_scores",
    "mean_average_precision",
    "precision_recall_f1_at_k",
    "top_k_indices",
]
