"""Training objectives."""

from epsilon_tf.losses.ranking import RankingLoss, prompt_diversity

__all__ = ["RankingLoss", "prompt_diversity"]
