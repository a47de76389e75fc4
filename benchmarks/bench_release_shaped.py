"""Epsilon beside ESZSL on the realistic built-in benchmark (nus_like).

The done-when figures of "learning on release-shaped data": full Epsilon,
GPA only and GFP only, trained with the release-shaped preset
(`epsilon_tf.config.RELEASE_PRESET`) at the budget a user tries first (4
epochs over the 8,000 training images), the best epoch chosen on the
validation images, then evaluated on the test split (ZSL: the 81 unseen
concepts; GZSL: all 1,006 labels) with the LESA protocol, printed side by
side with ESZSL and chance fitted on the same data in the same run.

    python -m benchmarks.bench_release_shaped            # about 8 min, 2 cores
    python -m benchmarks.bench_release_shaped --epochs=1 --runs=full

Needs `../shared/data/nus_wide` (or `--label_dir`); the world is written
once to `--cache_dir`. `--num_train` and `--num_test` make a smaller world
(smoke runs; not the benchmark's figures).
"""

import argparse
import dataclasses
import json
import os
import sys
import time

from benchmarks.common import (
    add_size_arguments,
    cpu_model,
    nus_like_source,
    quiet_tensorflow,
)

RUNS = {
    "full": {},
    "gpa_only": {"branches": "gpa"},
    "gfp_only": {"branches": "gfp"},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="full,gpa_only,gfp_only")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache_dir", default="cache")
    parser.add_argument("--label_dir", default=None)
    parser.add_argument("--work_dir", default="runs/bench_release_shaped")
    parser.add_argument("--out", default=None, help="write the JSON here")
    add_size_arguments(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow()

    from epsilon_tf.config import RELEASE_PRESET, preset_configs
    from epsilon_tf.training.run import train_and_evaluate

    source = nus_like_source(
        args.cache_dir, args.label_dir, args.num_train, args.num_test
    )
    print(f"nus_like: {source.split('train').num_examples} train / "
          f"{source.split('test').num_examples} test images; CPU: "
          f"{cpu_model()}, {os.cpu_count()} cores", flush=True)
    results = {}
    for index, name in enumerate(args.runs.split(",")):
        model_cfg, loss_cfg, train_cfg = preset_configs(
            RELEASE_PRESET, source.feature_shape, model_overrides=RUNS[name]
        )
        train_cfg = dataclasses.replace(
            train_cfg, epochs=args.epochs, min_steps=0, seed=args.seed,
            export=False,
            model_dir=os.path.join(args.work_dir, f"{name}-s{args.seed}"),
        )
        start = time.time()
        result = train_and_evaluate(
            model_cfg, loss_cfg, train_cfg, source,
            baseline=index == 0,
        )
        result["seconds"] = round(time.time() - start, 1)
        results[name] = result
    first = results[args.runs.split(",")[0]]
    eszsl = first["baselines"]["eszsl"]
    chance = first["chance"]
    rows = [(n, r) for n, r in results.items()]
    rows += [("ESZSL", eszsl), ("chance", chance)]
    print(f"\nnus_like test split, {args.epochs} epochs, seed {args.seed}, "
          "values in %; ratio = mAP / ESZSL's mAP", flush=True)
    print(f"{'model':<10} {'ZSL mAP':>8} {'F1@3':>6} {'ratio':>6} "
          f"{'GZSL mAP':>9} {'F1@3':>6} {'ratio':>6} {'time s':>7}")
    for name, r in rows:
        zr = r["zsl"]["map"] / eszsl["zsl"]["map"]
        gr = r["gzsl"]["map"] / eszsl["gzsl"]["map"]
        print(f"{name:<10} {100 * r['zsl']['map']:8.2f} "
              f"{100 * r['zsl']['f1@3']:6.2f} {zr:6.2f} "
              f"{100 * r['gzsl']['map']:9.2f} {100 * r['gzsl']['f1@3']:6.2f} "
              f"{gr:6.2f} {r.get('seconds', 0):7.0f}", flush=True)
    if args.out:
        summary = {
            "cpu": cpu_model(), "epochs": args.epochs, "seed": args.seed,
            "runs": {n: {s: r[s] for s in ("zsl", "gzsl")} | {
                "seconds": r["seconds"],
                "best_epoch": r["training"]["best_epoch"]}
                for n, r in results.items()},
            "eszsl": {s: eszsl[s] for s in ("zsl", "gzsl")},
            "chance": {s: chance[s] for s in ("zsl", "gzsl")},
        }
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
