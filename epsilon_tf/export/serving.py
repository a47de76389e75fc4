"""SavedModel export for TF Serving: features or images in, labels out.

`export_saved_model` writes a `tf.Module` with explicit signatures to
`EXPORT_BASE/<version>/` (the TF Serving layout), atomically (the
numbered version directories are `export.versions`'): a server polling
the base never sees a half-written version.

Signatures (inputs declared with their shapes, `features` [None, N, C]
and `label_embeddings` [None, E] float32, and validated again in the
graph, since TF Serving feeds tensors without checking them against the
signature; non-finite `features` or `label_embeddings` are refused with an
error naming the input):

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

The feature signatures of an Epsilon model run
`inference_graph.InferenceGraph`, its forward pass composed from its
layers' folded forms with the weights as graph constants (float32 by
default, bfloat16 on request); every export compares it with the Keras
model on a seeded batch, records the difference in `export_info.json`
(`fold_check`) and refuses a float32 export that differs by more than
`FOLD_TOLERANCE`. Any other model with the same contract (see
`serving_graph`) runs its own Keras layers (`reference.py`). The
SavedModel holds only TensorFlow graphs, their constants and variables
(the vocabulary, a backbone's or a Keras-served model's weights): it loads
with `tf.saved_model.load` in a process that
never imports `epsilon_tf`.
"""

import json
import os
import tempfile
import types

import keras
import numpy as np
import tensorflow as tf

from epsilon_tf.export import versions
from epsilon_tf.export.inference_graph import (
    InferenceGraph,
    max_abs_difference,
)
from epsilon_tf.export.reference import KerasReferenceGraph
from epsilon_tf.export.versions import INFO_FILE
from epsilon_tf.labels import LabelSpace
from epsilon_tf.layers.folding import PRECISIONS, check_precision
from epsilon_tf.layers.label_scoring import scoring_layers, unit_rows
from epsilon_tf.models.epsilon import GFP, GPA, is_epsilon_model
from epsilon_tf.models.factory import model_kind

SERVING_DEFAULT = "serving_default"
SCORE_LABELS = "score_labels"
EMBED = "embed"
SERVING_IMAGES = "serving_images"
LABEL_SETS = ("all", "unseen", "seen")
LABELS_FILE = "labels.txt"
UNSEEN_FILE = "unseen.txt"
# Largest max |difference| between a float32 folded export and the Keras
# model on the export-time check batch (float32 rounding is ~1e-6).
FOLD_TOLERANCE = 1e-4


class _Untracked:
    """Holds an object on a `tf.Module` out of TF's object tracking."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _shape_text(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _check_input(x, name, expected, finite=False):
    """Asserts the shape of a signature input; returns it reshaped.

    The signatures declare their inputs' shapes, but neither TF Serving
    nor a loaded signature called from Python checks a fed tensor against
    them (tested), and a declared shape lets TensorFlow fold shape checks
    into constants. So the input's static shape is first erased
    (`PlaceholderWithDefault` with an unknown shape) and the rank is read
    from the shape's values; these in-graph assertions then reject a bad
    request, with a message naming the input, the expected and the
    received shape. Exactly one of the two
    assertions can fail (rank, then sizes). The input is then coerced to
    the expected shape by a reshape that cannot fail (a no-op for a valid
    input), so no kernel error can pre-empt the assertion's message; the
    assertions are stateful, so the function always runs them.

    Args:
        x: tensor of the signature input.
        name: str. The signature input's name, for the messages.
        expected: tuple. `(leading, *sizes)`: `leading` (str) names the
            free first axis ("batch"); the other sizes are fixed.
        finite: bool. Also reject NaN and Inf values (`CheckNumerics`,
            whose message names the input). Defaults to False.
    """
    x = tf.raw_ops.PlaceholderWithDefault(
        input=x, shape=tf.TensorShape(None), name=f"{name}_unchecked"
    )
    rank = len(expected)
    shape = tf.shape(x)
    # The rank counted from the runtime shape vector's values: inside a
    # function TensorFlow's optimizer still sees the declared rank through
    # `PlaceholderWithDefault` and folds `tf.rank` (or `tf.size(shape)`)
    # into a constant, which would let a rank-4 input through.
    received_rank = tf.reduce_sum(tf.cast(shape >= 0, tf.int32))
    rank_ok = tf.equal(received_rank, rank)
    tf.debugging.Assert(
        rank_ok,
        [
            f"Input `{name}` must have rank {rank}: expected shape "
            f"{_shape_text(expected)}, received shape",
            shape,
        ],
        summarize=16,
        name=f"check_{name}_rank",
    )
    inner = tuple(int(d) for d in expected[1:])
    if inner:
        padded = tf.concat([shape, tf.fill([rank], -1)], axis=0)
        sizes_ok = tf.reduce_all(tf.equal(padded[1:rank], inner))
        tf.debugging.Assert(
            tf.logical_or(tf.logical_not(rank_ok), sizes_ok),
            [
                f"Input `{name}` has the wrong size: expected shape "
                f"{_shape_text(expected)}, received shape",
                shape,
            ],
            summarize=16,
            name=f"check_{name}_shape",
        )
    row = int(np.prod(inner))
    flat = tf.reshape(x, [-1])
    rows = tf.size(flat) // row
    x = tf.reshape(flat[: rows * row], (-1,) + inner)
    if finite:
        x = tf.debugging.check_numerics(
            x,
            f"Input `{name}` must be finite: it holds NaN or Inf",
            name=f"check_{name}_finite",
        )
    return x


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
            features = _check_input(features, "features", expected, True)
            return labelled(features)

        def score(features, label_embeddings):
            features = _check_input(features, "features", expected, True)
            labels = _check_input(
                label_embeddings,
                "label_embeddings",
                ("num_labels", width),
                True,
            )
            return {"scores": label_scores(features, unit_rows(labels))}

        def embed(features):
            features = _check_input(features, "features", expected, True)
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
            images = _check_input(images, "images", ("batch",))
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
