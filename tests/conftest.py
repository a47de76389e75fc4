"""Shared test fixtures: quiet TensorFlow, tiny configs, reference data."""

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def shared_data_dir():
    """`../shared/data` (or $EPSILON_SHARED_DATA), None when absent."""
    env = os.environ.get("EPSILON_SHARED_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def shared_data():
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is not present")
    return path


@pytest.fixture
def tiny_model_config():
    from epsilon_tf.config import ModelConfig

    return ModelConfig(
        feature_shape=(9, 8),
        hidden_dim=16,
        embedding_dim=12,
        num_prompts=3,
        gpa_heads=2,
        num_global=2,
        gfp_blocks=1,
        token_dropout=0.0,
        dropout=0.0,
        normalize_semantic=False,
        score_scale=1.0,
    )
