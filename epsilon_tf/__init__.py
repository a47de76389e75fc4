"""epsilon_tf: Epsilon multi-label zero-shot image tagging in TensorFlow."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
