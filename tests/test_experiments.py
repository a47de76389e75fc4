"""`python -m epsilon_tf.experiments --quick`: it runs, resumes, and its
tables, JSON and figures hold what they claim (recomputed here from the
per-run result files and the saved models)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny

pytest.importorskip("matplotlib")

KS = (3, 5)
COLUMNS = [f"{m}@{k}" for k in KS for m in ("p", "r", "f1")] + ["map"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiments")
    data = tiny.write_native(root / "data")
    out = root / "out"
    command = [
        tiny.PYTHON, "-m", "epsilon_tf.experiments", "--quick",
        "--dataset=synthetic", "--data_format=native", f"--data_dir={data}",
        f"--output_dir={out}", "--figure_images=3",
    ]
    code, log = tiny.run(command, root / "first.log", timeout=900)
    assert code == 0, log[-4000:]
    return {"out": out, "log": log, "command": command, "root": root,
            "data": data}


def _per_seed(out, key):
    files = sorted((out / "runs" / key).glob("seed*/result.json"))
    if not files:
        files = [out / "runs" / key / "result.json"]
    return [json.loads(f.read_text()) for f in files]


def _kept(out, key):
    """A baseline's results as the tables must keep them: per seed, its run
    at the shared or at its own learning rate (runs/<key>_lr0.001),
    whichever has the higher best validation figure, the shared on a tie;
    any other run's results as they are."""
    shared = _per_seed(out, key)
    own_dir = out / "runs" / f"{key}_lr0.001"
    if not own_dir.exists():
        return shared
    own = _per_seed(out, f"{key}_lr0.001")
    return [o if o["training"]["best_validation"]
            > s["training"]["best_validation"] else s
            for s, o in zip(shared, own, strict=True)]


def _mean_std(values):
    values = np.asarray(values, float)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return values.mean(), std


def test_progress_lines_and_files(quick):
    out = quick["out"]
    lines = re.findall(r"^\[\s*(\d+)/(\d+)\] (.+?): ZSL mAP", quick["log"],
                       re.M)
    total = int(lines[0][1])
    # 8 trained configurations (LESA and BiAM at two learning rates
    # each: 10) x 3 seeds + ESZSL + 3 chance.
    assert total == 10 * 3 + 1 + 3
    assert [int(i) for i, _, _ in lines] == list(range(1, total + 1))
    for name in ("results.md", "results.json", "figure1.png",
                 "figure3.png", "summary.md", "summary.json"):
        assert (out / name).exists(), name
    # The summary is printed at the end too.
    assert "# Epsilon against its best peer" in quick["log"]


def test_summary_is_epsilon_over_the_best_peer_of_each_column(quick):
    out = quick["out"]
    payload = json.loads((out / "results.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["dataset"], summary["held_out"]) == ("synthetic", False)
    keys = {"Epsilon": "epsilon", "ESZSL": "eszsl", "LESA": "lesa",
            "BiAM": "biam", "GPA only": "epsilon_gpa",
            "GFP only": "epsilon_gfp"}
    assert summary["peers"] == list(keys)[1:]
    for setting in ("zsl", "gzsl"):
        for col in ("f1@3", "f1@5", "map"):
            means = {m: np.mean([r[setting][col]
                                 for r in _kept(out, key)])
                     for m, key in keys.items()}
            best = max(list(keys)[1:], key=lambda m: means[m])
            entry = summary["columns"][setting][col]
            assert entry["epsilon"] == pytest.approx(means["Epsilon"])
            assert entry["best_other_method"] == best
            assert entry["best_other"] == pytest.approx(means[best])
            if means[best] > 0:
                assert entry["ratio"] == pytest.approx(
                    means["Epsilon"] / means[best])
    # One budget: 1 epoch of 3 steps (--quick), recorded by every run.
    budget = {"epochs": 1, "batch_size": 64, "steps_per_epoch": 3,
              "optimizer_steps": 3}
    assert {k: payload["budget"][k] for k in budget} == budget
    assert payload["budget"]["same_for_every_method"] is True
    for run_dir in (out / "runs").iterdir():
        if run_dir.name in ("eszsl", "chance"):
            continue
        for result in _per_seed(out, run_dir.name):
            assert result["budget"] == budget, run_dir.name
    assert set(payload["budget"]["per_method"]) >= {
        "Epsilon", "LESA", "BiAM", "GPA only", "GFP only"}
    assert summary["budget"] == payload["budget"]
    text = (out / "summary.md").read_text()
    assert "1 epoch x 3 steps = 3 optimizer steps" in text
    assert "gfp_linear=" in text


def test_tables_are_the_seed_statistics_with_the_best_marked(quick):
    out = quick["out"]
    payload = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    assert payload["seeds"] == [0, 1, 2]
    assert [r["method"] for r in payload["methods"]] == [
        "Epsilon", "LESA", "BiAM", "ESZSL", "chance (random scores)"]
    assert [r["method"] for r in payload["ablations"]] == [
        "Epsilon (full)", "GPA only", "GFP only", "fixed fusion (a = 0.5)",
        "no regularizer"]
    for table, best_key in (("methods", "best"),
                            ("ablations", "best_ablation")):
        rows = payload[table]
        for setting in ("zsl", "gzsl"):
            means = {}
            for row in rows:
                results = _kept(out, row["key"])
                assert row["n"] == len(results)
                assert len(results) == (1 if row["key"] == "eszsl" else 3)
                for col in COLUMNS:
                    mean, std = _mean_std(
                        [r[setting][col] for r in results])
                    entry = row["summary"][setting][col]
                    assert entry["mean"] == pytest.approx(mean, abs=1e-12)
                    assert entry["std"] == pytest.approx(std, abs=1e-12)
                    means[(row["method"], col)] = mean
                    cell = f"| {100 * mean:.2f}" + (
                        f" ± {100 * std:.2f}" if len(results) > 1 else " |")
                    assert cell in markdown.replace("**", "")
            for col in COLUMNS:
                top = max(means[(r["method"], col)] for r in rows)
                winner = payload[best_key][setting][col]
                assert means[(winner, col)] == top
    # Bold cells: exactly one per column, setting and table.
    bold = re.findall(r"\*\*(\d+\.\d\d(?: ± \d+\.\d\d)?)\*\*", markdown)
    assert len(bold) == 2 * 2 * len(COLUMNS)


def test_baselines_keep_the_learning_rate_validation_prefers(quick):
    out = quick["out"]
    payload = json.loads((out / "results.json").read_text())
    choice = payload["baseline_learning_rates"]
    assert set(choice) == {"LESA", "BiAM"}
    for method, key in (("LESA", "lesa"), ("BiAM", "biam")):
        shared = _per_seed(out, key)
        own = _per_seed(out, f"{key}_lr0.001")
        assert len(choice[method]) == len(shared) == len(own) == 3
        for entry, s, o in zip(choice[method], shared, own, strict=True):
            vs, vo = (r["training"]["best_validation"] for r in (s, o))
            assert entry["validation"] == {"0.003": vs, "0.001": vo}
            assert entry["learning_rate"] == (0.001 if vo > vs else 0.003)
            assert entry["run"] == (f"{key}_lr0.001" if vo > vs else key)
        # The two rates share the budget: the same epochs, batch, steps.
        assert shared[0]["budget"] == own[0]["budget"]
    assert payload["budget"]["same_for_every_method"]
    assert "- LESA: learning rate 0.003 or 0.001, chosen per seed" in (
        out / "results.md").read_text()
    for seed in (0, 1, 2):
        assert f"] LESA, learning rate 0.001 (seed {seed}): ZSL mAP" in (
            quick["log"])


def test_figure1_png_and_claims(quick):
    import keras
    from PIL import Image

    from epsilon_tf.data.readers.native_tfrecord import native_source
    from epsilon_tf.experiments.figures import figure1_size
    from epsilon_tf.labels import LabelSpace
    from epsilon_tf.models import with_labels

    out = quick["out"]
    fig = json.loads((out / "results.json").read_text())["figure1"]
    assert fig["columns"] == ["Epsilon", "LESA", "BiAM"]
    assert len(fig["images"]) == 3 and fig["grid"] == [4, 4]
    image = np.asarray(Image.open(out / fig["path"]).convert("RGB"))
    width, height = figure1_size(3, 3)
    assert image.shape == (height, width, 3) == (fig["size"][1],
                                                 fig["size"][0], 3)
    # Every panel holds a drawn map, not a blank square.
    for r in range(3):
        for c in range(3):
            cell = image[r * height // 3:(r + 1) * height // 3,
                         c * width // 3:(c + 1) * width // 3]
            assert cell.std() > 10
    # Epsilon's top labels and map: recomputed from its saved model.
    space = LabelSpace.load(quick["data"])
    source = native_source(str(quick["data"]), space, KS)
    batch = next(iter(source.split("test").dataset().batch(3)))
    ids = [v.decode() for v in batch["image_id"].numpy()]
    assert ids == fig["images"]
    model = keras.saving.load_model(
        out / "runs" / "epsilon" / "seed0" / "model.keras")
    outputs = with_labels(model, space)(batch["features"].numpy())
    scores = outputs["scores"].numpy()
    top = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    names = [[space.names[j] + ("*" if space.unseen_mask[j] else "")
              for j in row] for row in top]
    assert fig["models"]["Epsilon"]["top_labels"] == names
    unit = space.vectors / np.linalg.norm(space.vectors, axis=1,
                                          keepdims=True)
    prompts = outputs["local_prompts"].numpy()
    for i in range(3):
        p = np.argmax(prompts[i] @ unit[top[i, 0]])
        assignment = outputs["assignments"].numpy()[i, p]
        assert fig["models"]["Epsilon"]["map_argmax"][i] == int(
            np.argmax(assignment))


def test_figure3_png_and_claims(quick):
    from PIL import Image

    from epsilon_tf.experiments.figures import DPI, FIG3_SIZE

    out = quick["out"]
    payload = json.loads((out / "results.json").read_text())
    fig = payload["figure3"]
    image = Image.open(out / fig["path"])
    assert image.size == (round(FIG3_SIZE[0] * DPI),
                          round(FIG3_SIZE[1] * DPI)) == tuple(fig["size"])
    assert np.asarray(image.convert("L")).std() > 10
    sweeps = fig["sweeps"]
    assert sweeps["prompts"]["values"] == [1, 7]
    assert sweeps["regularizer"]["values"] == [0.0, 0.1]
    for sweep in sweeps.values():
        validation = {}
        for value in sweep["values"]:
            key = sweep["runs"][str(value)]
            results = _per_seed(out, key)
            assert len(results) == 3
            validation[value] = np.mean(
                [r["training"]["best_validation"] for r in results])
            assert sweep["validation"][str(value)] == pytest.approx(
                validation[value])
            for setting in ("zsl", "gzsl"):
                mean, std = _mean_std([r[setting]["map"] for r in results])
                point = sweep["points"][str(value)][setting]["map"]
                assert point["mean"] == pytest.approx(mean)
                assert point["std"] == pytest.approx(std)
        best = max(validation.values())
        assert validation[sweep["chosen"]] == best
    # G = 7 and lambda = 0.1 are the main Epsilon run, lambda = 0 the
    # no-regularizer ablation: reused, not retrained.
    assert sweeps["prompts"]["runs"]["7"] == "epsilon"
    assert sweeps["regularizer"]["runs"]["0.0"] == "epsilon_no_regularizer"


def test_tensorboard_holds_both_figures(quick):
    import tensorflow as tf

    tags = set()
    for path in (quick["out"] / "tensorboard").glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.add(value.tag)
    assert {"figure1", "figure3"} <= tags


def test_rerun_skips_finished_runs(quick):
    out = quick["out"]
    before = json.loads((out / "results.json").read_text())
    # One at a time in this process (--jobs=1): nothing left to train.
    code, log = tiny.run(quick["command"] + ["--jobs=1"],
                         quick["root"] / "again.log", timeout=600)
    assert code == 0, log[-3000:]
    lines = re.findall(r"^\[\s*\d+/\d+\] .+\[(.+)\]$", log, re.M)
    assert lines and all(s == "done earlier, skipped" for s in lines)
    after = json.loads((out / "results.json").read_text())
    for key in ("methods", "ablations", "best", "figure1"):
        assert after[key] == before[key]
    assert Path(out / "results.md").exists()


def test_base_settings_follow_the_dataset_preset():
    from types import SimpleNamespace

    from epsilon_tf.config import RELEASE_PRESET
    from epsilon_tf.experiments import MAIN, base_configs

    options = dict(quick=False, epochs=None, batch_size=None,
                   steps_per_epoch=None)
    split = SimpleNamespace(example_count=lambda: 8000)
    release = SimpleNamespace(name="nus_like", feature_shape=(196, 512),
                              split=lambda name: split)
    model, loss, train = base_configs(options, release)
    assert (model.token_norm, model.gfp_input, model.num_global) == (
        "standardize", "features", 1)
    assert loss.label_weight == RELEASE_PRESET["label_weight"] > 0
    assert train.learning_rate == RELEASE_PRESET["learning_rate"]
    # 4 epochs, or more where the preset asks for a minimum of steps:
    # 8000 * 0.9 // 64 = 112 steps per epoch.
    min_steps = RELEASE_PRESET.get("min_steps", 0)
    assert train.epochs == max(4, -(-min_steps // 112))
    # The built-in world too, since session 30: 6,000 images, 84 steps an
    # epoch, so 4 epochs (336 steps) already hold the 300 of min_steps.
    synthetic_split = SimpleNamespace(example_count=lambda: 6000)
    synthetic = SimpleNamespace(name="synthetic", feature_shape=(49, 64),
                                split=lambda name: synthetic_split)
    model, loss, train = base_configs(options, synthetic)
    assert (model.token_norm, loss.label_weight, train.epochs) == (
        "standardize", RELEASE_PRESET["label_weight"], 4)
    tiny_split = SimpleNamespace(example_count=lambda: 640)
    tiny = SimpleNamespace(name="synthetic", feature_shape=(49, 64),
                           split=lambda name: tiny_split)
    # 640 * 0.9 // 64 = 9 steps an epoch: ceil(300 / 9) = 34 epochs.
    assert base_configs(options, tiny)[2].epochs == -(-min_steps // 9)
    runs = {run.key: run for run in MAIN}
    base_model, base_loss, _ = base_configs(options, release)
    for key in ("lesa", "biam"):
        _, baseline_loss = runs[key].configs(base_model, base_loss)
        assert baseline_loss.label_weight == 0.0


def test_figure1_draws_the_patch_grid_of_cls_tokens():
    from epsilon_tf.experiments.runner import _figure_grid

    assert _figure_grid(197) == ((14, 14), True)
    assert _figure_grid(50) == ((7, 7), True)
    assert _figure_grid(196) == ((14, 14), False)
    assert _figure_grid(16) == ((4, 4), False)
    assert _figure_grid(12) == ((1, 12), False)


def test_job_layout_shares_the_cores():
    from epsilon_tf.experiments.workers import MAX_AUTO_JOBS, job_layout

    assert job_layout(0, cores=2) == (2, 1)
    assert job_layout(0, cores=1) == (1, 1)
    assert job_layout(0, cores=16) == (MAX_AUTO_JOBS, 16 // MAX_AUTO_JOBS)
    assert job_layout(1, cores=2) == (1, 2)
    assert job_layout(3, cores=2) == (3, 1)


def test_a_failed_worker_run_stops_the_others_and_reraises(monkeypatch):
    # ProcessPoolExecutor.shutdown() drops its process table; the runner
    # must terminate the workers it saw before, and re-raise the run's own
    # error (it used to raise AttributeError from the empty table).
    from concurrent import futures

    from epsilon_tf.experiments import runner
    from epsilon_tf.experiments.plan import Run

    terminated = []

    class Process:
        def __init__(self, name):
            self.name = name

        def terminate(self):
            terminated.append(self.name)

    class Pool:
        def __init__(self, **kwargs):
            self._processes = {1: Process("a"), 2: Process("b")}

        def submit(self, fn, key, seed):
            future = futures.Future()
            future.set_exception(ValueError(f"run {key} failed"))
            return future

        def shutdown(self, wait=True, cancel_futures=False):
            self._processes = None

    monkeypatch.setattr(runner.futures, "ProcessPoolExecutor", Pool)
    experiments = runner.Experiments.__new__(runner.Experiments)
    experiments.jobs, experiments.threads = 2, 1
    experiments.options, experiments.log = {}, lambda *a: None
    todo = [(Run("x", "X"), 0), (Run("y", "Y"), 0)]
    with pytest.raises(ValueError, match=r"run [xy] failed"):
        list(experiments._execute(todo))
    assert sorted(terminated) == ["a", "b"]


@pytest.mark.slow
def test_results_on_a_full_disk_then_rerun(quick, tmp_path):
    """Issue 24: the experiments' results on a full disk end in one line
    naming the file; once space is freed the same command (every run done
    earlier) writes the same tables."""
    from helpers import faults
    from helpers.fault_train import fill

    before = json.loads((quick["out"] / "results.json").read_text())
    with faults.small_tmpfs(tmp_path, "512M") as disk:
        out = disk / "out"
        shutil.copytree(quick["out"], out)
        for name in ("results.json", "results.md"):
            (out / name).unlink()
        command = [a if not a.startswith("--output_dir=")
                   else f"--output_dir={out}" for a in quick["command"]]
        fill(disk / "filler")
        code, log = tiny.run(command + ["--jobs=1"], tmp_path / "full.log",
                             timeout=600)
        line = faults.one_error_line(code, log)
        assert "No space left on device" in line, line
        assert str(out) in line, line
        (disk / "filler").unlink()
        code, log = tiny.run(command + ["--jobs=1"], tmp_path / "rerun.log",
                             timeout=600)
        assert code == 0, log[-3000:]
        after = json.loads((out / "results.json").read_text())
    for key in ("methods", "ablations", "best", "figure1"):
        assert after[key] == before[key]


@pytest.mark.slow
def test_quick_on_a_small_held_out_member_with_a_cls_token(tmp_path):
    """`--dataset=vit_tokens` (197 tokens: CLS + 14 x 14): the command
    runs, Figure 1 draws the patch grid, the summary marks it held out."""
    from epsilon_tf.data.worlds import family
    from tests.conftest import shared_data_dir

    shared = shared_data_dir()
    if shared is None or not (shared / "nus_wide").is_dir():
        pytest.skip("../shared/data/nus_wide is not present")
    family.member_source(str(tmp_path / "cache"), "vit_tokens",
                         str(shared / "nus_wide"), progress=False,
                         num_train=160, num_test=60)
    data = next(p for p in (tmp_path / "cache").iterdir()
                if p.name.startswith("vit_tokens-") and ".tmp" not in p.name)
    out = tmp_path / "out"
    code, log = tiny.run(
        [tiny.PYTHON, "-m", "epsilon_tf.experiments", "--quick",
         "--seeds=0", "--dataset=vit_tokens", "--data_format=native",
         f"--data_dir={data}", f"--output_dir={out}", "--figure_images=2"],
        tmp_path / "log", timeout=900)
    assert code == 0, log[-3000:]
    fig = json.loads((out / "results.json").read_text())["figure1"]
    assert (fig["grid"], fig["cls_token"]) == ([14, 14], True)
    assert len(fig["models"]["Epsilon"]["cls_weight"]) == 2
    assert fig["models"]["BiAM"]["cls_weight"] is None
    assert all(0 <= i < 196 for m in fig["models"].values()
               for i in m["map_argmax"])
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["dataset"], summary["held_out"]) == ("vit_tokens", True)
