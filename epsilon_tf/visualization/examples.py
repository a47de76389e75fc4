"""Paper-style qualitative figures: top labels beside the GPA heatmaps.

Like Figures 4-5 of the Epsilon paper: for one image, the top-K labels
the model ranks over every label (GZSL), unseen labels marked `*`, the
labels annotated +1 drawn in green with a check mark, next to the
mean feature-energy map and one group-assignment map per GPA prompt.

Pixels cannot be read back reliably, so every PNG also carries what it
shows: a `tEXt` chunk `epsilon:example` and a JSON file beside it, both
holding the image id and the ranked labels with their score, unseen and
correct flags.
"""

import json
import os
import re

import numpy as np

from epsilon_tf import _validation as check
from epsilon_tf.data.pipeline import input_errors, make_dataset
from epsilon_tf.models import with_labels
from epsilon_tf.visualization.heatmaps import (
    TILE_SIDE,
    assignment_panel,
    feature_energy,
    infer_grid,
    panel_tile_boxes,
)

PNG_TEXT_KEY = "epsilon:example"
_GREEN = (0, 130, 0)
_TEXT = (40, 40, 40)
_MUTED = (110, 110, 110)
_BACKGROUND = (255, 255, 255)
_MARGIN = 12
_LINE = 20
_TEXT_WIDTH = 330


def _font(size):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def top_label_entries(scores, labels, label_space, top_k=10):
    """The `top_k` labels of one image, best first.

    Args:
        scores: float array [K], one score per label of `label_space`.
        labels: array [K] of +1/-1/0 or None (then `correct` is None).
        label_space: `LabelSpace` the scores are over.
        top_k: int. How many labels. Defaults to 10.

    Returns:
        list of dicts `{"rank", "name", "score", "unseen", "correct"}`.
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    if scores.shape[0] != label_space.num_labels:
        raise ValueError(
            f"`scores` has {scores.shape[0]} entries but the label space "
            f"has {label_space.num_labels} labels"
        )
    # Stable: ties keep label order, like the metrics' top-K.
    order = np.argsort(-scores, kind="stable")[: min(top_k, scores.shape[0])]
    unseen = label_space.unseen_mask
    entries = []
    for rank, k in enumerate(order, start=1):
        entries.append(
            {
                "rank": rank,
                "name": label_space.names[int(k)],
                "score": float(scores[k]),
                "unseen": bool(unseen[k]),
                "correct": None if labels is None else bool(labels[k] > 0),
            }
        )
    return entries


def _check_mark(draw, x, y, size, color):
    draw.line(
        [(x, y + size * 0.55), (x + size * 0.35, y + size * 0.9),
         (x + size, y + size * 0.1)],
        fill=color,
        width=2,
    )


def render_example(image_id, entries, panel, captions=(), title=None):
    """Draws one figure: the ranked labels left, the heatmaps right.

    Args:
        image_id: str. Shown on top.
        entries: list of dicts from `top_label_entries`.
        panel: uint8 array [h, w, 3] from `assignment_panel`.
        captions: sequence of (left, width, text) placed under the panel.
        title: str or None. Overrides the top line.

    Returns:
        A `PIL.Image.Image` (RGB).
    """
    from PIL import Image, ImageDraw

    font, small = _font(14), _font(12)
    panel_h, panel_w = panel.shape[:2]
    text_h = _MARGIN + _LINE * (len(entries) + 3)
    height = max(text_h, _MARGIN + _LINE + panel_h + _LINE + _MARGIN)
    width = _MARGIN + _TEXT_WIDTH + _MARGIN + panel_w + _MARGIN
    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text(
        (_MARGIN, _MARGIN), title or f"image {image_id}", fill=_TEXT,
        font=font,
    )
    y = _MARGIN + _LINE + 4
    for entry in entries:
        correct = bool(entry.get("correct"))
        color = _GREEN if correct else _TEXT
        mark = "*" if entry["unseen"] else ""
        text = f"{entry['rank']:>2}. {entry['name']}{mark}"
        draw.text((_MARGIN + 18, y), text, fill=color, font=font)
        draw.text(
            (_MARGIN + _TEXT_WIDTH - 60, y), f"{entry['score']:.3f}",
            fill=_MUTED, font=small,
        )
        if correct:
            _check_mark(draw, _MARGIN + 2, y + 2, 11, _GREEN)
        y += _LINE
    draw.text(
        (_MARGIN, y + 6),
        "* unseen label; green + check: annotated +1",
        fill=_MUTED,
        font=small,
    )
    left = _MARGIN + _TEXT_WIDTH + _MARGIN
    top = _MARGIN + _LINE
    image.paste(Image.fromarray(panel, "RGB"), (left, top))
    for x, _, text in captions:
        draw.text((left + x, top + panel_h + 3), text, fill=_MUTED,
                  font=small)
    return image


def save_example_png(path, image, record):
    """Writes `image` to `path` with `record` as tEXt and as a JSON file.

    Returns:
        The path of the JSON file (`path` with `.json` for `.png`).
    """
    from PIL.PngImagePlugin import PngInfo

    text = json.dumps(record, sort_keys=True)
    info = PngInfo()
    info.add_text(PNG_TEXT_KEY, text)
    tmp = f"{path}.tmp"
    image.save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)
    sidecar = os.path.splitext(path)[0] + ".json"
    with open(f"{sidecar}.tmp", "w", encoding="utf-8") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True))
    os.replace(f"{sidecar}.tmp", sidecar)
    return sidecar


def read_example_record(path):
    """The record stored in an example PNG's tEXt chunk."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return json.loads(image.text[PNG_TEXT_KEY])


def _file_name(index, image_id):
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(image_id))[:80]
    return f"{index:04d}_{safe}.png"


def draw_example(
    image_id, scores, labels, assignments, features, label_space,
    top_k=10, grid_shape=None,
):
    """One figure and its record from one image's model outputs.

    Args:
        image_id: str.
        scores: [K] scores over `label_space`.
        labels: [K] +1/-1/0 or None.
        assignments: [G, N] group-assignment maps.
        features: [N, C] the image's features (for the energy map).
        label_space: `LabelSpace`.
        top_k: int. Labels listed.
        grid_shape: (rows, cols) or None.

    Returns:
        `(PIL image, record dict)`.
    """
    entries = top_label_entries(scores, labels, label_space, top_k)
    assignments = np.asarray(assignments)
    grid = infer_grid(assignments.shape[-1], grid_shape)
    panel = assignment_panel(assignments, feature_energy(features), grid)
    names = ["energy"] + [
        f"group {g + 1}" for g in range(assignments.shape[0])
    ]
    boxes = panel_tile_boxes(len(names), grid, TILE_SIDE)
    captions = [(x, w, n) for (x, w), n in zip(boxes, names, strict=True)]
    title = (
        f"image {image_id}: top {len(entries)} of "
        f"{label_space.num_labels} labels (GZSL)"
    )
    image = render_example(image_id, entries, panel, captions, title)
    record = {
        "image_id": image_id,
        "setting": "gzsl",
        "top_labels": entries,
        "maps": names,
        "grid": list(grid),
    }
    return image, record


def write_examples(
    model,
    split_reader,
    label_space,
    out_dir,
    num_examples,
    top_k=10,
    grid_shape=None,
    batch_size=64,
):
    """Writes one paper-style PNG (plus JSON) per image of a split.

    The first `num_examples` images of `split_reader` (in file order) are
    scored over every label of `label_space` (GZSL) by `model`, which must
    have the GPA branch (its `assignments` output).

    Args:
        model: an Epsilon Keras model (`build_epsilon` / `model.keras`).
        split_reader: `SplitReader` whose labels cover `label_space`
            (`label_set="all"`), e.g. the test split.
        label_space: `LabelSpace`.
        out_dir: str. Created if needed.
        num_examples: int. Images to draw.
        top_k: int. Labels listed per image. Defaults to 10.
        grid_shape: (rows, cols) of the region grid or None (a square grid
            when N is a perfect square, else one row).
        batch_size: int. Images per forward pass.

    Returns:
        list of the PNG paths written.
    """
    check.positive_int("num_examples", num_examples)
    if "assignments" not in model.output:
        raise ValueError(
            "This model has no GPA branch (no `assignments` output), so "
            "there are no group-assignment maps to draw"
        )
    if split_reader.label_set != "all":
        raise ValueError(
            f"Examples need a split labelled over every label; split "
            f"{split_reader.name!r} has label_set={split_reader.label_set!r}"
        )
    gzsl = with_labels(model, label_space.vectors)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    ds = make_dataset(split_reader, min(batch_size, num_examples))
    with input_errors():
        for batch in ds:
            outputs = gzsl(batch["features"], training=False)
            scores = np.asarray(outputs["scores"])
            maps = np.asarray(outputs["assignments"])
            feats = batch["features"].numpy()
            labels = batch["labels"].numpy()
            ids = [v.decode("utf-8", "replace")
                   for v in batch["image_id"].numpy()]
            for i, image_id in enumerate(ids[: num_examples - len(paths)]):
                image, record = draw_example(
                    image_id, scores[i], labels[i], maps[i], feats[i],
                    label_space, top_k, grid_shape,
                )
                path = os.path.join(out_dir, _file_name(len(paths), image_id))
                save_example_png(path, image, record)
                paths.append(path)
            if len(paths) == num_examples:
                break
    return paths
