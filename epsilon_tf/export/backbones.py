"""Frozen image backbones that turn images into region tokens [N, C].

A small registry over `keras.applications`: each entry names the
constructor, the layer whose feature map becomes the tokens and the
matching preprocessing. VGG19 `block5_conv4` (14x14x512 = 196x512 tokens at
224x224, the features of the NUS-WIDE / Open Images releases) is the
default.
"""

import dataclasses
import os
from typing import Callable, Optional

import keras


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build one registered backbone.

    Args:
        constructor: str. Name of the `keras.applications` constructor.
        layer: str or None. Layer whose output is the feature map (None:
            the `include_top=False` model's output).
        preprocess: str. `keras.applications` module whose
            `preprocess_input` the images go through.
    """

    constructor: str
    layer: Optional[str]
    preprocess: str


BACKBONES = {
    "vgg19": BackboneSpec("VGG19", "block5_conv4", "vgg19"),
    "vgg16": BackboneSpec("VGG16", "block5_conv3", "vgg16"),
    "resnet50": BackboneSpec("ResNet50", "conv5_block3_out", "resnet50"),
    "resnet101": BackboneSpec("ResNet101", "conv5_block3_out", "resnet"),
    "resnet50v2": BackboneSpec("ResNet50V2", "post_relu", "resnet_v2"),
    "mobilenetv2": BackboneSpec("MobileNetV2", "out_relu", "mobilenet_v2"),
    "densenet121": BackboneSpec("DenseNet121", "relu", "densenet"),
    "efficientnetb0": BackboneSpec(
        "EfficientNetB0", "top_activation", "efficientnet"
    ),
}


def backbone_names():
    """The registered backbone names, sorted."""
    return sorted(BACKBONES)


def _resolve_weights(weights):
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            '`weights` must be "imagenet", None or the path of a weights '
            f"file. Received: weights={weights!r}"
        )
    weights = os.fspath(weights)
    if weights.lower() == "none":
        return None
    if weights == "imagenet":
        return weights
    if not os.path.exists(weights):
        raise FileNotFoundError(
            '`weights` is neither "imagenet" nor None, so it must be the '
            f"path of a weights file. Received: weights={weights!r} (no "
            "such file)"
        )
    return weights


def make_backbone(name="vgg19", weights=None, image_size=224, seed=0):
    """Builds a frozen backbone: images [b, S, S, 3] -> tokens [b, N, C].

    The feature map [b, H, W, C] of the registered layer is reshaped to
    H*W region tokens. The model is frozen (`trainable = False`). The
    returned `preprocess_fn` maps RGB images with values in [0, 255]
    (float32) to what the backbone expects.

    Args:
        name: str. A registered backbone (`backbone_names()`), case
            insensitive. Defaults to "vgg19" (`block5_conv4`).
        weights: str or None. "imagenet" (downloaded by Keras), None
            (random initialization, for tests) or the path of a weights
            file of the `include_top=False` model. Defaults to None.
        image_size: int. Side S of the square input images. Defaults to
            224.
        seed: int. With `weights=None`, the random initial weights are
            drawn from this seed (the global Keras seed is set), so every
            call builds the same network: features extracted now and
            images tagged later go through the same random backbone.
            Defaults to 0.

    Returns:
        A tuple `(model, preprocess_fn)`: `model` a `keras.Model` from
        images [batch, S, S, 3] float32 to tokens [batch, N, C];
        `preprocess_fn` the matching `preprocess_input`.

    Example:

    >>> backbone, preprocess = make_backbone("vgg19", weights=None)
    >>> backbone.output_shape
    (None, 196, 512)
    """
    key = str(name).lower()
    if key not in BACKBONES:
        raise ValueError(
            f"Unknown backbone. Expected one of {backbone_names()}. "
            f"Received: name={name!r}"
        )
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or image_size < 32
    ):
        raise ValueError(
            "`image_size` must be an integer >= 32. "
            f"Received: image_size={image_size!r}"
        )
    weights = _resolve_weights(weights)
    if weights is None:
        keras.utils.set_random_seed(int(seed))
    spec = BACKBONES[key]
    constructor = getattr(keras.applications, spec.constructor)
    base = constructor(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_shape=(image_size, image_size, 3),
    )
    if weights not in (None, "imagenet"):
        base.load_weights(weights)
    feature_map = (
        base.output if spec.layer is None else base.get_layer(spec.layer).output
    )
    _, height, width, channels = feature_map.shape
    tokens = keras.layers.Reshape(
        (height * width, channels), name="to_region_tokens"
    )(feature_map)
    model = keras.Model(
        base.input, tokens, name=f"{key}_{spec.layer or 'output'}_tokens"
    )
    model.trainable = False
    module = getattr(keras.applications, spec.preprocess)
    preprocess_fn: Callable = module.preprocess_input
    return model, preprocess_fn
