"""Sets the fixed statistics of a model's `FeatureStandardization` layers.

Run once on a fresh model before training (a resumed run restores them
from its checkpoint): the region-feature statistics of `token_norm` when
it standardizes, and those of GFP's pooled vector when GFP standardizes
it. Both are statistics of the model's *input* features only (GFP's
pooled standardization reads the input features, never trained
activations), so they stay valid for the whole run. They come from the
first `max_images` images of the training subset in file order: the same
images, and the same numbers, on every worker and every rerun.
"""

import numpy as np

from epsilon_tf.layers import FeatureStandardization
from epsilon_tf.models.epsilon import GFP


class _Moments:
    """Per-feature mean and std accumulated in float64."""

    def __init__(self):
        self.n = 0
        self.total = 0.0
        self.squares = 0.0

    def add(self, rows):
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, rows.shape[-1])
        self.n += rows.shape[0]
        self.total = self.total + rows.sum(axis=0)
        self.squares = self.squares + np.square(rows).sum(axis=0)

    def result(self):
        mean = self.total / self.n
        var = np.maximum(self.squares / self.n - np.square(mean), 0.0)
        return mean, np.sqrt(var)


def standardization_targets(model):
    """The `FeatureStandardization` layers of an Epsilon model, by role.

    Returns:
        dict with "tokens" (the `token_norm` layer) and/or "pooled" (the
        GFP layer whose pooled vector is standardized), only those present.
    """
    names = {layer.name for layer in model.layers}
    targets = {}
    if "token_norm" in names and isinstance(
        model.get_layer("token_norm"), FeatureStandardization
    ):
        targets["tokens"] = model.get_layer("token_norm")
    if GFP in names and model.get_layer(GFP).pooled_norm:
        targets["pooled"] = model.get_layer(GFP)
    return targets


def fit_standardization(model, batches, max_images=2048):
    """Sets the statistics of the model's standardization layers.

    Args:
        model: an Epsilon model (`build_epsilon`).
        batches: iterable of float arrays [batch, N, C] of input features
            (training images).
        max_images: int. Images used at most. Defaults to 2048.

    Returns:
        int, the number of images used (0 when the model has nothing to
        standardize; `batches` is then not read).
    """
    targets = standardization_targets(model)
    if not targets:
        return 0
    moments = {role: _Moments() for role in targets}
    used = 0
    for features in batches:
        features = np.asarray(features, dtype=np.float32)
        features = features[: max_images - used]
        if "tokens" in targets:
            moments["tokens"].add(features)
        if "pooled" in targets:
            pooled = np.asarray(targets["pooled"].pool(features))
            moments["pooled"].add(pooled)
        used += features.shape[0]
        if used >= max_images:
            break
    if used == 0:
        raise ValueError(
            "No training images to compute the feature statistics from"
        )
    if "tokens" in targets:
        targets["tokens"].set_statistics(*moments["tokens"].result())
    if "pooled" in targets:
        targets["pooled"].pooled_normalization.set_statistics(
            *moments["pooled"].result()
        )
    return used
