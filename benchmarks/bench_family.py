"""Epsilon beside ESZSL on every member of the family of worlds.

For each member of `epsilon_tf.data.worlds.family` (the tuning members
first, then the held-out members in their own rows), ESZSL is fitted with
each of its recipes (`epsilon_tf.baselines.eszsl.POOLINGS`, γ and λ
chosen on the validation slice of the training split) and as `train.py`
prints it (the recipe chosen on that same slice, never on the test
split); then, unless `--eszsl_only`, Epsilon is trained with the release
preset at the budget a user tries first and printed beside ESZSL with
the ratios. Values are on each member's test split (ZSL: the 81 unseen
concepts; GZSL: all 1,006 labels), in %.

    python -m benchmarks.bench_family --eszsl_only   # ESZSL recipes only
    python -m benchmarks.bench_family                # hours on two cores

Needs `../shared/data/nus_wide` (or `--label_dir`); every member is
written once to `--cache_dir` (2-3 GB each). `--num_train` and
`--num_test` make smaller worlds (smoke runs; not the figures).
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


def _eszsl_result(source, fraction, poolings):
    """ESZSL restricted to `poolings`, fitted as `fit_eszsl` fits it."""
    from epsilon_tf.baselines.eszsl import ESZSL
    from epsilon_tf.data.pipeline import carve
    from epsilon_tf.metrics import evaluate_scores

    train = source.split("train").dataset()
    space = source.label_space
    model = ESZSL(select_k=source.eval_ks[0], poolings=poolings)
    model.fit(carve(train, "train", fraction),
              carve(train, "validation", fraction),
              space.subset("seen").vectors)
    scores, labels = model.score_dataset(source.split("test").dataset(),
                                         space.vectors)
    result = evaluate_scores(scores, labels, ks=source.eval_ks,
                             unseen_mask=space.unseen_mask)
    result["selected"] = {"recipe": model.pooling,
                          "validation_f1": model.selected.val_f1,
                          "gamma": model.selected.gamma,
                          "lambda": model.selected.lam}
    return result


def _cells(result):
    return " ".join(f"{100 * result[s][m]:7.2f}" for s, m in _COLUMNS)


def _member_rows(name, source, args):
    """Fits ESZSL (each recipe, and as printed) and maybe Epsilon."""
    from epsilon_tf.baselines.eszsl import POOLINGS
    from epsilon_tf.config import RELEASE_PRESET, preset_configs
    from epsilon_tf.training.run import fit_eszsl, train_and_evaluate

    fraction = preset_configs(
        RELEASE_PRESET, source.feature_shape)[2].validation_fraction
    rows = {}
    for pooling in POOLINGS:
        rows[f"ESZSL {pooling}"] = _eszsl_result(source, fraction, (pooling,))
    printed = fit_eszsl(source, fraction)
    rows["ESZSL printed"] = printed
    if not args.eszsl_only:
        model_cfg, loss_cfg, train_cfg = preset_configs(
            RELEASE_PRESET, source.feature_shape
        )
        train_cfg = dataclasses.replace(
            train_cfg, epochs=args.epochs, seed=args.seed, export=False,
            model_dir=os.path.join(args.work_dir, f"{name}-s{args.seed}"),
        )
        start = time.time()
        result = train_and_evaluate(model_cfg, loss_cfg, train_cfg, source,
                                    baseline=False)
        result["seconds"] = round(time.time() - start, 1)
        rows["Epsilon"] = result
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", default=None,
                        help="Comma-separated members (default: all).")
    parser.add_argument("--eszsl_only", action="store_true",
                        help="Only the ESZSL recipes (no training).")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache_dir", default="cache")
    parser.add_argument("--label_dir", default=None)
    parser.add_argument("--work_dir", default="runs/bench_family")
    parser.add_argument("--out", default=None, help="write the JSON here")
    add_size_arguments(parser)
    args = parser.parse_args(argv)
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
        rows = _member_rows(name, source, args)
        results[name] = rows
        held = " (held out)" if name in family.HELD_OUT else ""
        shape = "x".join(str(v) for v in source.feature_shape)
        print(f"\n{name}{held}: {shape}, "
              f"{source.split('train').num_examples} train / "
              f"{source.split('test').num_examples} test images "
              f"({time.time() - start:.0f}s); values in %", flush=True)
        print(f"{'model':<16} {'ZSL mAP':>7} {'F1@3':>7} {'GZSL mAP':>7} "
              f"{'F1@3':>7} {'val F1':>7}  chosen")
        printed = rows["ESZSL printed"]
        for row, r in rows.items():
            sel = r.get("selected", {})
            val = sel.get("validation_f1")
            val = f"{100 * val:7.2f}" if val is not None else " " * 7
            chosen = sel.get("recipe", "") if row == "ESZSL printed" else ""
            print(f"{row:<16} {_cells(r)} {val}  {chosen}", flush=True)
        if "Epsilon" in rows:
            e = rows["Epsilon"]
            print("ratio Epsilon / ESZSL printed: ZSL mAP "
                  f"{e['zsl']['map'] / printed['zsl']['map']:.2f}, GZSL mAP "
                  f"{e['gzsl']['map'] / printed['gzsl']['map']:.2f}",
                  flush=True)
    if args.out:
        summary = {
            "cpu": cpu_model(), "epochs": args.epochs, "seed": args.seed,
            "held_out": sorted(family.HELD_OUT),
            "members": {
                name: {row: {s: r[s] for s in ("zsl", "gzsl")}
                       | {"selected": r.get("selected")}
                       for row, r in rows.items()}
                for name, rows in results.items()
            },
        }
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
