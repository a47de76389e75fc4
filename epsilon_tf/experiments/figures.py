"""Figures 1 and 3 of the experiments, drawn with matplotlib.

The figure sizes are fixed (no tight bounding box), so a PNG's pixel size
follows from its layout: Figure 1 is `FIG1_CELL` inches per panel,
Figure 3 `FIG3_SIZE`, both at `DPI`.
"""

import numpy as np

DPI = 100
FIG1_CELL = (2.4, 2.6)  # inches per panel (width, height)
FIG3_SIZE = (11.0, 4.2)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure1_size(rows, cols):
    """(width, height) in pixels of a Figure 1 with that many panels."""
    return (round(cols * FIG1_CELL[0] * DPI), round(rows * FIG1_CELL[1] * DPI))


def draw_figure1(path, image_ids, panels, grid):
    """Region maps of a few images, one column per model.

    Args:
        path: PNG to write.
        image_ids: list of n str (the rows).
        panels: list of `(model_name, maps [n, N] or None, top_labels)`
            where `top_labels[i]` is a list of label names (unseen ones
            marked by the caller).
        grid: (rows, cols) of the N regions.

    Returns:
        `(width, height)` of the PNG in pixels.
    """
    plt = _pyplot()
    rows, cols = len(image_ids), len(panels)
    fig, axes = plt.subplots(
        rows, cols, squeeze=False,
        figsize=(cols * FIG1_CELL[0], rows * FIG1_CELL[1]), dpi=DPI,
    )
    for c, (name, maps, top) in enumerate(panels):
        for r in range(rows):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if maps is not None:
                ax.imshow(np.asarray(maps[r]).reshape(grid),
                          cmap="viridis", interpolation="nearest")
            ax.set_title(f"{name}\n" + ", ".join(top[r]), fontsize=7)
            if c == 0:
                ax.set_ylabel(str(image_ids[r]), fontsize=7)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.9, bottom=0.02,
                        wspace=0.15, hspace=0.45)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return figure1_size(rows, cols)


def draw_figure3(path, sweeps, k):
    """Test ZSL/GZSL mAP and F1@k against each swept hyper-parameter.

    Args:
        path: PNG to write.
        sweeps: `{name: {"label": axis label, "values": [x...],
            "chosen": x chosen on validation, "points": {x: summary}}}`
            where a summary is `report.summarize`'s dict.
        k: the K of the F1 curves.

    Returns:
        `(width, height)` of the PNG in pixels.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(sweeps), squeeze=False, figsize=FIG3_SIZE, dpi=DPI
    )
    curves = [("zsl", "map", "ZSL mAP"), ("zsl", f"f1@{k}", f"ZSL F1@{k}"),
              ("gzsl", "map", "GZSL mAP"),
              ("gzsl", f"f1@{k}", f"GZSL F1@{k}")]
    for ax, (_, sweep) in zip(axes[0], sweeps.items(), strict=True):
        xs = list(sweep["values"])
        positions = np.arange(len(xs))
        for setting, metric, label in curves:
            means = [100 * sweep["points"][x][setting][metric]["mean"]
                     for x in xs]
            stds = [100 * sweep["points"][x][setting][metric]["std"]
                    for x in xs]
            ax.errorbar(positions, means, yerr=stds, marker="o",
                        capsize=3, label=label)
        chosen = xs.index(sweep["chosen"])
        ax.axvline(chosen, color="grey", linestyle="--", linewidth=1,
                   label="chosen on validation")
        ax.set_xticks(positions)
        ax.set_xticklabels([f"{x:g}" for x in xs])
        ax.set_xlabel(sweep["label"])
        ax.set_ylabel("test metric (%), mean ± std over seeds")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.95, bottom=0.13,
                        wspace=0.25)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return (round(FIG3_SIZE[0] * DPI), round(FIG3_SIZE[1] * DPI))


def write_png_summaries(logdir, paths):
    """Each PNG of `{name: path}` as a TensorBoard image at step 0."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default(step=0):
        for name, path in paths.items():
            image = tf.io.decode_png(tf.io.read_file(path), channels=3)
            tf.summary.image(name, image[None], step=0)
    writer.flush()
    writer.close()
