"""The experiments' summary (Epsilon / best other method per column), its
combine command, and the one budget of every method (`budget_epochs`).

Fast: hand-written result tables and fake sources, no training."""

import json
from types import SimpleNamespace

import pytest
from helpers import tiny

from epsilon_tf.experiments import summary
from epsilon_tf.experiments.plan import budget_epochs

KS = (3, 5)
ORDER = [("zsl", "f1@3"), ("zsl", "f1@5"), ("zsl", "map"),
         ("gzsl", "f1@3"), ("gzsl", "f1@5"), ("gzsl", "map")]
# Per method, the six columns in ORDER (fractions). BiAM is not run.
MEANS = {
    "Epsilon": (0.30, 0.25, 0.40, 0.20, 0.18, 0.10),
    "ESZSL": (0.32, 0.20, 0.30, 0.25, 0.10, 0.05),
    "LESA": (0.10, 0.24, 0.50, 0.05, 0.20, 0.08),
    "GPA only": (0.31, 0.22, 0.35, 0.10, 0.15, 0.20),
    "GFP only": (0.05, 0.05, 0.05, 0.00, 0.00, 0.00),
    # Not peers: never the best other, however high.
    "chance (random scores)": (0.99,) * 6,
    "fixed fusion (a = 0.5)": (0.98,) * 6,
}
# Worked by hand from MEANS: (best other, its method, Epsilon / it).
EXPECTED = {
    ("zsl", "f1@3"): (0.32, "ESZSL", 0.30 / 0.32),
    ("zsl", "f1@5"): (0.24, "LESA", 0.25 / 0.24),
    ("zsl", "map"): (0.50, "LESA", 0.8),
    ("gzsl", "f1@3"): (0.25, "ESZSL", 0.8),
    ("gzsl", "f1@5"): (0.20, "LESA", 0.9),
    ("gzsl", "map"): (0.20, "GPA only", 0.5),
}
DETAIL = """\
| column | Epsilon | best other | method | Epsilon / best |
|---|---:|---:|---|---:|
| ZSL F1@3 | 30.00 | 32.00 | ESZSL | 0.94x |
| ZSL F1@5 | 25.00 | 24.00 | LESA | 1.04x |
| ZSL mAP | 40.00 | 50.00 | LESA | 0.80x |
| GZSL F1@3 | 20.00 | 25.00 | ESZSL | 0.80x |
| GZSL F1@5 | 18.00 | 20.00 | LESA | 0.90x |
| GZSL mAP | 10.00 | 20.00 | GPA only | 0.50x |"""
BUDGET = {"epochs": 18, "batch_size": 64, "steps_per_epoch": 112,
          "optimizer_steps": 2016, "same_for_every_method": True}


def _row(method, values):
    block = {"zsl": {}, "gzsl": {}}
    for (setting, col), value in zip(ORDER, values, strict=True):
        block[setting][col] = {"mean": value, "std": 0.0}
    # A column outside the summary's: ignored.
    block["zsl"]["p@3"] = {"mean": 0.97, "std": 0.0}
    return {"key": method.lower(), "method": method, "summary": block}


def _payload(dataset, means=MEANS, held_out=False):
    main = [_row(m, means[m]) for m in
            ("Epsilon", "LESA", "ESZSL", "chance (random scores)")
            if m in means]
    ablations = [_row("Epsilon (full)", means["Epsilon"])] + [
        _row(m, means[m]) for m in
        ("GPA only", "GFP only", "fixed fusion (a = 0.5)") if m in means]
    return {"dataset": dataset, "held_out": held_out, "ks": list(KS),
            "seeds": [0, 1, 2], "quick": False, "protocol": "lesa",
            "methods": main, "ablations": ablations, "budget": BUDGET}


def test_ratios_pick_the_best_other_per_column():
    columns = summary.epsilon_ratios(summary.method_means(_payload("x")),
                                     KS)
    for i, (setting, col) in enumerate(ORDER):
        best, method, ratio = EXPECTED[setting, col]
        entry = columns[setting][col]
        assert entry["epsilon"] == MEANS["Epsilon"][i]
        assert entry["best_other"] == best
        assert entry["best_other_method"] == method
        assert entry["ratio"] == pytest.approx(ratio, abs=1e-12)
    assert set(columns["zsl"]) == {"f1@3", "f1@5", "map"}


def test_summary_of_a_run_and_its_markdown():
    result = summary.run_summary(_payload("web_crowded"))
    assert result["peers"] == ["ESZSL", "LESA", "GPA only", "GFP only"]
    assert result["missing_peers"] == ["BiAM"]
    assert result["smallest"] == {"ratio": 0.5, "setting": "gzsl",
                                  "column": "map"}
    text = summary.summary_markdown(result)
    assert DETAIL in text
    assert "not run: BiAM" in text
    assert "Smallest ratio: 0.50x (GZSL mAP)." in text
    assert ("Budget: 18 epochs x 112 steps = 2016 optimizer steps, batch "
            "64, the same for every trained method.") in text


def test_ties_go_to_the_first_peer_and_a_zero_peer_has_no_ratio():
    means = {"Epsilon": {"zsl": {"f1@3": 0.2, "f1@5": 0.1, "map": 0.3},
                         "gzsl": {"f1@3": 0.2, "f1@5": 0.1, "map": 0.3}},
             "LESA": {"zsl": {"f1@3": 0.4, "f1@5": 0.0, "map": 0.3},
                      "gzsl": {"f1@3": 0.1, "f1@5": 0.0, "map": 0.1}},
             "ESZSL": {"zsl": {"f1@3": 0.4, "f1@5": 0.0, "map": 0.1},
                       "gzsl": {"f1@3": 0.1, "f1@5": 0.0, "map": 0.1}}}
    columns = summary.epsilon_ratios(means, KS)
    assert columns["zsl"]["f1@3"]["best_other_method"] == "ESZSL"
    assert columns["zsl"]["f1@3"]["ratio"] == pytest.approx(0.5)
    assert columns["zsl"]["map"]["best_other_method"] == "LESA"
    assert columns["zsl"]["map"]["ratio"] == pytest.approx(1.0)
    assert columns["zsl"]["f1@5"]["ratio"] is None
    only = summary.epsilon_ratios({"Epsilon": means["Epsilon"]}, KS)
    assert only["gzsl"]["map"] == {"epsilon": 0.3, "best_other": None,
                                   "best_other_method": None,
                                   "ratio": None}


def test_write_summary_files(tmp_path):
    written = summary.write_summary(tmp_path, _payload("nus_like"))
    assert json.loads((tmp_path / "summary.json").read_text()) == \
        json.loads(json.dumps(written))
    assert DETAIL in (tmp_path / "summary.md").read_text()


def _output_dir(root, name, payload):
    directory = root / name
    directory.mkdir()
    (directory / "results.json").write_text(json.dumps(payload))
    return directory


def test_combine_two_output_dirs(tmp_path, capsys):
    better = dict(MEANS)
    better["Epsilon"] = (0.30, 0.25, 0.60, 0.20, 0.18, 0.10)
    held = _output_dir(tmp_path, "held", _payload("vit_tokens",
                                                  held_out=True))
    tuning = _output_dir(tmp_path, "tuning", _payload("nus_like", better))
    # The held-out member is given first and listed last.
    summary.main([str(held), str(tuning)])
    assert capsys.readouterr().out.splitlines() == [
        "| dataset | held out | epochs x steps | ZSL F1@3 | ZSL F1@5 | "
        "ZSL mAP | GZSL F1@3 | GZSL F1@5 | GZSL mAP | smallest |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        "| nus_like |  | 18 x 112 | 0.94x (ESZSL) | 1.04x (LESA) | "
        "1.20x (LESA) | 0.80x (ESZSL) | 0.90x (LESA) | 0.50x (GPA only) "
        "| 0.50x |",
        "| vit_tokens | yes | 18 x 112 | 0.94x (ESZSL) | 1.04x (LESA) | "
        "0.80x (LESA) | 0.80x (ESZSL) | 0.90x (LESA) | 0.50x (GPA only) "
        "| 0.50x |",
    ]
    summary.main([str(tuning), str(held), "--json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["dataset"], r["held_out"]) for r in rows] == [
        ("nus_like", False), ("vit_tokens", True)]
    assert rows[0]["columns"]["zsl"]["map"]["ratio"] == pytest.approx(1.2)


def test_combine_mistakes_end_in_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, log = tiny.run(
        [tiny.PYTHON, "-m", "epsilon_tf.experiments.summary", str(empty)],
        tmp_path / "log")
    assert code == 1
    assert log.strip() == (
        "python -m epsilon_tf.experiments.summary: error: "
        f"{empty}: expected an experiments output directory holding "
        "results.json, found none")
    no_epsilon = _payload("nus_like")
    no_epsilon["methods"] = no_epsilon["methods"][1:]
    no_epsilon["ablations"] = no_epsilon["ablations"][1:]
    bad = _output_dir(tmp_path, "bad", no_epsilon)
    with pytest.raises(ValueError, match="expected a method named "
                       "'Epsilon'"):
        summary.read_summary(bad)


@pytest.mark.parametrize("args, expected", [
    # No minimum: the epochs as given.
    ((4, 0, 8000, 0.1, 64), 4),
    # 7200 // 64 = 112 steps per epoch; ceil(2000 / 112) = 18.
    ((4, 2000, 8000, 0.1, 64), 18),
    # resnet_scenes' 6,000: 5400 // 64 = 84; ceil(2000 / 84) = 24.
    ((4, 2000, 6000, 0.1, 64), 24),
    # ceil(300 / 112) = 3 < 4: the epochs stay.
    ((4, 300, 8000, 0.1, 64), 4),
    # Exactly 2 x 112.
    ((1, 224, 8000, 0.1, 64), 2),
    # A fixed 3 steps per epoch: ceil(10 / 3) = 4.
    ((1, 10, 8000, 0.1, 64, 3), 4),
    # Unknown size, or less than one batch: the epochs stay.
    ((4, 2000, None, 0.1, 64), 4),
    ((4, 2000, 60, 0.1, 64), 4),
])
def test_budget_epochs(args, expected):
    assert budget_epochs(*args) == expected


def test_one_budget_for_every_run_from_the_presets_min_steps(monkeypatch):
    """With a preset asking for 2,000 steps, every run (methods,
    ablations, sweeps) trains the same 18 epochs x 112 steps; `--epochs`
    and `--quick` are honoured as they are."""
    from epsilon_tf.experiments import sweep

    real = sweep.preset_configs

    def with_min_steps(*args):
        model, loss, train = real(*args)
        return model, loss, SimpleNamespace(
            batch_size=train.batch_size, learning_rate=train.learning_rate,
            min_steps=2000)

    monkeypatch.setattr(sweep, "preset_configs", with_min_steps)
    split = SimpleNamespace(example_count=lambda: 8000)
    source = SimpleNamespace(name="nus_like", feature_shape=(196, 512),
                             split=lambda name: split)
    options = dict(quick=False, epochs=None, batch_size=None,
                   steps_per_epoch=None, output_dir="out", seeds=(0, 1),
                   prompts=(1, 7), regularizer_weights=(0.0, 0.1),
                   variant="lesa")
    jobs = sweep.SweepJobs(options, source)
    assert jobs.base[2].batch_size == 64
    methods = set()
    for run in jobs.runs:
        for seed in (0, 1):
            job = jobs.job(run.key, seed)
            methods.add(job.method)
            assert getattr(job.train_config, "min_steps", 0) == 0
            assert sweep.run_budget(job.train_config, source) == {
                "epochs": 18, "batch_size": 64, "steps_per_epoch": 112,
                "optimizer_steps": 2016}
    assert {"Epsilon", "LESA", "BiAM", "GPA only", "GFP only",
            "Epsilon, G = 1"} <= methods
    explicit = sweep.base_configs(dict(options, epochs=5), source)[2]
    assert explicit.epochs == 5
    quick = sweep.base_configs(dict(options, quick=True), source)[2]
    assert (quick.epochs, quick.steps_per_epoch) == (1, 3)
