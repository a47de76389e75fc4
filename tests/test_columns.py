"""`metrics.columns`: the metric column names and every results table,
character for character (the tables `train.py`, `eval.py`, TensorBoard
and the experiments printed before they were built in one module)."""

from epsilon_tf.metrics.columns import (
    heading,
    markdown_table,
    metric_columns,
    paper_columns,
    plain_table,
    result_ks,
    settings_table,
    summary_markdown_table,
)

RESULT = {
    "zsl": {"map": 0.5, "p@3": 0.25, "r@3": 0.125, "f1@3": 0.1,
            "p@5": 0.2, "r@5": 0.3333, "f1@5": 0.24},
    "gzsl": {"map": 0.0625, "p@3": 1.0, "r@3": 0.0, "f1@3": 0.015,
             "p@5": 0.5, "r@5": 0.75, "f1@5": 0.6},
    "n_labels": {"zsl": 8, "gzsl": 38},
    "n_images": 120,
}


def test_column_names_and_orders():
    assert metric_columns((3, 5)) == [
        "map", "p@3", "r@3", "f1@3", "p@5", "r@5", "f1@5"]
    assert paper_columns((10,)) == ["p@10", "r@10", "f1@10", "map"]
    assert [heading(c) for c in metric_columns((3,))] == [
        "mAP", "P@3", "R@3", "F1@3"]
    assert result_ks({"map": 0, "f1@10": 0, "p@3": 0, "n_labels": 1}) == [
        3, 10]


def test_plain_table():
    assert plain_table([("Epsilon", RESULT), ("chance", RESULT)],
                       (3, 5)) == "\n".join([
        "model      setting      map     p@3     r@3    f1@3     p@5     r@5"
        "    f1@5",
        "-" * 75,
        "Epsilon    ZSL        50.00   25.00   12.50   10.00   20.00   33.33"
        "   24.00",
        "Epsilon    GZSL        6.25  100.00    0.00    1.50   50.00   75.00"
        "   60.00",
        "chance     ZSL        50.00   25.00   12.50   10.00   20.00   33.33"
        "   24.00",
        "chance     GZSL        6.25  100.00    0.00    1.50   50.00   75.00"
        "   60.00",
    ])


def test_markdown_table_with_caption_and_a_missing_block():
    assert markdown_table([("Epsilon", RESULT)], (3,), "Caption line") == (
        "Caption line\n\n"
        "| model | setting | mAP | P@3 | R@3 | F1@3 |\n"
        "|---|---|---:|---:|---:|---:|\n"
        "| Epsilon | ZSL | 50.00 | 25.00 | 12.50 | 10.00 |\n"
        "| Epsilon | GZSL | 6.25 | 100.00 | 0.00 | 1.50 |"
    )
    assert markdown_table([("LESA", {"zsl": RESULT["zsl"]})], (3,)) == (
        "| model | setting | mAP | P@3 | R@3 | F1@3 |\n"
        "|---|---|---:|---:|---:|---:|\n"
        "| LESA | ZSL | 50.00 | 25.00 | 12.50 | 10.00 |"
    )


def test_settings_table_lists_the_settings_present():
    result = dict(RESULT, all=RESULT["gzsl"],
                  n_labels=dict(RESULT["n_labels"], all=38))
    assert settings_table(result, (3,)) == [
        "setting  labels     map     p@3     r@3    f1@3",
        "-----------------------------------------------",
        "ZSL           8   50.00   25.00   12.50   10.00",
        "GZSL         38    6.25  100.00    0.00    1.50",
        "ALL          38    6.25  100.00    0.00    1.50",
    ]


def test_summary_markdown_table_bolds_the_best():
    def summary(zsl_map, zsl_std):
        out = {}
        for setting in ("zsl", "gzsl"):
            out[setting] = {
                c: {"mean": RESULT[setting][c], "std": 0.0}
                for c in paper_columns((3,))
            }
        out["zsl"]["map"] = {"mean": zsl_map, "std": zsl_std}
        return out

    table = [
        {"method": "Epsilon", "summary": summary(0.6, 0.1414)},
        {"method": "ESZSL", "summary": summary(0.5, 0.0),
         "note": "closed form"},
    ]
    best = {s: {c: "Epsilon" for c in paper_columns((3,))}
            for s in ("zsl", "gzsl")}
    best["gzsl"]["p@3"] = "ESZSL"
    assert summary_markdown_table(table, (3,), best) == "\n".join([
        "| method | setting | P@3 | R@3 | F1@3 | mAP |",
        "| --- | --- | --- | --- | --- | --- |",
        "| Epsilon | ZSL | **25.00 ± 0.00** | **12.50 ± 0.00** | "
        "**10.00 ± 0.00** | **60.00 ± 14.14** |",
        "| ESZSL (closed form) | ZSL | 25.00 ± 0.00 | 12.50 ± 0.00 | "
        "10.00 ± 0.00 | 50.00 ± 0.00 |",
        "| Epsilon | GZSL | 100.00 ± 0.00 | **0.00 ± 0.00** | "
        "**1.50 ± 0.00** | **6.25 ± 0.00** |",
        "| ESZSL (closed form) | GZSL | **100.00 ± 0.00** | 0.00 ± 0.00 | "
        "1.50 ± 0.00 | 6.25 ± 0.00 |",
    ])
    # One seed (or one closed-form fit): the value alone, no "± 0.00".
    one = summary(0.6, 0.0)
    for setting in one.values():
        for entry in setting.values():
            entry["values"] = [entry["mean"]]
    lines = summary_markdown_table([{"method": "Epsilon", "summary": one}],
                                   (3,), best).splitlines()
    assert lines[2] == ("| Epsilon | ZSL | **25.00** | **12.50** | "
                        "**10.00** | **60.00** |")
