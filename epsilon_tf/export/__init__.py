"""Deployment: SavedModel export for TF Serving, backbones and clients.

`export_saved_model` writes a TF Serving version directory; see
`docs/serving.md`. `epsilon_tf.export.client` builds and parses TF Serving
requests (imported on its own: it needs `tensorflow-serving-api`).
"""

from epsilon_tf.export.backbones import backbone_names, make_backbone
from epsilon_tf.export.reference import (
    KerasReferenceGraph,
    keras_reference_serving,
)
from epsilon_tf.export.serving import (
    EMBED,
    FOLD_TOLERANCE,
    LABEL_SETS,
    SCORE_LABELS,
    SERVING_DEFAULT,
    SERVING_IMAGES,
    EpsilonServingModule,
    FoldMismatchError,
    checkpoint_gaps,
    clean_stale_temp_dirs,
    export_saved_model,
    list_versions,
    load_training_dir,
    read_export_info,
    serving_graph,
)

__all__ = [
    "EMBED",
    "FOLD_TOLERANCE",
    "LABEL_SETS",
    "SCORE_LABELS",
    "SERVING_DEFAULT",
    "SERVING_IMAGES",
    "EpsilonServingModule",
    "FoldMismatchError",
    "KerasReferenceGraph",
    "backbone_names",
    "checkpoint_gaps",
    "clean_stale_temp_dirs",
    "export_saved_model",
    "keras_reference_serving",
    "list_versions",
    "load_training_dir",
    "make_backbone",
    "read_export_info",
    "serving_graph",
]
