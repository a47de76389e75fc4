"""The datasets and file formats a `DataConfig` can name, and their K.

Plain constants, importable without TensorFlow: `sources.make_source`
checks a config against them and both it and `release_sources` take each
dataset's P/R/F1@K from `EVAL_KS`.
"""

DATASETS = ("synthetic", "nus_like", "nus_wide", "open_images")
FORMATS = ("native", "lesa", "biam")
# The K of P/R/F1@K each dataset is reported at (the papers' choices).
EVAL_KS = {
    "synthetic": (3, 5),
    "nus_like": (3, 5),
    "nus_wide": (3, 5),
    "open_images": (10, 20),
}
