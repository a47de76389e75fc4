"""The datasets and file formats a `DataConfig` can name, and their K.

Plain constants, importable without TensorFlow: `sources.make_source`
checks a config against them and both it and `release_sources` take each
dataset's P/R/F1@K from `EVAL_KS`.
"""

# The generated family of release-shaped worlds other than nus_like
# (`epsilon_tf.data.worlds.family.MEMBER_DATASETS`, checked by a test).
WORLD_FAMILY = (
    "flickr_vgg_mild",
    "resnet_scenes",
    "web_crowded",
    "vit_tokens",
    "product_deep",
)
DATASETS = ("synthetic", "nus_like", "nus_wide", "open_images", *WORLD_FAMILY)
FORMATS = ("native", "lesa", "biam")
# The K of P/R/F1@K each dataset is reported at (the papers' choices).
EVAL_KS = {
    "synthetic": (3, 5),
    "nus_like": (3, 5),
    "nus_wide": (3, 5),
    "open_images": (10, 20),
    **{name: (3, 5) for name in WORLD_FAMILY},
}
