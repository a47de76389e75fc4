"""Runs the experiments, resumably, and writes results and figures."""

import json
import multiprocessing
import os
import time
from concurrent import futures

import keras
import numpy as np
import tensorflow as tf

from epsilon_tf.config import write_json
from epsilon_tf.data.pipeline import input_errors
from epsilon_tf.data.worlds.family import HELD_OUT
from epsilon_tf.experiments import figures, report, summary, workers
from epsilon_tf.experiments.plan import ABLATIONS, MAIN
from epsilon_tf.experiments.sweep import (
    SweepJobs,
    base_configs,
    experiment_source,
    run_budget,
    train_run,
)
from epsilon_tf.layers.grid import token_layout
from epsilon_tf.layers.grid_convolution import infer_grid
from epsilon_tf.metrics.columns import summary_markdown_table
from epsilon_tf.models import best_label_maps
from epsilon_tf.storage import atomic_write_text
from epsilon_tf.training.run import chance_level, fit_eszsl
from epsilon_tf.training.run_dir import RunDir

# `base_configs` and `experiment_source` are imported from here.
__all__ = ["Experiments", "base_configs", "experiment_source"]

RESULT = "result.json"


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _figure_grid(num_regions):
    """`((rows, cols), has_cls)`: the grid Figure 1 draws. N = 1 + s*s
    tokens (a CLS token, then the patches, `layers.grid.token_layout`)
    draw the s x s patches; any other N its `infer_grid` layout."""
    try:
        has_cls, side = token_layout(num_regions)
    except ValueError:
        has_cls = False
    if has_cls:
        return (side, side), True
    return infer_grid(num_regions), False


class Experiments:
    """The sweep of `python -m epsilon_tf.experiments` (see __main__).

    Args:
        options: dict from `experiments.cli.options()`.
        source: `DatasetSource`.
        log: callable for the progress lines.
    """

    def __init__(self, options, source, log=print):
        self.options = options
        self.source = source
        self.log = log
        self.out = options["output_dir"]
        self.ks = tuple(source.eval_ks)
        self.seeds = tuple(options["seeds"])
        self.jobs_plan = SweepJobs(options, source)
        self.base = self.jobs_plan.base
        self.runs, self.sweeps = self.jobs_plan.runs, self.jobs_plan.sweeps
        self.results = {}
        # LESA's and BiAM's kept results and learning rates, per seed.
        self.chosen, self.baseline_choice = {}, {}
        self.jobs, self.threads = workers.job_layout(options["jobs"])
        self.wall_seconds = 0.0
        self.summary = None

    def _dir(self, key, seed=None):
        return self.jobs_plan.run_dir(key, seed)

    def _line(self, index, total, what, result, seconds, skipped):
        k = self.ks[0]
        z, g = result["zsl"], result["gzsl"]
        status = "done earlier, skipped" if skipped else f"{seconds:.0f} s"
        self.log(
            f"[{index:>3}/{total}] {what}: ZSL mAP {100 * z['map']:.2f} "
            f"F1@{k} {100 * z[f'f1@{k}']:.2f} | GZSL mAP "
            f"{100 * g['map']:.2f} F1@{k} {100 * g[f'f1@{k}']:.2f} "
            f"[{status}]"
        )

    def train(self, run, seed):
        """Trains one run with one seed here; returns its result dict."""
        return train_run(self.jobs_plan.job(run.key, seed), self.source)

    def _result_path(self, key, seed=None):
        return os.path.join(self._dir(key, seed), RESULT)

    @staticmethod
    def _save(path, result):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, result)

    def _once(self, path, compute):
        """`compute()` unless `path` holds its result; (result, skipped)."""
        if os.path.exists(path):
            return _read(path), True
        result = compute()
        self._save(path, result)
        return result, False

    def run_all(self):
        """Trains every run and seed (skipping finished ones), fits ESZSL,
        scores chance, then writes the tables and figures."""
        # Each run traces its own functions; TF's retracing warning is noise.
        tf.get_logger().setLevel("ERROR")

        began = time.time()
        jobs = [(run, seed) for run in self.runs for seed in self.seeds]
        total = len(jobs) + 1 + len(self.seeds)
        found, todo = {}, []
        for run, seed in jobs:
            path = self._result_path(run.key, seed)
            if os.path.exists(path):
                found[run.key, seed] = _read(path)
            else:
                todo.append((run, seed))
        index = 0
        for run, seed in jobs:
            if (run.key, seed) in found:
                index += 1
                self._line(index, total, f"{run.title} (seed {seed})",
                           found[run.key, seed], 0, True)
        for run, seed, result in self._execute(todo):
            self._save(self._result_path(run.key, seed), result)
            found[run.key, seed] = result
            index += 1
            self._line(index, total, f"{run.title} (seed {seed})", result,
                       result["seconds"], False)
        for run, seed in jobs:
            self.results.setdefault(run.key, []).append(found[run.key, seed])
        self._choose_baseline_rates()

        def eszsl():
            start = time.time()
            result = fit_eszsl(
                self.source, self.base[2].validation_fraction
            )
            result["seconds"] = time.time() - start
            return result

        index += 1
        result, skipped = self._once(
            self._result_path("eszsl"), eszsl
        )
        self.results["eszsl"] = [result]
        self._line(index, total, "ESZSL (closed form, seed-free)", result,
                   result["seconds"], skipped)
        for seed in self.seeds:
            index += 1

            def chance(seed=seed):
                start = time.time()
                result = chance_level(self.source, seed=seed)
                result["seconds"] = time.time() - start
                return result

            result, skipped = self._once(
                self._result_path("chance", seed), chance
            )
            self.results.setdefault("chance", []).append(result)
            self._line(index, total, f"chance (seed {seed})", result,
                       result["seconds"], skipped)
        self.wall_seconds = time.time() - began
        return self.write_outputs()

    def _choose_baseline_rates(self):
        """For each seed, LESA's and BiAM's run at the shared or at their
        own learning rate, whichever scores higher on validation (the
        shared one on a tie); `self.chosen[key]` holds the kept results
        and `self.baseline_choice[method]` what was compared."""
        self.chosen, self.baseline_choice = {}, {}
        for key, alternatives in self.jobs_plan.alternatives.items():
            candidates = [self.jobs_plan.by_key[key]] + alternatives
            kept, record = [], []
            for i, seed in enumerate(self.seeds):
                scores = {
                    run.key: self.results[run.key][i]["training"][
                        "best_validation"]
                    for run in candidates
                }
                best = max(candidates, key=lambda r: scores[r.key])
                kept.append(self.results[best.key][i])
                record.append({
                    "seed": seed, "run": best.key,
                    "learning_rate": self._learning_rate(best),
                    "validation": {
                        f"{self._learning_rate(r):g}": scores[r.key]
                        for r in candidates
                    },
                })
            self.chosen[key] = kept
            self.baseline_choice[candidates[0].method] = record

    def _learning_rate(self, run):
        return dict(run.train).get(
            "learning_rate", self.base[2].learning_rate)

    def _kept_key(self, key, seed):
        """The run directory key behind `key`'s kept result for `seed`."""
        method = self.jobs_plan.by_key[key].method
        for entry in self.baseline_choice.get(method, ()):
            if entry["seed"] == seed:
                return entry["run"]
        return key

    def _execute(self, todo):
        """Trains `todo` [(run, seed)], here or in `--jobs` worker
        processes; yields `(run, seed, result)` as each one finishes."""
        jobs, threads = min(self.jobs, len(todo)), self.threads
        if todo:
            self.log(
                f"{len(todo)} runs to train, "
                + ("one at a time" if jobs <= 1 else
                   f"{jobs} at a time ({threads} thread"
                   f"{'s' if threads > 1 else ''} each)")
            )
        if jobs <= 1:
            for run, seed in todo:
                yield run, seed, self.train(run, seed)
            return
        pool = futures.ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=workers.init, initargs=(self.options, threads),
        )
        pending = {pool.submit(workers.train, run.key, seed): (run, seed)
                   for run, seed in todo}
        try:
            for future in futures.as_completed(pending):
                run, seed = pending[future]
                yield run, seed, future.result()
        except BaseException:
            # An error or Ctrl-C: stop the other runs now (their
            # checkpoints are whole; the next invocation resumes them).
            # (Taken before `shutdown`, which may drop its process table.)
            processes = list((getattr(pool, "_processes", None) or {})
                             .values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            raise
        pool.shutdown()

    # ---------------------------------------------------------- outputs
    def _row(self, key, method, note=None):
        results = self.chosen.get(key, self.results[key])
        row = {"key": key, "method": method, "n": len(results),
               "summary": report.summarize(results, self.ks)}
        if note:
            row["note"] = note
        return row

    def _sweep_summary(self, name, label):
        points, summaries, validation = [], {}, {}
        for value, run in self.sweeps[name]:
            points.append(value)
            results = self.results[run.key]
            summaries[value] = report.summarize(results, self.ks)
            validation[value] = float(np.mean(
                [r["training"]["best_validation"] for r in results]
            ))
        chosen = max(points, key=lambda v: (validation[v], -points.index(v)))
        return {
            "label": label,
            "values": points,
            "chosen": chosen,
            "validation_select_metric": self.base[2].select_metric,
            "validation": validation,
            "runs": {v: run.key for v, run in self.sweeps[name]},
            "points": summaries,
        }

    def _figure1(self, path):
        n = self.options["figure_images"]
        space = self.source.label_space
        with input_errors():
            batch = next(iter(
                self.source.split("test").dataset().batch(n).take(1)
            ))
        features = batch["features"].numpy()
        ids = [v.decode("utf-8", "replace")
               for v in batch["image_id"].numpy()]
        seed = self.seeds[0]
        grid, has_cls = _figure_grid(features.shape[1])
        panels, record = [], {}
        for run in MAIN:
            model = keras.saving.load_model(
                RunDir(self._dir(self._kept_key(run.key, seed), seed)
                       ).keras_model
            )
            scores, maps = best_label_maps(model, features, space)
            top = np.argsort(-scores, axis=1, kind="stable")[:, :3]
            names = [[space.names[j] + ("*" if space.unseen_mask[j] else "")
                      for j in row] for row in top]
            cls_weight = None
            if maps is not None and maps.shape[1] == grid[0] * grid[1] + 1:
                # A CLS token then the patches: the patches are drawn.
                cls_weight = [float(m[0]) for m in maps]
                maps = maps[:, 1:]
            panels.append((run.method, maps, names))
            record[run.method] = {
                "top_labels": names,
                "map_argmax": None if maps is None
                else [int(np.argmax(m)) for m in maps],
            }
            if has_cls:
                record[run.method]["cls_weight"] = cls_weight
        size = figures.draw_figure1(path, ids, panels, grid)
        return {
            "path": os.path.basename(path), "size": list(size),
            "images": ids, "grid": list(grid), "cls_token": has_cls,
            "columns": [p[0] for p in panels], "seed": seed,
            "models": record,
        }

    def write_outputs(self):
        start = time.time()
        main = [self._row(r.key, r.method) for r in MAIN]
        main.append(self._row("eszsl", "ESZSL", note="closed form, one fit"))
        main.append(self._row("chance", "chance (random scores)"))
        ablations = [self._row("epsilon", "Epsilon (full)")] + [
            self._row(r.key, r.method) for r in ABLATIONS
        ]
        best = report.best_methods(main, self.ks)
        best_ablation = report.best_methods(ablations, self.ks)
        sweeps = {
            "prompts": self._sweep_summary(
                "prompts", "number of group prompts G"
            ),
            "regularizer": self._sweep_summary(
                "regularizer", "prompt-diversity weight lambda"
            ),
        }
        fig1 = self._figure1(os.path.join(self.out, "figure1.png"))
        fig3_path = os.path.join(self.out, "figure3.png")
        fig3_size = figures.draw_figure3(fig3_path, sweeps, self.ks[0])
        figures.write_png_summaries(
            os.path.join(self.out, "tensorboard"),
            {"figure1": os.path.join(self.out, "figure1.png"),
             "figure3": fig3_path},
        )
        timings = self._timings()
        timings["tables_and_figures"] = round(time.time() - start, 1)
        # Wall clock of this invocation (runs finished earlier skipped).
        timings["wall_this_invocation"] = round(
            self.wall_seconds + time.time() - start, 1)
        payload = {
            "protocol": self.options["variant"],
            "dataset": self.options["data"].dataset,
            "held_out": self.options["data"].dataset in HELD_OUT,
            "ks": list(self.ks),
            "seeds": list(self.seeds),
            "n_images": self.results["chance"][0]["n_images"],
            "n_labels": self.results["chance"][0]["n_labels"],
            "budget": self._budget(),
            "branches": self._branches(),
            "quick": self.options["quick"],
            "std": "sample standard deviation over seeds (ddof 1)",
            "methods": main,
            "baseline_learning_rates": self.baseline_choice,
            "best": best,
            "ablations": ablations,
            "best_ablation": best_ablation,
            "figure1": fig1,
            "figure3": dict(
                path="figure3.png", size=list(fig3_size),
                f1_k=self.ks[0], sweeps=sweeps,
            ),
            "timings_seconds": timings,
            "parallel": {"jobs": self.jobs,
                         "threads_per_job": self.threads},
        }
        write_json(os.path.join(self.out, "results.json"), payload)
        atomic_write_text(os.path.join(self.out, "results.md"),
                          self._markdown(payload))
        self.summary = summary.write_summary(self.out, payload)
        return payload

    def _budget(self):
        """The shared training settings, and each trained run's budget
        (`sweep.run_budget`, as its `result.json` recorded it; runs from
        before that record are recomputed from their job)."""
        train = self.base[2]
        per_method, budgets = {}, []
        for run in self.runs:
            for seed, result in zip(self.seeds, self.results[run.key],
                                    strict=True):
                budget = result.get("budget") or run_budget(
                    self.jobs_plan.job(run.key, seed).train_config,
                    self.source)
                budgets.append(budget)
                per_method.setdefault(run.method, budget)
        shared = run_budget(train, self.source)
        return {
            **shared,
            "same_for_every_method": all(b == shared for b in budgets),
            "per_method": per_method,
            "learning_rate": train.learning_rate,
            "select_metric": train.select_metric,
        }

    def _branches(self):
        """How the branch ablations treat GFP's linear path."""
        linear = getattr(self.base[0], "gfp_linear", "none")
        if linear == "none":
            return ("GPA only and GFP only are Epsilon with one branch "
                    "removed (--branches); there is no GFP linear path "
                    "(gfp_linear=none).")
        return ("GPA only and GFP only are Epsilon with one branch removed "
                f"(--branches). GFP's linear path (gfp_linear={linear}) "
                "lives inside the GFP layer: GFP only keeps it, GPA only "
                "drops it with GFP.")

    def _timings(self):
        groups = {"main": [r.key for r in
                           MAIN + self.jobs_plan.alternative_runs],
                  "ablations": [r.key for r in ABLATIONS]}
        groups["figure3_sweeps"] = sorted(
            {run.key for points in self.sweeps.values()
             for _, run in points} - set(groups["main"])
            - set(groups["ablations"])
        )
        timings = {
            name: round(sum(r["seconds"] for key in keys
                            for r in self.results[key]), 1)
            for name, keys in groups.items()
        }
        for key in ("eszsl", "chance"):
            timings[key] = round(
                sum(r["seconds"] for r in self.results[key]), 1
            )
        return timings

    @staticmethod
    def _baseline_rate_lines(p):
        """The learning rate each baseline kept per seed, and why."""
        choice = p["baseline_learning_rates"]
        if not choice:
            return []
        metric = p["budget"]["select_metric"].replace("f1", "F1")
        lines = []
        for method, record in choice.items():
            rates = " or ".join(record[0]["validation"])
            kept = ", ".join(
                f"seed {e['seed']}: {e['learning_rate']:g} ("
                + " vs ".join(f"{100 * v:.2f}"
                              for v in e["validation"].values()) + ")"
                for e in record)
            lines.append(
                f"- {method}: learning rate {rates}, chosen per seed on "
                f"validation seen-label {metric}: {kept}."
            )
        return lines + [""]

    def _markdown(self, p):
        ks = self.ks
        budget = p["budget"]
        lines = [
            "# Experiments",
            "",
            f"Dataset `{p['dataset']}`, test split of {p['n_images']} "
            f"images, {p['n_labels']['zsl']} unseen / "
            f"{p['n_labels']['gzsl']} labels; protocol `{p['protocol']}`. "
            f"Every trained method: seeds {', '.join(map(str, p['seeds']))}"
            f", {summary.budget_text(budget)}, "
            f"learning rate {budget['learning_rate']:g}"
            + (" (LESA and BiAM: this or their own, chosen on validation, "
               "below the methods table)"
               if p["baseline_learning_rates"] else "")
            + ", best epoch by "
            f"validation seen-label {budget['select_metric']}. Values in "
            "%, mean ± sample std over seeds; **bold** = best mean of the "
            "column within the table and setting.",
            "",
            "## Methods",
            "",
            summary_markdown_table(p["methods"], ks, p["best"]),
            "",
            *self._baseline_rate_lines(p),
            "## Ablations of Epsilon",
            "",
            summary_markdown_table(p["ablations"], ks, p["best_ablation"]),
            "",
            "## Figure 1",
            "",
            "![Figure 1](figure1.png)",
            "",
            "Each panel: the region map behind the model's best label "
            "(Epsilon: the group assignment of the prompt scoring it "
            "highest; LESA: the attention scoring it highest; BiAM: that "
            "label's region scores), titled with the model's top 3 labels "
            "(* = unseen), over all labels (GZSL)."
            + (" The features hold a CLS token: the panels show the patch "
               "grid; a map's weight on the CLS token is `cls_weight` in "
               "results.json." if p["figure1"]["cls_token"] else ""),
            "",
            "## Figure 3",
            "",
            "![Figure 3](figure3.png)",
            "",
        ]
        for sweep in p["figure3"]["sweeps"].values():
            lines.append(
                f"- {sweep['label']}: chosen on validation (mean seen-label "
                f"{sweep['validation_select_metric']} over seeds): "
                f"{sweep['chosen']:g}; validation "
                + ", ".join(f"{v:g}: {100 * s:.2f}"
                            for v, s in sweep["validation"].items())
            )
        par = p["parallel"]
        lines += ["", "## Time (s)", "",
                  "Per part: the sum of its runs' wall times "
                  f"({par['jobs']} run(s) at a time, {par['threads_per_job']}"
                  " thread(s) each, so parts overlap); "
                  "`wall_this_invocation`: the whole command.", ""]
        lines += [f"- {k}: {v}" for k, v in p["timings_seconds"].items()]
        return "\n".join(lines) + "\n"
