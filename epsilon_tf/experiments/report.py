"""Tables of the experiments: mean ± std over seeds, best marked."""

import numpy as np

SETTINGS = ("zsl", "gzsl")


def columns(ks):
    """Metric keys in the papers' order: P, R, F1 at each K, then mAP."""
    return [f"{m}@{k}" for k in ks for m in ("p", "r", "f1")] + ["map"]


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
        for col in columns(ks):
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
        for col in columns(ks):
            means = [(row["summary"][setting][col]["mean"], -i, row["method"])
                     for i, row in enumerate(table)]
            best[setting][col] = max(means)[2]
    return best


def _cell(entry, bold):
    text = f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f}"
    return f"**{text}**" if bold else text


def markdown_table(table, ks, best):
    """A Markdown table: a row per method and setting, best in bold."""
    cols = columns(ks)
    head = ["method", "setting"] + [
        "mAP" if c == "map" else c.replace("p@", "P@").replace(
            "r@", "R@").replace("f1@", "F1@") for c in cols
    ]
    lines = ["| " + " | ".join(head) + " |",
             "|" + " --- |" * len(head)]
    for setting in SETTINGS:
        for row in table:
            cells = [
                _cell(row["summary"][setting][c],
                      best[setting][c] == row["method"])
                for c in cols
            ]
            name = row["method"] + (
                f" ({row['note']})" if row.get("note") else ""
            )
            lines.append(
                f"| {name} | {setting.upper()} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)
