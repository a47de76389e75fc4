"""The metric column names and every results table, in one place.

A result block (`zsl`, `gzsl`, `all` of `evaluate_scores`) holds `map`
and `p@K`, `r@K`, `f1@K` for each K. The command lines print it as plain
text (`plain_table`, `settings_table`), TensorBoard shows it as markdown
(`markdown_table`) and the experiments as a markdown table of means and
standard deviations over seeds (`summary_markdown_table`), and Epsilon's
ratio to its best peer per column (`ratio_columns`, `ratio_detail_table`,
`ratio_markdown_table`). Values are fractions; every table shows them in
%, ratios as `1.05x`. The metric names themselves
(`metric_columns`) are the settings' (`config.data`), which check the
validation metric a run selects on against them.
"""

from epsilon_tf.config.data import AT_K_METRICS, metric_columns

__all__ = ["metric_columns", "paper_columns", "heading", "result_ks",
           "plain_table", "settings_table", "markdown_table",
           "summary_markdown_table", "ratio_columns", "ratio_detail_table",
           "ratio_markdown_table"]

SETTINGS = ("zsl", "gzsl")


def paper_columns(ks):
    """`p@K`, `r@K`, `f1@K` for each K, then `map` (the papers' order)."""
    return [f"{m}@{k}" for k in ks for m in AT_K_METRICS] + ["map"]


def heading(column):
    """A column's title in a markdown table: `mAP`, `P@3`, `F1@5`, ..."""
    return "mAP" if column == "map" else column.upper()


def result_ks(block):
    """The sorted K of a result block's `@K` columns."""
    return sorted({int(c.split("@")[1]) for c in block if "@" in c})


def plain_table(rows, ks):
    """A plain-text table: one row per (model, setting).

    Args:
        rows: list of (model name, result) with `zsl` and `gzsl` blocks.
        ks: the K of P/R/F1@K.
    """
    cols = metric_columns(ks)
    head = f"{'model':<10} {'setting':<8} " + " ".join(
        f"{c:>7}" for c in cols
    )
    lines = [head, "-" * len(head)]
    for name, result in rows:
        for setting in SETTINGS:
            block = result[setting]
            lines.append(
                f"{name:<10} {setting.upper():<8} "
                + " ".join(f"{100 * block[c]:7.2f}" for c in cols)
            )
    return "\n".join(lines)


def settings_table(result, ks):
    """The lines of one result's table: a row per setting present
    (`zsl`, `gzsl`, `all`) with its number of labels (`eval.py`)."""
    cols = metric_columns(ks)
    head = f"{'setting':<8} {'labels':>6} " + " ".join(f"{c:>7}" for c in cols)
    lines = [head, "-" * len(head)]
    for setting in (*SETTINGS, "all"):
        if setting not in result:
            continue
        lines.append(
            f"{setting.upper():<8} {result['n_labels'][setting]:>6} "
            + " ".join(f"{100 * result[setting][c]:7.2f}" for c in cols)
        )
    return lines


def markdown_table(rows, ks, caption=""):
    """The ZSL/GZSL table of one run as markdown (values in %).

    Args:
        rows: list of (model name, result) with `zsl` / `gzsl` blocks
            (a missing block is left out).
        ks: the K of P/R/F1@K.
        caption: str. A line above the table.
    """
    cols = metric_columns(ks)
    lines = [caption, ""] if caption else []
    heads = [heading(c) for c in cols]
    lines.append("| model | setting | " + " | ".join(heads) + " |")
    lines.append("|---|---|" + "---:|" * len(cols))
    for name, result in rows:
        for setting in SETTINGS:
            block = result.get(setting)
            if not block:
                continue
            cells = " | ".join(f"{100 * block[c]:.2f}" for c in cols)
            lines.append(f"| {name} | {setting.upper()} | {cells} |")
    return "\n".join(lines)


def _summary_cell(entry, bold):
    text = f"{100 * entry['mean']:.2f}"
    if len(entry.get("values", (0, 0))) > 1:
        # One value (one seed, or the closed form's one fit) has no spread
        # to show: a "± 0.00" would claim one.
        text += f" ± {100 * entry['std']:.2f}"
    return f"**{text}**" if bold else text


def summary_markdown_table(table, ks, best):
    """Means ± std over seeds as markdown: a row per method and setting,
    columns in the papers' order, the best of each column in bold; an
    entry whose `values` hold one value shows it alone.

    Args:
        table: list of rows `{"method", "summary", "note" (optional)}`,
            `summary[setting][column]` a dict with `mean` and `std`.
        ks: the K of P/R/F1@K.
        best: `{setting: {column: method}}`.
    """
    cols = paper_columns(ks)
    head = ["method", "setting"] + [heading(c) for c in cols]
    lines = ["| " + " | ".join(head) + " |",
             "|" + " --- |" * len(head)]
    for setting in SETTINGS:
        for row in table:
            cells = [
                _summary_cell(row["summary"][setting][c],
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


def ratio_columns(ks):
    """The columns of the ratio summary: `f1@K` for each K, then `map`."""
    return [f"f1@{k}" for k in ks] + ["map"]


def _ratio_text(ratio):
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def ratio_detail_table(columns, ks):
    """One dataset's ratios as markdown: a row per (setting, column) with
    Epsilon's value, the best peer's value and name, and their ratio.

    Args:
        columns: `{setting: {column: {"epsilon", "best_other",
            "best_other_method", "ratio"}}}`, values fractions (a peer
            value or ratio may be None: no peer, or a peer at 0).
        ks: the K of F1@K.
    """
    lines = ["| column | Epsilon | best other | method | Epsilon / best |",
             "|---|---:|---:|---|---:|"]
    for setting in SETTINGS:
        for col in ratio_columns(ks):
            entry = columns[setting][col]
            other = entry["best_other"]
            lines.append(
                f"| {setting.upper()} {heading(col)} "
                f"| {100 * entry['epsilon']:.2f} "
                f"| {'n/a' if other is None else f'{100 * other:.2f}'} "
                f"| {entry['best_other_method'] or 'n/a'} "
                f"| {_ratio_text(entry['ratio'])} |"
            )
    return "\n".join(lines)


def ratio_markdown_table(rows, ks, lead=("member",)):
    """Ratios of several datasets as markdown: a row per dataset, a column
    per (setting, column) holding `ratio (best peer)`, then the smallest.

    Args:
        rows: list of `(lead_cells, columns)`: the row's first cells (one
            per `lead` heading), and `columns` as `ratio_detail_table`'s.
        ks: the K of F1@K.
        lead: headings of the leading cells.
    """
    cols = [(s, c) for s in SETTINGS for c in ratio_columns(ks)]
    head = list(lead) + [f"{s.upper()} {heading(c)}" for s, c in cols]
    head.append("smallest")
    lines = ["| " + " | ".join(head) + " |",
             "|" + "---|" * len(lead) + "---:|" * (len(cols) + 1)]
    for cells, columns in rows:
        entries = [columns[s][c] for s, c in cols]
        ratios = [e["ratio"] for e in entries if e["ratio"] is not None]
        lines.append("| " + " | ".join(
            list(cells)
            + [f"{_ratio_text(e['ratio'])} ({e['best_other_method']})"
               if e["best_other_method"] else "n/a" for e in entries]
            + [_ratio_text(min(ratios) if ratios else None)]
        ) + " |")
    return "\n".join(lines)
