"""A training run: task, trainer, checkpoints, evaluation, orchestration."""
