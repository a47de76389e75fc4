"""The exported object: a model's serving graphs, signatures and vocabulary.

`EpsilonServingModule` is the `tf.Module` that `serving.export_saved_model`
saves. Its signatures (inputs declared with their shapes, `features`
[None, N, C] and `label_embeddings` [None, E] float32, and validated again
in the graph by `input_checks.check_input`, since TF Serving feeds tensors
without checking them against the signature; non-finite `features` or
`label_embeddings` are refused with an error naming the input):

- `serving_default`: `features` [batch, N, C] float32 -> `scores`
  [batch, K] over the exported vocabulary, `top_k_indices` int32,
  `top_k_labels` string, `top_k_scores` float32 and `top_k_unseen` bool
  (each [batch, k], k = min(`top_k`, K), fixed at export).
- `score_labels`: `features` [batch, N, C] + `label_embeddings` [K', E]
  float32 -> `scores` [batch, K']: any vocabulary at request time, rows
  L2-normalized inside exactly as `LabelScoring` does.
- `embed`: `features` -> `local_prompts` [batch, G, E], `assignments`
  [batch, G, N], `global_vectors` [batch, M, E] (those of the enabled
  branches) and `fusion_weight` [batch] (the scalar, broadcast).
- `serving_images` (with a backbone): encoded JPEG/PNG/BMP/GIF bytes
  [batch] string -> the outputs of `serving_default`.

The numeric graph (`serving_graph`) of an Epsilon model is
`inference_graph.InferenceGraph`, composed from its layers' folded forms
(the folds themselves live with the layers); `check_agreement` compares
it with the Keras model and refuses a float32 graph that differs by more
than `FOLD_TOLERANCE`.
"""

import types

import keras
import numpy as np
import tensorflow as tf

from epsilon_tf.export.inference_graph import (
    InferenceGraph,
    max_abs_difference,
)
from epsilon_tf.export.input_checks import check_input
from epsilon_tf.export.reference import KerasReferenceGraph
from epsilon_tf.labels import LabelSpace
from epsilon_tf.layers.folding import check_precision
from epsilon_tf.layers.label_scoring import scoring_layers, unit_rows
from epsilon_tf.models.epsilon import GFP, GPA, is_epsilon_model
from epsilon_tf.models.factory import model_kind

SERVING_DEFAULT = "serving_default"
SCORE_LABELS = "score_labels"
EMBED = "embed"
SERVING_IMAGES = "serving_images"
# Largest max |difference| between a float32 folded export and the Keras
# model on the export-time check batch (float32 rounding is ~1e-6).
FOLD_TOLERANCE = 1e-4


class _Untracked:
    """Holds an object on a `tf.Module` out of TF's object tracking."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def serving_graph(model, precision="float32"):
    """The numeric graph an export of `model` runs.

    Epsilon models (`models.epsilon.is_epsilon_model`) run the folded
    `InferenceGraph`; any other model with the serving contract (features
    [batch, N, C] -> a dict with `scores`, labels scored through a
    `LabelScoring`) runs its own Keras layers
    (`reference.KerasReferenceGraph`, float32 only). A new model plugs in
    by meeting that contract, or by giving its layers folded forms and
    composing them like `InferenceGraph`.
    """
    check_precision(precision)
    if is_epsilon_model(model):
        return InferenceGraph(model, precision=precision)
    if precision != "float32":
        raise ValueError(
            f"Model {model.name!r} is not an Epsilon model: it is exported "
            "through its Keras layers, in float32 only. Received: "
            f"precision={precision!r}"
        )
    return KerasReferenceGraph(model)


def _float32_twin(model):
    """`model`, or a float32 copy of it when its layers compute in less.

    A mixed-precision model (`mixed_bfloat16`) computes in bfloat16; the
    folded float32 graph is checked against the float32 function its
    weights define: the same architecture, cloned under the float32
    policy, with the same weights.
    """
    stack, layers = list(model.layers), []
    while stack:
        layer = stack.pop()
        layers.append(layer)
        stack.extend(getattr(layer, "_layers", ()) or ())
    if all(layer.compute_dtype == "float32" for layer in layers):
        return model
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        twin = keras.models.clone_model(
            model,
            clone_function=lambda layer: layer.__class__.from_config(
                dict(layer.get_config(), dtype="float32")
            ),
        )
    finally:
        keras.config.set_dtype_policy(previous)
    twin.set_weights(model.get_weights())
    return twin


class FoldMismatchError(ValueError):
    """The folded graph does not compute the Keras model's function."""


class EpsilonServingModule(tf.Module):
    """The exported object: a model's serving graphs and a vocabulary.

    An Epsilon model's layers are read into an `InferenceGraph` (their
    folded forms, weights as graph constants); any other model with the
    serving contract runs its Keras layers (`serving_graph`). A backbone's
    Keras layers are traced. The module tracks the captured variables (not
    the Keras objects): the SavedModel needs neither Keras nor
    `epsilon_tf` to load.

    Args:
        model: a functional model from `build_epsilon` (or reloaded from
            `.keras`), or another model with the serving contract.
        label_space: `LabelSpace`. The vocabulary of `serving_default`.
        top_k: int. k of the `top_k_*` outputs (clamped to the vocabulary
            size). Defaults to 10.
        backbone: None, a `keras.Model` (images [b, S, S, 3] -> tokens
            [b, N, C] or a map [b, H, W, C]; preprocessing built in), or a
            tuple `(model, preprocess_fn)` as `make_backbone` returns.
            Adds the `serving_images` signature. Defaults to None.
        jit_compile: bool. XLA-compile the numeric part of the feature
            signatures. Defaults to False.
        precision: str. `"float32"` (default: the model's scores to
            float32 rounding) or `"bfloat16"` (Epsilon only: the
            Transformer's matrix products in bfloat16; faster on CPUs with
            AMX/AVX512-BF16, approximate scores, BUILD_NOTES.md "Serving
            latency"). See `InferenceGraph`.
        name: str. Module name. Defaults to "epsilon_serving".
    """

    def __init__(
        self,
        model,
        label_space,
        top_k=10,
        backbone=None,
        jit_compile=False,
        precision="float32",
        name="epsilon_serving",
    ):
        super().__init__(name=name)
        if not isinstance(label_space, LabelSpace):
            raise TypeError(
                "`label_space` must be a LabelSpace. "
                f"Received: {type(label_space).__name__}"
            )
        if label_space.num_labels < 1:
            raise ValueError("The exported vocabulary has no labels")
        # The numeric part: the folded inference graph for Epsilon (the
        # same function with a fraction of the ops, its weights graph
        # constants), the Keras layers for other models.
        graph = serving_graph(model, precision)
        # Either graph has checked that the model scores through one.
        width = scoring_layers(model)[0].embedding_dim
        if label_space.embedding_dim != width:
            raise ValueError(
                f"The label space has {label_space.embedding_dim}-d word "
                f"vectors but the model scores {width}-d word vectors"
            )
        names = {layer.name for layer in model.layers}
        self._model = _Untracked(model)
        self._graph = _Untracked(graph)
        self._meta = {
            "feature_shape": [int(d) for d in model.inputs[0].shape[1:]],
            "embedding_dim": int(width),
            "num_labels": label_space.num_labels,
            "top_k": min(int(top_k), label_space.num_labels),
            "branches": [b for b in (GPA, GFP) if b in names],
            "precision": precision,
            "serving_graph": graph.kind,
            "model": model_kind(model),
        }
        num_regions, channels = self._meta["feature_shape"]
        k = self._meta["top_k"]

        # The vocabulary, its rows normalized once here rather than on every
        # request. The model's variables are tracked after tracing (below).
        self.label_embeddings = tf.Variable(
            label_space.normalized_vectors(),
            trainable=False,
            name="label_embeddings",
        )
        self.label_names = tf.Variable(
            np.asarray(label_space.names, dtype=object),
            dtype=tf.string,
            trainable=False,
            name="label_names",
        )
        self.label_unseen = tf.Variable(
            label_space.unseen_mask, trainable=False, name="label_unseen"
        )

        # One tf.function traced once and called by every signature, so
        # the SavedModel holds the folded weights once.
        semantic = tf.function(
            graph.semantic,
            input_signature=[
                tf.TensorSpec((None, num_regions, channels), tf.float32)
            ],
            autograph=False,
        )

        def label_scores(features, label_embeddings):
            return graph.score_features(features, label_embeddings, semantic)

        def scores_and_top_k(features):
            scores = label_scores(features, self.label_embeddings)
            top_scores, top_indices = tf.math.top_k(scores, k=k)
            return scores, top_scores, top_indices

        numeric = (
            tf.function(scores_and_top_k, autograph=False, jit_compile=True)
            if jit_compile
            else scores_and_top_k
        )

        def labelled(features):
            scores, top_scores, top_indices = numeric(features)
            return {
                "scores": scores,
                "top_k_indices": top_indices,
                "top_k_labels": tf.gather(self.label_names, top_indices),
                "top_k_scores": top_scores,
                "top_k_unseen": tf.gather(self.label_unseen, top_indices),
            }

        # Declared shapes, for saved_model_cli, TF Serving's metadata and
        # generated clients; `_check_input` still validates in the graph.
        feature_spec = tf.TensorSpec(
            (None, num_regions, channels), tf.float32, name="features"
        )
        expected = ("batch", num_regions, channels)

        def serve(features):
            features = check_input(features, "features", expected, True)
            return labelled(features)

        def score(features, label_embeddings):
            features = check_input(features, "features", expected, True)
            labels = check_input(
                label_embeddings,
                "label_embeddings",
                ("num_labels", width),
                True,
            )
            return {"scores": label_scores(features, unit_rows(labels))}

        def embed(features):
            features = check_input(features, "features", expected, True)
            outputs = dict(semantic(features))
            if graph.fusion_weight is not None:
                outputs["fusion_weight"] = tf.fill(
                    tf.shape(features)[:1], graph.fusion_weight
                )
            return outputs

        # The tf.functions live outside TF's object tracking: the SavedModel
        # stores their traced concrete functions as signatures only, so
        # `tf.saved_model.save` does not trace the model a second time.
        self._functions = types.SimpleNamespace(
            serve=tf.function(
                serve, input_signature=[feature_spec], autograph=False
            ),
            score_labels=tf.function(
                score,
                input_signature=[
                    feature_spec,
                    tf.TensorSpec(
                        (None, width), tf.float32, name="label_embeddings"
                    ),
                ],
                autograph=False,
            ),
            embed=tf.function(
                embed, input_signature=[feature_spec], autograph=False
            ),
            serve_images=None,
        )
        if backbone is not None:
            self._add_image_signature(backbone, labelled, expected)
        self._track_captured_variables()

    def check_agreement(self, batch=4, seed=0, tolerance=FOLD_TOLERANCE):
        """Compares the exported graph with the Keras model; records it.

        Runs `serving_default` and `embed` (the traced signatures, as they
        will be saved) and the Keras model's own layers
        (`KerasReferenceGraph`) on a seeded batch of normal features, over
        the exported vocabulary, and stores the maximum absolute
        difference of the scores and of the label-free outputs in `info`
        (`fold_check`). A folded float32 graph that differs by more than
        `tolerance` is refused: a fold is wrong.

        Raises:
            FoldMismatchError: float32, folded, and the difference exceeds
                `tolerance`.
        """
        graph, model = self._graph.value, self._model.value
        check = {"batch": int(batch), "seed": int(seed)}
        if graph.kind == "keras_reference":
            check.update(max_abs_difference=0.0, tolerance=None)
            self._meta["fold_check"] = check
            return check
        shape = (batch,) + tuple(self._meta["feature_shape"])
        x = tf.constant(
            np.random.default_rng(seed).normal(size=shape), tf.float32
        )
        reference = KerasReferenceGraph(_float32_twin(model))
        expected = reference.outputs(x, tf.constant(self.label_embeddings))
        got = dict(self._functions.embed(x))
        got.pop("fusion_weight", None)
        got["scores"] = self._functions.serve(x)["scores"]
        difference = max_abs_difference(
            {k: v.numpy() for k, v in got.items()},
            {k: v.numpy() for k, v in expected.items()},
        )
        enforced = self._meta["precision"] == "float32"
        check.update(
            max_abs_difference=difference,
            tolerance=tolerance if enforced else None,
        )
        self._meta["fold_check"] = check
        if enforced and not difference <= tolerance:
            raise FoldMismatchError(
                f"The folded inference graph of model {model.name!r} "
                f"differs from the Keras model by {difference:.3g} (more "
                f"than {tolerance:g}) on a seeded batch of {batch}: a "
                "layer's folded form is wrong; the export is refused"
            )
        return check

    def _track_captured_variables(self):
        # Track the tf.Variables the traced signatures capture (not the Keras
        # wrappers): the SavedModel then holds plain variables that both the
        # TF2 loader and TF Serving's session-based loader restore.
        seen, captured = set(), []
        for concrete in self.signatures().values():
            for var in concrete.variables:
                if id(var) not in seen:
                    seen.add(id(var))
                    captured.append(var)
        self.captured_variables = captured

    def _add_image_signature(self, backbone, labelled, expected):
        if isinstance(backbone, (tuple, list)):
            backbone, preprocess = backbone
        else:
            preprocess = None
        if not isinstance(backbone, keras.Model):
            raise TypeError(
                "`backbone` must be a keras.Model or a (model, "
                "preprocess_fn) tuple from `make_backbone`. "
                f"Received: {type(backbone).__name__}"
            )
        in_shape = tuple(backbone.inputs[0].shape)
        if len(in_shape) != 4 or None in in_shape[1:] or in_shape[3] != 3:
            raise ValueError(
                "The backbone must take images [batch, height, width, 3] of "
                f"a fixed size. Received: input shape {in_shape}"
            )
        out_shape = tuple(backbone.outputs[0].shape)
        if len(out_shape) == 4:
            tokens = (out_shape[1] * out_shape[2], out_shape[3])
        elif len(out_shape) == 3:
            tokens = tuple(out_shape[1:])
        else:
            tokens = None
        if tokens != tuple(expected[1:]):
            raise ValueError(
                f"The backbone produces features of shape {out_shape} "
                f"({tokens} region tokens) but the model expects "
                f"{tuple(expected[1:])}"
            )
        height, width = int(in_shape[1]), int(in_shape[2])
        self._meta["image_size"] = [height, width]
        self._meta["backbone"] = backbone.name

        def decode(data):
            image = tf.io.decode_image(
                data, channels=3, expand_animations=False
            )
            image.set_shape([None, None, 3])
            return tf.image.resize(image, (height, width))

        def serve_images(images):
            images = check_input(images, "images", ("batch",))
            pixels = tf.map_fn(
                decode,
                images,
                fn_output_signature=tf.TensorSpec(
                    (height, width, 3), tf.float32
                ),
            )
            if preprocess is not None:
                pixels = preprocess(pixels)
            features = backbone(pixels, training=False)
            features = tf.reshape(features, (-1,) + tuple(expected[1:]))
            return labelled(features)

        self._functions.serve_images = tf.function(
            serve_images,
            input_signature=[tf.TensorSpec(None, tf.string, name="images")],
            autograph=False,
        )

    @property
    def info(self):
        """Export metadata: shapes, k, branches, image size."""
        return dict(self._meta)

    def signatures(self):
        """`{signature name: concrete function}` for `tf.saved_model.save`.

        The functions are traced on the first call (and cached).
        """
        fns = self._functions
        signatures = {
            SERVING_DEFAULT: fns.serve,
            SCORE_LABELS: fns.score_labels,
            EMBED: fns.embed,
        }
        if fns.serve_images is not None:
            signatures[SERVING_IMAGES] = fns.serve_images
        return {k: f.get_concrete_function() for k, f in signatures.items()}
