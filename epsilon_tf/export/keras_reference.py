"""The serving module of the LESA and BiAM baselines: traced Keras calls.

Epsilon exports its folded inference graph (`serving.EpsilonServingModule`);
a baseline exports the Keras layers themselves, traced by `tf.function`
through `models.reference_outputs` with the label matrix as a tensor, under
the same signature names and the same input checks:

- `serving_default`: `features` -> `scores` over the exported vocabulary
  and `top_k_indices`, `top_k_labels`, `top_k_scores`, `top_k_unseen`;
- `score_labels`: `features` + `label_embeddings` [K', E] -> `scores`;
- `embed`: `features` -> the model's attention maps (LESA: `attention`
  [b, T, N]; BiAM: `region_attention` [b, heads, N, N], `scene_gate`).

The SavedModel holds TensorFlow graphs and plain variables only, so it
loads without Keras or `epsilon_tf`.
"""

import types

import numpy as np
import tensorflow as tf

from epsilon_tf.labels import LabelSpace
from epsilon_tf.models import model_kind, reference_outputs

# Outputs of `embed` per model (the label-free maps).
EMBED_OUTPUTS = {
    "lesa": ("attention", "attention_logits"),
    "biam": ("region_attention", "scene_gate"),
}


class KerasReferenceServingModule(tf.Module):
    """A LESA or BiAM model's signatures, as `EpsilonServingModule`'s.

    Args:
        model: a functional model from `build_model` with `model="lesa"`
            or `"biam"` (or reloaded from `.keras`).
        label_space: `LabelSpace`. The vocabulary of `serving_default`.
        top_k: int. k of the `top_k_*` outputs (clamped to the vocabulary
            size). Defaults to 10.
        jit_compile: bool. XLA-compile the numeric part. Defaults to False.
        name: str. Module name. Defaults to "keras_reference_serving".
    """

    def __init__(
        self, model, label_space, top_k=10, jit_compile=False,
        name="keras_reference_serving",
    ):
        # Imported here: serving.py imports this module.
        from epsilon_tf.export.serving import (
            EpsilonServingModule,
            _check_input,
        )

        super().__init__(name=name)
        kind = model_kind(model)
        if kind not in EMBED_OUTPUTS:
            raise ValueError(
                f"Model {model.name!r} is not a LESA or BiAM model"
            )
        if not isinstance(label_space, LabelSpace):
            raise TypeError(
                "`label_space` must be a LabelSpace. "
                f"Received: {type(label_space).__name__}"
            )
        width = model.get_layer("label_scoring").embedding_dim
        if label_space.embedding_dim != width:
            raise ValueError(
                f"The label space has {label_space.embedding_dim}-d word "
                f"vectors but the model scores {width}-d word vectors"
            )
        num_regions, channels = (int(d) for d in model.inputs[0].shape[1:])
        k = min(int(top_k), label_space.num_labels)
        self._meta = {
            "feature_shape": [num_regions, channels],
            "embedding_dim": int(width),
            "num_labels": label_space.num_labels,
            "top_k": k,
            "model": kind,
            "branches": [],
            "precision": "float32",
            "graph": "keras_reference",
        }
        self.label_embeddings = tf.Variable(
            label_space.normalized_vectors(), trainable=False,
            name="label_embeddings",
        )
        self.label_names = tf.Variable(
            np.asarray(label_space.names, dtype=object), dtype=tf.string,
            trainable=False, name="label_names",
        )
        self.label_unseen = tf.Variable(
            label_space.unseen_mask, trainable=False, name="label_unseen"
        )
        expected = ("batch", num_regions, channels)
        maps = EMBED_OUTPUTS[kind]

        def scores_and_top_k(features):
            scores = reference_outputs(
                model, features, self.label_embeddings
            )["scores"]
            top_scores, top_indices = tf.math.top_k(scores, k=k)
            return scores, top_scores, top_indices

        numeric = tf.function(
            scores_and_top_k, autograph=False, jit_compile=True
        ) if jit_compile else scores_and_top_k

        def serve(features):
            features = _check_input(features, "features", expected)
            scores, top_scores, top_indices = numeric(features)
            return {
                "scores": scores,
                "top_k_indices": top_indices,
                "top_k_labels": tf.gather(self.label_names, top_indices),
                "top_k_scores": top_scores,
                "top_k_unseen": tf.gather(self.label_unseen, top_indices),
            }

        def score(features, label_embeddings):
            features = _check_input(features, "features", expected)
            labels = _check_input(
                label_embeddings, "label_embeddings", ("num_labels", width)
            )
            return {
                "scores": reference_outputs(model, features, labels)["scores"]
            }

        def embed(features):
            features = _check_input(features, "features", expected)
            # The maps do not depend on the labels: score one placeholder.
            outputs = reference_outputs(
                model, features, self.label_embeddings[:1]
            )
            return {key: outputs[key] for key in maps}

        spec = tf.TensorSpec(None, tf.float32, name="features")
        labels_spec = tf.TensorSpec(
            None, tf.float32, name="label_embeddings"
        )
        self._functions = types.SimpleNamespace(
            serve=tf.function(serve, input_signature=[spec], autograph=False),
            score_labels=tf.function(
                score, input_signature=[spec, labels_spec], autograph=False
            ),
            embed=tf.function(embed, input_signature=[spec], autograph=False),
        )
        # Track the plain variables the traced functions capture (not the
        # Keras objects), exactly as EpsilonServingModule does.
        EpsilonServingModule._track_captured_variables(self)

    @property
    def info(self):
        """Export metadata: shapes, k, the model kind."""
        return dict(self._meta)

    def signatures(self):
        """`{signature name: concrete function}` for `tf.saved_model.save`."""
        from epsilon_tf.export.serving import (
            EMBED,
            SCORE_LABELS,
            SERVING_DEFAULT,
        )

        fns = self._functions
        return {
            SERVING_DEFAULT: fns.serve.get_concrete_function(),
            SCORE_LABELS: fns.score_labels.get_concrete_function(),
            EMBED: fns.embed.get_concrete_function(),
        }
