"""Label vectors from a CLIP text encoder (keras-hub), an optional extra.

Instead of word vectors, each label can be embedded by a CLIP text
encoder from a prompt such as "There is a {} in the scene" (the label's
"_" read as spaces). The encoder is loaded from a local keras-hub preset
directory (`CLIPBackbone.save_to_preset` + `CLIPTokenizer.save_to_preset`,
or a downloaded preset), so nothing is fetched at run time.

keras-hub is not a dependency of the package: install the extra,
`pip install -e .[clip]` (keras-hub and tensorflow-text).
"""

import os

import numpy as np

DEFAULT_PROMPT = "There is a {} in the scene"


def clip_text_vectors(names, preset, prompt=DEFAULT_PROMPT, batch_size=64):
    """One CLIP text embedding per label name.

    Args:
        names: sequence of str. The label names.
        preset: str. A local keras-hub preset directory holding a
            `CLIPBackbone` and its `CLIPTokenizer`.
        prompt: str. A template with one "{}" where the name goes.
        batch_size: int. Prompts per encoder call.

    Returns:
        float32 array [len(names), projection_dim]: the projected text
        embeddings (`CLIPBackbone.get_text_embeddings`).

    Raises:
        ImportError: keras-hub is not installed (names the extra).
        ValueError: a prompt without exactly one "{}".
        FileNotFoundError: `preset` is not a directory.
    """
    if prompt.count("{}") != 1:
        raise ValueError(
            'The prompt must hold one "{}" where the label name goes. '
            f"Received: {prompt!r}"
        )
    if not os.path.isdir(preset):
        raise FileNotFoundError(
            f"CLIP preset directory not found: {preset} (a local keras-hub "
            "preset: config.json, model.weights.h5, tokenizer.json, "
            "assets/)"
        )
    try:
        import keras_hub
    except ImportError as e:
        raise ImportError(
            "CLIP label vectors need keras-hub and tensorflow-text, an "
            "optional extra: pip install -e .[clip] "
            f"({e})"
        ) from None
    tokenizer = keras_hub.models.CLIPTokenizer.from_preset(preset)
    backbone = keras_hub.models.CLIPBackbone.from_preset(preset)
    pad = (tokenizer.end_token_id if tokenizer.pad_with_end_token
           else tokenizer.pad_token_id)
    packer = keras_hub.layers.StartEndPacker(
        start_value=tokenizer.start_token_id,
        end_value=tokenizer.end_token_id,
        pad_value=pad,
        sequence_length=backbone.text_encoder.max_sequence_length,
    )
    texts = [prompt.format(str(n).replace("_", " ")) for n in names]
    rows = []
    for begin in range(0, len(texts), batch_size):
        token_ids = packer(tokenizer(texts[begin:begin + batch_size]))
        rows.append(np.asarray(backbone.get_text_embeddings(token_ids)))
    return np.concatenate(rows).astype(np.float32)
