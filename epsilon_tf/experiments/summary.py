"""Epsilon against its best peer, per column: the experiments' summary.

After its runs, `python -m epsilon_tf.experiments` writes `summary.md` and
`summary.json` beside `results.md`: for the run's dataset and each column
(ZSL and GZSL F1@K for the dataset's two K, and mAP), Epsilon's mean over
seeds, the best other method's mean and name, and the ratio Epsilon /
best other. The other methods are `PEERS` (whichever of them the run
has): ESZSL (the closed form the experiments fit once, the same
`training.run.fit_eszsl` that `train.py` prints beside Epsilon), LESA,
BiAM and the two branch ablations.

Several output directories (one per dataset, e.g. one per member of the
family of worlds) combine into one table, a row per dataset, held-out
members last and marked:

    python -m epsilon_tf.experiments.summary DIR [DIR ...] [--json]

Everything here is computed from each directory's `results.json`, so it
also reads directories written before the summary existed. No
TensorFlow.
"""

import json
import os
import sys

from epsilon_tf.cli import common
from epsilon_tf.errors import CommandLineError
from epsilon_tf.metrics.columns import (
    SETTINGS,
    heading,
    ratio_columns,
    ratio_detail_table,
    ratio_markdown_table,
)
from epsilon_tf.storage import atomic_write_text

PROGRAM = "python -m epsilon_tf.experiments.summary"
EPSILON = "Epsilon"
# The methods Epsilon is compared with, in this order on a tie.
PEERS = ("ESZSL", "LESA", "BiAM", "GPA only", "GFP only")
RESULTS = "results.json"
SUMMARY_MD, SUMMARY_JSON = "summary.md", "summary.json"


def method_means(payload):
    """`{method: {setting: {column: mean}}}` of a `results.json` payload
    (its methods and ablations tables; "Epsilon (full)" is Epsilon)."""
    means = {}
    for row in payload.get("methods", []) + payload.get("ablations", []):
        means.setdefault(row["method"], {
            setting: {col: entry["mean"]
                      for col, entry in row["summary"][setting].items()}
            for setting in SETTINGS
        })
    return means


def epsilon_ratios(means, ks):
    """Epsilon's ratio to the best other method of each column.

    Args:
        means: `{method: {setting: {column: value}}}` (`method_means`);
            must hold "Epsilon". Methods not in `PEERS` are ignored.
        ks: the two K.

    Returns:
        `{setting: {column: {"epsilon", "best_other", "best_other_method",
        "ratio"}}}` for the `ratio_columns(ks)`: the highest peer value
        (the first of `PEERS` on a tie), and Epsilon / it (None with no
        peer or a peer at 0).
    """
    peers = [m for m in PEERS if m in means]
    columns = {}
    for setting in SETTINGS:
        columns[setting] = {}
        for col in ratio_columns(ks):
            mine = float(means[EPSILON][setting][col])
            best_value, best_method = None, None
            for method in peers:
                value = float(means[method][setting][col])
                if best_value is None or value > best_value:
                    best_value, best_method = value, method
            columns[setting][col] = {
                "epsilon": mine,
                "best_other": best_value,
                "best_other_method": best_method,
                "ratio": mine / best_value if best_value else None,
            }
    return columns


def _smallest(columns):
    """The smallest ratio (the first in table order on a tie), or None."""
    found = [(entry["ratio"], setting, col)
             for setting, block in columns.items()
             for col, entry in block.items() if entry["ratio"] is not None]
    if not found:
        return None
    ratio, setting, col = min(found, key=lambda item: item[0])
    return {"ratio": ratio, "setting": setting, "column": col}


def run_summary(payload, source=RESULTS):
    """The summary of one experiments run (`summary.json`'s content).

    Args:
        payload: dict, the run's `results.json`.
        source: str. Where the payload came from (for the errors).
    """
    means = method_means(payload)
    if EPSILON not in means:
        raise ValueError(
            f"{source}: expected a method named {EPSILON!r} in its tables, "
            f"found {sorted(means) or 'none'}"
        )
    ks = tuple(payload["ks"])
    columns = epsilon_ratios(means, ks)
    return {
        "dataset": payload["dataset"],
        "held_out": bool(payload.get("held_out", False)),
        "ks": list(ks),
        "seeds": payload.get("seeds"),
        "quick": payload.get("quick"),
        "protocol": payload.get("protocol"),
        "peers": [m for m in PEERS if m in means],
        "missing_peers": [m for m in PEERS if m not in means],
        "columns": columns,
        "smallest": _smallest(columns),
        "budget": payload.get("budget", {}),
        "branches": payload.get("branches"),
    }


def budget_text(budget):
    """The budget of every trained method in words."""
    if not budget:
        return "budget not recorded"
    steps = budget.get("steps_per_epoch")
    total = budget.get("optimizer_steps")
    epochs = budget["epochs"]
    text = f"{epochs} epoch{'' if epochs == 1 else 's'}"
    if steps:
        text += f" x {steps} steps = {total} optimizer steps"
    text += f", batch {budget['batch_size']}"
    same = budget.get("same_for_every_method")
    if same is not None:
        text += (", the same for every trained method" if same
                 else ", NOT the same for every trained method")
    return text


def summary_markdown(summary):
    """`summary.md`: one dataset's ratios, budget and branch ablations."""
    name = f"`{summary['dataset']}`" + (
        " (held out)" if summary["held_out"] else "")
    seeds = ", ".join(map(str, summary["seeds"] or []))
    lines = [
        "# Epsilon against its best peer",
        "",
        f"Dataset {name}, protocol `{summary['protocol']}`, mean over "
        f"seeds {seeds}{' (--quick)' if summary['quick'] else ''}. "
        "Per column: Epsilon, the best other method ("
        + (", ".join(summary["peers"]) or "none")
        + (f"; not run: {', '.join(summary['missing_peers'])}"
           if summary["missing_peers"] else "")
        + ") and Epsilon / best other. ESZSL is the closed form fitted "
        "once on the training split (what train.py prints beside "
        "Epsilon). Values in %.",
        "",
        ratio_detail_table(summary["columns"], summary["ks"]),
        "",
    ]
    smallest = summary["smallest"]
    if smallest:
        lines.append(
            f"Smallest ratio: {smallest['ratio']:.2f}x "
            f"({smallest['setting'].upper()} {heading(smallest['column'])})."
        )
    lines.append(f"Budget: {budget_text(summary['budget'])}.")
    per_method = summary["budget"].get("per_method") or {}
    if per_method:
        lines += ["", "| trained method | epochs | optimizer steps |",
                  "|---|---:|---:|"]
        lines += [f"| {m} | {b['epochs']} | {b['optimizer_steps']} |"
                  for m, b in per_method.items()]
    branches = summary.get("branches")
    if branches:
        lines += ["", f"Branch ablations: {branches}"]
    return "\n".join(lines) + "\n"


def write_summary(directory, payload):
    """Writes `summary.md` and `summary.json` of `payload` (the run's
    `results.json`) into `directory`; returns the summary."""
    summary = run_summary(payload)
    atomic_write_text(os.path.join(directory, SUMMARY_JSON),
                      json.dumps(summary, indent=2, sort_keys=True))
    atomic_write_text(os.path.join(directory, SUMMARY_MD),
                      summary_markdown(summary))
    return summary


def read_summary(directory):
    """The summary of the experiments output `directory` (its
    `results.json`)."""
    path = os.path.join(directory, RESULTS)
    if not os.path.isfile(path):
        raise CommandLineError(
            f"{directory}: expected an experiments output directory "
            f"holding {RESULTS}, found none"
        )
    with open(path, encoding="utf-8") as f:
        try:
            payload = json.load(f)
        except json.JSONDecodeError as e:
            raise CommandLineError(f"{path}: not JSON ({e})") from None
    try:
        return run_summary(payload, source=path)
    except KeyError as e:
        raise CommandLineError(
            f"{path}: expected an experiments results file, the key "
            f"{e.args[0]!r} is missing") from None


def combine(summaries):
    """One table of several runs' summaries: a row per dataset, the
    tuning (and other) datasets first, held-out members last.

    Args:
        summaries: list of `(label, summary)`; `label` names a row when
            two summaries share a dataset.

    Returns:
        `{"ks", "rows": [{"dataset", "held_out", "budget", "columns",
        "smallest", "source"}], "markdown"}`.
    """
    if not summaries:
        raise CommandLineError("expected at least one output directory")
    ks = summaries[0][1]["ks"]
    for label, summary in summaries:
        if summary["ks"] != ks:
            raise CommandLineError(
                f"{label}: expected the K {ks} of the first directory, "
                f"found {summary['ks']}")
    names = [s["dataset"] for _, s in summaries]
    ordered = sorted(summaries, key=lambda item: item[1]["held_out"])
    rows, table = [], []
    for label, summary in ordered:
        name = summary["dataset"]
        if names.count(name) > 1:
            name = f"{name} ({label})"
        rows.append({
            "dataset": summary["dataset"], "held_out": summary["held_out"],
            "budget": summary["budget"], "columns": summary["columns"],
            "smallest": summary["smallest"], "source": label,
        })
        budget = summary["budget"]
        table.append((
            (name, "yes" if summary["held_out"] else "",
             f"{budget.get('epochs', '?')} x "
             f"{budget.get('steps_per_epoch') or '?'}"),
            summary["columns"],
        ))
    markdown = ratio_markdown_table(
        table, ks, lead=("dataset", "held out", "epochs x steps"))
    return {"ks": ks, "rows": rows, "markdown": markdown}


def main(argv):
    """`python -m epsilon_tf.experiments.summary DIR [DIR ...] [--json]`:
    prints the combined table (markdown, or with `--json` the rows)."""
    as_json = False
    directories = []
    for arg in argv:
        if arg == "--json":
            as_json = True
        elif arg.startswith("-"):
            raise CommandLineError(
                f"expected output directories and --json, found {arg}")
        else:
            directories.append(arg)
    if not directories:
        raise CommandLineError(
            "expected one or more experiments output directories "
            f"(usage: {PROGRAM} DIR [DIR ...] [--json])")
    combined = combine([(d, read_summary(d)) for d in directories])
    if as_json:
        print(json.dumps({k: combined[k] for k in ("ks", "rows")},
                         indent=2, sort_keys=True))
    else:
        print(combined["markdown"])


if __name__ == "__main__":
    with common.clean_exit(PROGRAM):
        main(sys.argv[1:])
