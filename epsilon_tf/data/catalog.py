"""The datasets and file formats a `DataConfig` can name, and their K.

Plain constants, importable without TensorFlow: `sources.make_source`
checks a config against them and both it and `release_sources` take each
dataset's P/R/F1@K from `EVAL_KS` (`config.presets.EVAL_KS`).
"""

from epsilon_tf.config import presets

# The generated family of release-shaped worlds other than nus_like
# (`epsilon_tf.data.worlds.family.MEMBER_DATASETS`, checked by a test).
WORLD_FAMILY = presets.WORLD_FAMILY
DATASETS = tuple(presets.EVAL_KS)
FORMATS = ("native", "lesa", "biam")
# The K of P/R/F1@K each dataset is reported at (the papers' choices), with
# the presets in `epsilon_tf.config.presets`.
EVAL_KS = presets.EVAL_KS
