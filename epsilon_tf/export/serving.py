"""SavedModel export for TF Serving: features or images in, labels out.

`export_saved_model` writes a `tf.Module` with explicit signatures to
`EXPORT_BASE/<version>/` (the TF Serving layout), atomically (the
numbered version directories are `export.versions`'): a server polling
the base never sees a half-written version. The module and its signatures
(`serving_default`, `score_labels`, `embed`, and `serving_images` with a
backbone) are `export.serving_module`'s; their in-graph input checks
`export.input_checks`'.

The feature signatures of an Epsilon model run
`inference_graph.InferenceGraph`, its forward pass composed from its
layers' folded forms with the weights as graph constants (float32 by
default, bfloat16 on request); every export compares it with the Keras
model on a seeded batch, records the difference in `export_info.json`
(`fold_check`) and refuses a float32 export that differs by more than
`serving_module.FOLD_TOLERANCE`. Any other model with the same contract
(see `serving_module.serving_graph`) runs its own Keras layers
(`reference.py`). The SavedModel holds only TensorFlow graphs, their
constants and variables (the vocabulary, a backbone's or a Keras-served
model's weights): it loads with `tf.saved_model.load` in a process that
never imports `epsilon_tf`.
"""

import json
import os
import tempfile

import numpy as np
import tensorflow as tf

from epsilon_tf.export import versions
from epsilon_tf.export.serving_module import (
    EpsilonServingModule,
)
from epsilon_tf.export.versions import INFO_FILE
from epsilon_tf.labels import LabelSpace
from epsilon_tf.layers.folding import PRECISIONS

__all__ = ["LABEL_SETS", "export_saved_model"]

LABEL_SETS = ("all", "unseen", "seen")
LABELS_FILE = "labels.txt"
UNSEEN_FILE = "unseen.txt"


def _write_assets(directory, label_space, info):
    for name in label_space.names:
        if "\n" in name or "\r" in name:
            raise ValueError(
                f"Label names cannot contain line breaks. Received: {name!r}"
            )
    paths = {
        "labels_file": os.path.join(directory, LABELS_FILE),
        "unseen_file": os.path.join(directory, UNSEEN_FILE),
        "info_file": os.path.join(directory, INFO_FILE),
    }
    with open(paths["labels_file"], "w", encoding="utf-8") as f:
        f.writelines(f"{name}\n" for name in label_space.names)
    with open(paths["unseen_file"], "w", encoding="utf-8") as f:
        f.writelines(f"{int(u)}\n" for u in label_space.unseen_mask)
    with open(paths["info_file"], "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    return paths


def export_saved_model(
    model,
    label_space,
    export_base,
    version=None,
    top_k=10,
    label_set="all",
    backbone=None,
    keep_versions=True,
    overwrite=False,
    jit_compile=False,
    precision="float32",
):
    """Exports Epsilon as a SavedModel version for TF Serving, atomically.

    Writes `export_base/<version>/` with the signatures `serving_default`,
    `score_labels`, `embed` (and `serving_images` with a backbone), the
    vocabulary as the assets `labels.txt` (one name a line) and
    `unseen.txt` (0/1 a line) and `export_info.json`. The version is
    written to `export_base/.tmp-<version>-<pid>` and renamed into place;
    temporary dirs left by dead exporters are removed first.

    Args:
        model: a functional model from `build_epsilon` (any vocabulary:
            only its label-free layers are used), or a LESA or BiAM model
            from `build_model` (exported through its Keras layers,
            `export.reference`, float32).
        label_space: `LabelSpace`. The full label space.
        export_base: str. The model's base directory (what TF Serving's
            `--model_base_path` points at).
        version: int or None. Version number; None takes the largest
            existing version + 1 (1 for an empty base). Defaults to None.
        top_k: int. k of `serving_default`'s `top_k_*` outputs (a
            signature has no optional inputs, so k is fixed here; clamped
            to the vocabulary size). Defaults to 10.
        label_set: str. The `serving_default` vocabulary: "all" (GZSL,
            seen + unseen), "unseen" (ZSL) or "seen". Defaults to "all".
        backbone: None, a `keras.Model` (images -> tokens, preprocessing
            built in) or `(model, preprocess_fn)` from `make_backbone`;
            adds `serving_images`. Defaults to None.
        keep_versions: bool. Keep earlier versions (False deletes them
            once the new one is in place). Defaults to True.
        overwrite: bool. Replace an existing `version`. Defaults to False.
        jit_compile: bool. XLA-compile the numeric part of the feature
            signatures. Defaults to False.
        precision: str. `"float32"` (default) or `"bfloat16"` (an opt-in
            faster, approximate export; see `EpsilonServingModule`).

    Returns:
        str, the path of the new version directory.

    Example:

    >>> path = export_saved_model(model, space, "runs/x/export", top_k=5)
    >>> tf.saved_model.load(path).signatures["serving_default"]
    """
    if label_set not in LABEL_SETS:
        raise ValueError(
            f"`label_set` must be one of {LABEL_SETS}. "
            f"Received: label_set={label_set!r}"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise ValueError(
            f"`top_k` must be a positive integer. Received: top_k={top_k!r}"
        )
    if top_k < 1:
        raise ValueError(
            f"`top_k` must be a positive integer. Received: top_k={top_k!r}"
        )
    if not isinstance(label_space, LabelSpace):
        raise TypeError(
            "`label_space` must be a LabelSpace. "
            f"Received: {type(label_space).__name__}"
        )
    if precision not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {PRECISIONS}. "
            f"Received: precision={precision!r}"
        )
    version = versions.check_version(version)
    space = label_space.subset(label_set)
    if space.num_labels == 0:
        raise ValueError(
            f"The label set {label_set!r} of the label space is empty"
        )
    with versions.write_version(export_base, version, overwrite) as pending:
        with tempfile.TemporaryDirectory(prefix="epsilon-assets-") as scratch:
            module = EpsilonServingModule(
                model,
                space,
                top_k=int(top_k),
                backbone=backbone,
                jit_compile=jit_compile,
                precision=precision,
            )
            module.check_agreement()
            info = dict(
                module.info,
                version=pending.version,
                label_set=label_set,
                signatures=sorted(module.signatures()),
                model_name=model.name,
            )
            for attr, path in _write_assets(scratch, space, info).items():
                setattr(module, attr, tf.saved_model.Asset(path))
            tf.saved_model.save(
                module, pending.tmp, signatures=module.signatures()
            )
    if not keep_versions:
        versions.retire_other_versions(pending.export_base, pending.version)
    return pending.final
