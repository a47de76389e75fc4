"""Summaries of the experiments: mean ± std over seeds, the best method.

The markdown table itself is `metrics.columns.summary_markdown_table`.
"""

import numpy as np

from epsilon_tf.metrics.columns import SETTINGS, paper_columns


def summarize(results, ks):
    """Mean and sample std (ddof 1; 0 for one value) over seeds.

    Args:
        results: list of per-seed metric dicts (`zsl`, `gzsl` blocks).
        ks: the two K.

    Returns:
        `{setting: {metric: {"mean", "std", "values"}}}`, fractions.
    """
    summary = {}
    for setting in SETTINGS:
        block = {}
        for col in paper_columns(ks):
            values = [float(r[setting][col]) for r in results]
            block[col] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1
                else 0.0,
                "values": values,
            }
        summary[setting] = block
    return summary


def best_methods(table, ks):
    """`{setting: {metric: method}}`: the highest mean of each column
    (the first one listed on a tie)."""
    best = {}
    for setting in SETTINGS:
        best[setting] = {}
        for col in paper_columns(ks):
            means = [(row["summary"][setting][col]["mean"], -i, row["method"])
                     for i, row in enumerate(table)]
            best[setting][col] = max(means)[2]
    return best

