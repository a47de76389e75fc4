"""The Keras reference serving graph: a model's own layers, traced.

Any model with Epsilon's serving contract is exported through this graph:
a `keras.Model` from `features` [batch, N, C] to a dict holding `scores`
[batch, K], whose labels are scored through a fixed-vocabulary
`LabelScoring` layer (or a subclass) over L2-normalized word vectors. The
vocabulary is swapped at trace time (`layers.label_scoring.
scoring_vocabulary`), so `score_labels` scores any vocabulary given at
request time, as the folded graph does. Epsilon models are exported
through the faster folded graph (`inference_graph.InferenceGraph`); this
one is what that graph is checked against at every export, and what the
serving benchmark times as "keras graph".
"""

import tensorflow as tf

from epsilon_tf.layers.label_scoring import (
    scoring_layers,
    scoring_vocabulary,
    unit_rows,
)

# The outputs of a model that depend on the vocabulary: `scores` and every
# output whose name ends in "scores" (`local_scores`, region scores, ...).
SCORE_SUFFIX = "scores"


class KerasReferenceGraph:
    """A serving graph that calls the Keras model itself.

    Same interface as `InferenceGraph`: `semantic(features)` gives the
    label-free outputs, `score_features(features, label_embeddings)` the
    scores of any vocabulary. Its variables are the model's (the exporter
    tracks the ones the traced signatures capture).

    Args:
        model: a `keras.Model` with the contract above.
    """

    kind = "keras_reference"
    precision = "float32"
    fusion_weight = None

    def __init__(self, model):
        self.model = model
        self._check(model)

    @staticmethod
    def _check(model):
        shape = tuple(model.inputs[0].shape) if model.inputs else ()
        if len(model.inputs) != 1 or len(shape) != 3 or None in shape[1:]:
            raise ValueError(
                f"Model {model.name!r} cannot be served: it must take one "
                "input `features` [batch, N, C] with N and C known. "
                f"Received: inputs {[tuple(i.shape) for i in model.inputs]}"
            )
        outputs = model.output
        if not isinstance(outputs, dict) or "scores" not in outputs:
            raise ValueError(
                f"Model {model.name!r} cannot be served: its output must "
                "be a dict holding `scores` [batch, K]"
            )
        if not scoring_layers(model):
            raise ValueError(
                f"Model {model.name!r} cannot be served with an open "
                "vocabulary: it scores no labels through a LabelScoring "
                "layer with a fixed vocabulary"
            )

    def semantic(self, features):
        """The model's label-free outputs (those not named `*scores`)."""
        outputs = self.model(features, training=False)
        return {
            k: v for k, v in outputs.items() if not k.endswith(SCORE_SUFFIX)
        }

    def outputs(self, features, label_embeddings):
        """Every output of the model, scoring `label_embeddings`."""
        with scoring_vocabulary(self.model, label_embeddings):
            return dict(self.model(features, training=False))

    def score_features(self, features, label_embeddings, semantic=None):
        """The model's `scores` [batch, K] over `label_embeddings`.

        Args:
            features: float32 [batch, N, C].
            label_embeddings: float32 [K, E], rows L2-normalized.
            semantic: ignored (the model computes everything in one call).
        """
        del semantic
        return self.outputs(features, label_embeddings)["scores"]


def keras_reference_serving(model, label_space, top_k=10):
    """`features` -> `scores` and top-k over `label_space`, Keras layers.

    The model's own layers traced into one `tf.function` (what the export
    ran before the folded graph), for the serving benchmark and for
    comparisons.

    Args:
        model: a `keras.Model` with the serving contract (see module).
        label_space: `LabelSpace`, the vocabulary scored.
        top_k: int. Defaults to 10.

    Returns:
        A `tf.function` of `features` [batch, N, C] returning a dict with
        `scores`, `top_k_labels` and `top_k_scores`.
    """
    graph = KerasReferenceGraph(model)
    labels = unit_rows(tf.constant(label_space.vectors, tf.float32))
    names = tf.constant(label_space.names)
    k = min(int(top_k), label_space.num_labels)

    @tf.function(
        input_signature=[
            tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]))
        ],
        autograph=False,
    )
    def serve(features):
        scores = graph.score_features(features, labels)
        top_scores, top_indices = tf.math.top_k(scores, k=k)
        return {
            "scores": scores,
            "top_k_labels": tf.gather(names, top_indices),
            "top_k_scores": top_scores,
        }

    return serve
