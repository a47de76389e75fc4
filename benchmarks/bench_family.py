"""Epsilon beside ESZSL (and its peers) on every member of the family.

For each member of `epsilon_tf.data.worlds.family` (the tuning members
first, then the held-out members in their own rows), ESZSL is fitted with
each of its recipes (`epsilon_tf.baselines.eszsl.POOLINGS`, γ and λ
chosen on the validation slice of the training split) and as `train.py`
prints it (the recipe chosen on that same slice, never on the test
split); then, unless `--eszsl_only`, each of `--models` is trained for
each of `--seeds` at the default budget (the release preset's epochs
raised to its step budget, `min_steps`; `--epochs` overrides), the same
epochs for every model. Printed at the end: per member, the mean over the
seeds of ZSL/GZSL mAP and F1@3 of every model, Epsilon's ratio to the
printed ESZSL and whether each target of issue 22 is met. Values are on
each member's test split (ZSL: the 81 unseen concepts; GZSL: all 1,006
labels), in %.

Models: `epsilon` (the release preset), `gpa` / `gfp` (the same model
with a branch removed), `lesa`, `biam` (their presets over the release
one), `unscaled` (the release preset with GFP's linear path started at
ESZSL's own scale, as before session 28), `hinge` (that preset with the
pairwise hinge loss it had before the listwise loss) and
`before` (the release preset as it stood
before issue 22: no linear path, the hinge, 4 epochs), for the
side-by-side time and accuracy.

    python -m benchmarks.bench_family --eszsl_only   # ESZSL recipes only
    python -m benchmarks.bench_family --seeds=0,1,2  # hours on two cores

Each run is a `train.py` run directory under `--work_dir`: a finished run
is read back, not trained again, so the command resumes. Needs
`../shared/data/nus_wide` (or `--label_dir`); every member is written
once to `--cache_dir` (2-3 GB each). `--num_train` and `--num_test` make
smaller worlds (smoke runs; not the figures).
"""

import argparse
import dataclasses
import json
import os
import sys
import time

from benchmarks.common import add_size_arguments, cpu_model, quiet_tensorflow

_COLUMNS = (("zsl", "map"), ("zsl", "f1@3"), ("gzsl", "map"),
            ("gzsl", "f1@3"))


def _cells(result):
    return " ".join(f"{100 * result[s][m]:7.2f}" for s, m in _COLUMNS)


MODELS = ("epsilon", "gpa", "gfp", "lesa", "biam", "hinge", "unscaled",
          "before")
# Each earlier preset is the one after it with its own change undone, so
# that it keeps its meaning when the release preset moves on.
# The release preset of session 27 (f6559bd): GFP's linear path started
# at ESZSL's own scale.
UNSCALED = {"gfp_linear_scale": 0.0}
# The release preset before the listwise loss (b459594): the hinge.
HINGE = {**UNSCALED, "form": "hinge"}
# The release preset before issue 22 (commit 8e94da7): no linear path, no
# step budget, 4 epochs, the hinge loss.
BEFORE = {**HINGE, "gfp_linear": "none", "min_steps": 0, "epochs": 4}
# The models that are the release preset with these settings replaced.
EARLIER_PRESETS = {"hinge": HINGE, "unscaled": UNSCALED, "before": BEFORE}


def _configs(model, shape):
    """(ModelConfig, LossConfig, TrainConfig) of `model` on `shape`."""
    from epsilon_tf.config import preset_configs, presets

    preset = dict(presets.RELEASE)
    overrides = {}
    if model in ("gpa", "gfp"):
        overrides["branches"] = model
    elif model in ("lesa", "biam"):
        preset.update(presets.MODEL_PRESETS[model])
        overrides["model"] = model
    elif model in EARLIER_PRESETS:
        preset.update(EARLIER_PRESETS[model])
    return preset_configs(preset, shape, overrides)


def _budget(source, args):
    """The epochs every model trains: `--epochs`, else Epsilon's default
    (its preset's epochs raised to the step budget)."""
    from epsilon_tf.config.train import budget_epochs
    from epsilon_tf.training.run import steps_per_epoch

    if args.epochs:
        return args.epochs
    train_cfg = _configs("epsilon", source.feature_shape)[2]
    return budget_epochs(train_cfg.epochs, train_cfg.min_steps,
                         steps_per_epoch(train_cfg, source))


def _train(name, source, model, seed, epochs, args):
    """One run (or its finished metrics.json), with its wall time."""
    from epsilon_tf.training.run import train_and_evaluate

    model_cfg, loss_cfg, train_cfg = _configs(model, source.feature_shape)
    train_cfg = dataclasses.replace(
        train_cfg, seed=seed, export=False, summary_images=0,
        pr_curve_labels=0, min_steps=0,
        epochs=BEFORE["epochs"] if model == "before" else epochs,
        model_dir=os.path.join(args.work_dir, name, f"{model}-s{seed}"),
    )
    start = time.time()
    result = train_and_evaluate(model_cfg, loss_cfg, train_cfg, source,
                                baseline=model == "epsilon"
                                or model in EARLIER_PRESETS)
    result.setdefault("seconds", round(time.time() - start, 1))
    return result


def _printed_eszsl(name, source, fraction, args):
    """`fit_eszsl` of the member, kept under `--work_dir` (it is
    deterministic: a rerun reads it back)."""
    from epsilon_tf import storage
    from epsilon_tf.training.run import fit_eszsl

    path = os.path.join(args.work_dir, name, "eszsl_printed.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    result = fit_eszsl(source, fraction)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    storage.atomic_write_text(path, json.dumps(result, default=float))
    return result


def _member_rows(name, source, args):
    """ESZSL (each recipe, and as printed) and every model's seeds."""
    from epsilon_tf.baselines.eszsl import POOLINGS
    from epsilon_tf.training.run import fit_eszsl

    fraction = _configs("epsilon", source.feature_shape)[2]\
        .validation_fraction
    rows = {}
    for pooling in () if args.skip_recipes else POOLINGS:
        rows[f"ESZSL {pooling}"] = [
            fit_eszsl(source, fraction, poolings=(pooling,))]
    rows["ESZSL printed"] = [_printed_eszsl(name, source, fraction, args)]
    if args.eszsl_only:
        return rows, None
    epochs = _budget(source, args)
    for model in args.models:
        rows[model] = [_train(name, source, model, seed, epochs, args)
                       for seed in args.seeds]
    return rows, epochs


def _mean(results, setting, metric):
    return sum(r[setting][metric] for r in results) / len(results)


def _means(results):
    return {c: _mean(results, *c) for c in _COLUMNS}


def _targets(rows):
    """Issue 22's targets on one member (means over the seeds)."""
    eszsl = _means(rows["ESZSL printed"])
    eps = _means(rows["epsilon"])
    out = {
        "ZSL mAP >= 1.25x ESZSL": eps[_COLUMNS[0]] >= 1.25 * eszsl[_COLUMNS[0]],
        "GZSL mAP >= 1.1x ESZSL": eps[_COLUMNS[2]] >= 1.1 * eszsl[_COLUMNS[2]],
        "ZSL F1@3 >= ESZSL": eps[_COLUMNS[1]] >= eszsl[_COLUMNS[1]],
        "GZSL F1@3 >= ESZSL": eps[_COLUMNS[3]] >= eszsl[_COLUMNS[3]],
    }
    for other in ("gpa", "gfp", "lesa", "biam"):
        if other in rows:
            o = _means(rows[other])
            out[f"mAPs >= {other}"] = (eps[_COLUMNS[0]] >= o[_COLUMNS[0]]
                                       and eps[_COLUMNS[2]] >= o[_COLUMNS[2]])
    return out


def _print_member(name, source, rows, epochs, seconds):
    from epsilon_tf.data.worlds import family

    held = " (held out)" if name in family.HELD_OUT else ""
    shape = "x".join(str(v) for v in source.feature_shape)
    budget = f", {epochs} epochs for every model" if epochs else ""
    print(f"\n{name}{held}: {shape}, "
          f"{source.split('train').num_examples} train / "
          f"{source.split('test').num_examples} test images{budget} "
          f"({seconds:.0f}s); values in %, mean of the seeds", flush=True)
    print(f"{'model':<16} {'ZSL mAP':>7} {'F1@3':>7} {'GZSL mAP':>7} "
          f"{'F1@3':>7} {'seeds':>5} {'time s':>7}  chosen")
    for row, results in rows.items():
        means = _means(results)
        cells = " ".join(f"{100 * means[c]:7.2f}" for c in _COLUMNS)
        sel = results[0].get("selected", {})
        chosen = sel.get("recipe", "") if row == "ESZSL printed" else ""
        secs = [r.get("timings_seconds", {}) for r in results]
        total = [sum(t.values()) for t in secs if t]
        t = f"{sum(total) / len(total):7.0f}" if total else " " * 7
        print(f"{row:<16} {cells} {len(results):5d} {t}  {chosen}",
              flush=True)
    if "epsilon" in rows:
        eszsl, eps = _means(rows["ESZSL printed"]), _means(rows["epsilon"])
        ratios = ", ".join(
            f"{s.upper()} {m} {eps[(s, m)] / max(eszsl[(s, m)], 1e-12):.2f}"
            for s, m in _COLUMNS)
        print(f"Epsilon / ESZSL printed: {ratios}")
        print("targets: " + ", ".join(
            f"{k}: {'met' if v else 'MISSED'}"
            for k, v in _targets(rows).items()), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", default=None,
                        help="Comma-separated members (default: all).")
    parser.add_argument("--eszsl_only", action="store_true",
                        help="Only the ESZSL recipes (no training).")
    parser.add_argument("--skip_recipes", action="store_true",
                        help="Only the printed ESZSL, not each recipe.")
    parser.add_argument("--models", default="epsilon",
                        help=f"Comma-separated, of {', '.join(MODELS)}.")
    parser.add_argument("--epochs", type=int, default=None,
                        help="Epochs of every model (default: Epsilon's "
                             "default budget).")
    parser.add_argument("--seeds", default="0",
                        help="Comma-separated seeds (means are printed).")
    parser.add_argument("--cache_dir", default="cache")
    parser.add_argument("--label_dir", default=None)
    parser.add_argument("--work_dir", default="runs/bench_family")
    parser.add_argument("--out", default=None, help="write the JSON here")
    add_size_arguments(parser)
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.seeds = [int(v) for v in args.seeds.split(",") if v]
    bad = [m for m in args.models if m not in MODELS]
    if bad or not args.seeds:
        print(f"bench_family: error: --models: unknown {bad}; expected "
              f"{', '.join(MODELS)} (and at least one --seeds)",
              file=sys.stderr)
        return 2
    quiet_tensorflow()

    from epsilon_tf.data.worlds import family, nus_like

    label_dir = args.label_dir or nus_like.default_label_dir()
    if label_dir is None:
        print("bench_family: error: --label_dir is needed (NUS-WIDE's "
              "label files; ../shared/data/nus_wide was not found)",
              file=sys.stderr)
        return 2
    names = (args.members.split(",") if args.members
             else list(family.TUNING) + sorted(family.HELD_OUT))
    unknown = [n for n in names if n not in family.MEMBERS]
    if unknown:
        print(f"bench_family: error: --members: unknown {unknown}; the "
              f"members are {', '.join(family.MEMBERS)}", file=sys.stderr)
        return 2
    sizes = {k: v for k, v in (("num_train", args.num_train),
                                ("num_test", args.num_test)) if v is not None}
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores", flush=True)
    results = {}
    for name in names:
        start = time.time()
        source = family.member_source(args.cache_dir, name, label_dir,
                                      **sizes)
        rows, epochs = _member_rows(name, source, args)
        results[name] = {"rows": rows, "epochs": epochs}
        _print_member(name, source, rows, epochs, time.time() - start)
    if args.out:
        summary = {
            "cpu": cpu_model(), "seeds": args.seeds, "models": args.models,
            "held_out": sorted(family.HELD_OUT),
            "members": {
                name: {"epochs": entry["epochs"], "rows": {
                    row: [{s: r[s] for s in ("zsl", "gzsl")}
                          | {"selected": r.get("selected"),
                             "timings_seconds": r.get("timings_seconds")}
                          for r in rs]
                    for row, rs in entry["rows"].items()}}
                for name, entry in results.items()
            },
        }
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
