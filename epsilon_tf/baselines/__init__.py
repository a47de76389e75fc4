"""Baselines evaluated beside Epsilon on the same data and protocol."""

from epsilon_tf.baselines.eszsl import (
    ESZSL,
    closed_form,
    normal_equations,
    pool_features,
)

__all__ = ["ESZSL", "closed_form", "normal_equations", "pool_features"]
