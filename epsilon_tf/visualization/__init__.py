"""Pictures of what Epsilon attends to: GPA group-assignment heatmaps.

`heatmaps` turns assignment maps into RGB arrays (NumPy only; used for
TensorBoard image summaries). `examples` draws paper-style figures (top
predicted labels beside the heatmaps) as PNG files with Pillow.
`label_maps` gives every label's region map for Epsilon, LESA and BiAM
(the maps of the experiments' Figure 1), for the completeness measure.
"""

from epsilon_tf.visualization.heatmaps import (
    assignment_panel,
    colorize,
    feature_energy,
    infer_grid,
)

__all__ = ["assignment_panel", "colorize", "feature_energy", "infer_grid"]
