"""Deployment: SavedModel export for TF Serving, backbones and clients.

`export_saved_model` writes a TF Serving version directory; see
`docs/serving.md`. `epsilon_tf.export.client` builds and parses TF Serving
requests (imported on its own: it needs `tensorflow-serving-api`).
"""

from epsilon_tf.export.backbones import backbone_names, make_backbone
from epsilon_tf.export.serving import (
    EMBED,
    LABEL_SETS,
    SCORE_LABELS,
    SERVING_DEFAULT,
    SERVING_IMAGES,
    EpsilonServingModule,
    checkpoint_gaps,
    clean_stale_temp_dirs,
    export_saved_model,
    list_versions,
    load_training_dir,
    read_export_info,
)

__all__ = [
    "EMBED",
    "LABEL_SETS",
    "SCORE_LABELS",
    "SERVING_DEFAULT",
    "SERVING_IMAGES",
    "EpsilonServingModule",
    "backbone_names",
    "checkpoint_gaps",
    "clean_stale_temp_dirs",
    "export_saved_model",
    "list_versions",
    "load_training_dir",
    "make_backbone",
    "read_export_info",
]
