"""eval.py on your own (native) data: a true header, no ignored flags.

Small helpers `cli.evaluate` and `eval.py` call (issue 23):

- `describe_native`: the header's description of a native data
  directory, from its test split's sidecar (its real feature shape and
  label count, not the `--feature_shape` / `--dataset` defaults, which a
  native directory does not use);
- `check_word_vectors_flag`: `--word_vectors` is read by the release
  formats only; for a native directory (its label space is
  `DATA_DIR/label_space.json`) or a built-in benchmark it is refused in
  one line instead of being silently ignored.
"""

import json
import os

from epsilon_tf.errors import CommandLineError


def describe_native(data_dir, split="test"):
    """`native data in DIR (test split: 8 images, 4x512 features, ...)`."""
    path = os.path.join(data_dir, f"{split}.json")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        shape = "x".join(str(v) for v in meta["feature_shape"])
        details = (
            f" ({split} split: {meta['num_examples']} images, {shape} "
            f"{meta['feature_dtype']} features, {meta['num_labels']} "
            f"{meta['label_set']} labels)"
        )
    except (OSError, ValueError, KeyError, TypeError):
        details = ""  # the reader reports a missing or broken sidecar
    return f"native data in {data_dir}{details}"


def uses_word_vectors_flag(cfg):
    """Whether the data of `cfg` is read with `--word_vectors`."""
    if cfg.data_format == "native" or cfg.data_dir:
        return False
    return cfg.dataset not in ("synthetic", "nus_like")


def check_word_vectors_flag(cfg, given):
    """Refuses a given `--word_vectors` that the data would not read."""
    if "word_vectors" not in given or uses_word_vectors_flag(cfg):
        return
    where = (
        f"the label space of {cfg.data_dir} "
        f"({os.path.join(cfg.data_dir, 'label_space.json')})"
        if cfg.data_dir else f"the built-in --dataset={cfg.dataset}'s own"
    )
    raise CommandLineError(
        f"--word_vectors={cfg.word_vectors} is not used for this data: its "
        f"word vectors are {where}. To score other word vectors, make a "
        "label space (python -m epsilon_tf.tools.make_label_space) and tag "
        "with it (python -m epsilon_tf.tools.tag --label_space=...), or "
        "evaluate on data written with it (extract_features)"
    )
