"""Install epsilon_tf: `pip install -e .[dev]`."""

from setuptools import find_packages, setup

setup(
    name="epsilon_tf",
    version="0.1.0",
    description=(
        "TensorFlow/Keras implementation of Epsilon, a multi-label "
        "zero-shot image tagger (AAAI 2025)."
    ),
    python_requires=">=3.10",
    packages=find_packages(include=["epsilon_tf", "epsilon_tf.*"]),
    py_modules=["train", "eval"],
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.10,<4",
        "numpy>=1.26",
        "absl-py>=2.1",
        "tensorboard==2.21.*",
        "h5py>=3.10",
        "pillow>=10",
        "tensorflow-serving-api==2.21.*",
        "matplotlib>=3.8",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "scikit-learn>=1.4",
            "ruff>=0.6",
            "psutil>=5.9",
        ],
        # CLIP text encoders for label vectors (labels/clip_text.py).
        "clip": ["keras-hub>=0.32", "tensorflow-text==2.21.*"],
    },
    entry_points={
        "console_scripts": [
            "epsilon-train=train:run_main",
            "epsilon-eval=eval:run_main",
            "epsilon-label-space=epsilon_tf.tools.make_label_space:run_main",
            "epsilon-extract-features="
            "epsilon_tf.tools.extract_features:run_main",
            "epsilon-tag=epsilon_tf.tools.tag:run_main",
        ],
    },
)
