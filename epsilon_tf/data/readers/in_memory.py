"""Splits held in NumPy arrays (small data, tests, notebooks)."""

import numpy as np
import tensorflow as tf

from epsilon_tf.data.base import SplitReader, first_invalid_label


def array_split(name, features, labels, label_set, image_ids=None):
    """A `SplitReader` over in-memory arrays.

    Args:
        name: str. Split name.
        features: float array [num_images, N, C].
        labels: array [num_images, K] of +1/-1/0.
        label_set: "seen" or "all" (see `epsilon_tf.data.base`).
        image_ids: sequence of str or None (defaults to "<name>-<index>").
    """
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.float32)
    if features.ndim != 3:
        raise ValueError(
            "`features` must be 3-D [num_images, regions, channels]. "
            f"Received: shape={features.shape}"
        )
    if labels.ndim != 2 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            "`labels` must be 2-D [num_images, num_labels] with one row per "
            f"image ({features.shape[0]}). Received: shape={labels.shape}"
        )
    if first_invalid_label(labels) is not None:
        raise ValueError("`labels` must hold only +1, -1 and 0")
    if image_ids is None:
        image_ids = [f"{name}-{i}" for i in range(features.shape[0])]
    ids = np.asarray([str(i) for i in image_ids])

    def make(files_seed, input_context):
        ds = tf.data.Dataset.from_tensor_slices(
            {"image_id": ids, "features": features, "labels": labels}
        )
        if input_context is not None and input_context.num_input_pipelines > 1:
            ds = ds.shard(
                input_context.num_input_pipelines,
                input_context.input_pipeline_id,
            )
        return ds

    return SplitReader(
        name=name,
        label_set=label_set,
        make_dataset=make,
        num_examples=int(features.shape[0]),
    )
