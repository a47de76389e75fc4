"""Deployment: SavedModel export for TF Serving, backbones and clients.

`export_saved_model` writes a TF Serving version directory; see
`docs/serving.md`. `epsilon_tf.export.client` builds and parses TF Serving
requests (imported on its own: it needs `tensorflow-serving-api`).
"""

import importlib

# Imported on first use (PEP 562), so that `python -m epsilon_tf.export`
# checks its arguments before TensorFlow loads. A module name without a
# dot is one of this package's.
_WHERE = {
    "backbone_names": "backbones",
    "make_backbone": "backbones",
    "EMBED": "serving_module",
    "LABEL_SETS": "serving",
    "SCORE_LABELS": "serving_module",
    "SERVING_DEFAULT": "serving_module",
    "SERVING_IMAGES": "serving_module",
    "EpsilonServingModule": "serving_module",
    "checkpoint_gaps": "epsilon_tf.training.checkpointing",
    "clean_stale_temp_dirs": "versions",
    "export_saved_model": "serving",
    "list_versions": "versions",
    "load_training_dir": "epsilon_tf.training.checkpointing",
    "read_export_info": "versions",
    "FOLD_TOLERANCE": "serving_module",
    "FoldMismatchError": "serving_module",
    "serving_graph": "serving_module",
    "KerasReferenceGraph": "reference",
    "keras_reference_serving": "reference",
}


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(
            f"module 'epsilon_tf.export' has no attribute {name!r}"
        )
    where = _WHERE[name]
    if "." not in where:
        where = f"epsilon_tf.export.{where}"
    module = importlib.import_module(where)
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))


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
