"""Group-assignment maps as RGB tiles laid over the region grid (NumPy).

The grid's layout, `infer_grid`, belongs to the layers that convolve over
it (`epsilon_tf.layers.grid_convolution`); it is imported here for the
panels and their users.
"""

import numpy as np

from epsilon_tf.layers.grid_convolution import infer_grid

# A perceptually ordered dark-blue -> green -> yellow ramp (viridis anchors).
_RAMP = np.array(
    [
        (68, 1, 84),
        (72, 40, 120),
        (62, 74, 137),
        (49, 104, 142),
        (38, 130, 142),
        (31, 158, 137),
        (53, 183, 121),
        (109, 205, 89),
        (180, 222, 44),
        (253, 231, 37),
    ],
    dtype=np.float64,
)
TILE_SIDE = 96
_PAD_VALUE = 255


def colorize(values):
    """Maps values in [0, 1] to RGB uint8 colors (dark blue to yellow).

    Args:
        values: float array of any shape; values are clipped to [0, 1].

    Returns:
        uint8 array of shape `values.shape + (3,)`.
    """
    v = np.clip(np.nan_to_num(np.asarray(values, np.float64)), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(_RAMP))
    rgb = np.stack(
        [np.interp(v, stops, _RAMP[:, c]) for c in range(3)], axis=-1
    )
    return np.round(rgb).astype(np.uint8)


def feature_energy(features):
    """Mean absolute activation of every region: [..., N, C] -> [..., N]."""
    return np.abs(np.asarray(features, np.float64)).mean(axis=-1)


def _normalize(values):
    lo, hi = float(np.min(values)), float(np.max(values))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo < 1e-12:
        return np.zeros_like(values, dtype=np.float64)
    return (values - lo) / (hi - lo)


def _tile(values, grid, cell):
    grid_map = _normalize(np.asarray(values, np.float64)).reshape(grid)
    big = np.repeat(np.repeat(grid_map, cell[0], axis=0), cell[1], axis=1)
    return colorize(big)


def cell_size(grid, tile_side=TILE_SIDE):
    """Pixels per region so that a tile is about `tile_side` wide."""
    rows, cols = grid
    if rows == 1 and cols > 1:  # a strip: N not a grid
        return max(8, tile_side // 4), max(1, tile_side // cols)
    side = max(1, tile_side // max(rows, cols))
    return side, side


def assignment_panel(
    assignments, energy=None, grid_shape=None, tile_side=TILE_SIDE, pad=4
):
    """One image's heatmaps side by side: energy, then one tile per group.

    Every map is min-max normalized on its own and drawn over the region
    grid (nearest-neighbour upsampling, so each region is a flat block).

    Args:
        assignments: float array [G, N]. GPA grouping attention of one
            image (`model(features)["assignments"][i]`).
        energy: float array [N] or None. Drawn first when given (e.g.
            `feature_energy(features)`).
        grid_shape: tuple (rows, cols) or None (see `infer_grid`).
        tile_side: int. Approximate tile width in pixels. Defaults to 96.
        pad: int. White pixels between tiles. Defaults to 4.

    Returns:
        uint8 array [height, width, 3].

    Example:

    >>> panel = assignment_panel(np.random.rand(3, 16), np.random.rand(16))
    >>> panel.shape
    (96, 396, 3)
    """
    assignments = np.asarray(assignments)
    if assignments.ndim != 2:
        raise ValueError(
            "`assignments` must be 2-D [groups, regions]. "
            f"Received: shape={assignments.shape}"
        )
    maps = list(assignments)
    if energy is not None:
        energy = np.asarray(energy).reshape(-1)
        if energy.shape[0] != assignments.shape[1]:
            raise ValueError(
                f"`energy` must have one value per region "
                f"({assignments.shape[1]}). Received: shape={energy.shape}"
            )
        maps.insert(0, energy)
    grid = infer_grid(assignments.shape[1], grid_shape)
    cell = cell_size(grid, tile_side)
    tiles = [_tile(m, grid, cell) for m in maps]
    height = tiles[0].shape[0]
    gap = np.full((height, pad, 3), _PAD_VALUE, np.uint8)
    parts = []
    for i, tile in enumerate(tiles):
        if i:
            parts.append(gap)
        parts.append(tile)
    return np.concatenate(parts, axis=1)


def panel_tile_boxes(num_maps, grid, tile_side=TILE_SIDE, pad=4):
    """(left, width) of each tile in an `assignment_panel` of `num_maps`."""
    cell = cell_size(grid, tile_side)
    width = grid[1] * cell[1]
    return [(i * (width + pad), width) for i in range(num_maps)]


CAPTION_HEIGHT = 14


def caption_tiles(panel, names, grid, tile_side=TILE_SIDE, pad=4,
                  height=CAPTION_HEIGHT):
    """`panel` with a white strip below it naming each tile.

    Args:
        panel: uint8 array [H, W, 3] from `assignment_panel`.
        names: list of str, one per tile, left to right (e.g. "energy",
            "group 1", ...).
        grid: (rows, cols) the panel was drawn with.
        tile_side, pad: as given to `assignment_panel`.
        height: int. Pixels of the caption strip.

    Returns:
        uint8 array [H + height, W, 3].
    """
    from PIL import Image, ImageDraw, ImageFont

    panel = np.asarray(panel, np.uint8)
    strip = Image.new("RGB", (panel.shape[1], height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    boxes = panel_tile_boxes(len(names), grid, tile_side, pad)
    for (left, width), name in zip(boxes, names):
        text = str(name)
        # Shorten until it fits its tile.
        while text and draw.textlength(text, font=font) > width:
            text = text[:-1]
        offset = max(0, (width - draw.textlength(text, font=font)) / 2)
        draw.text((left + offset, 1), text, fill=(0, 0, 0), font=font)
    return np.concatenate([panel, np.asarray(strip, np.uint8)], axis=0)
