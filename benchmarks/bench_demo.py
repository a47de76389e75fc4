"""Times `make demo` (after installation) and says where the time goes.

Runs the demo's two commands as `make demo` does, each in a fresh Python
process, and prints their wall times, the per-stage timings that train.py
records in `metrics.json` (`timings_seconds`), and the rest (interpreter
and TensorFlow start-up, reading or writing the built-in benchmark, progress
output). Target: everything after installation within 5 minutes.

    python -m benchmarks.bench_demo                 # reuses ./cache
    python -m benchmarks.bench_demo --fresh_cache   # includes writing the data

`--epochs` and `--steps_per_epoch` shorten the training (smoke runs; the
5-minute verdict then says nothing about the demo).

Not a test.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from benchmarks.common import machine_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_SECONDS = 300


def run(command):
    start = time.time()
    proc = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    seconds = time.time() - start
    if proc.returncode:
        sys.exit(
            f"{' '.join(command)} failed ({proc.returncode}):\n"
            + proc.stdout[-2000:] + proc.stderr[-2000:]
        )
    return seconds, proc.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh_cache", action="store_true",
                        help="Write the built-in benchmark anew (temp dir).")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train.py --epochs (default: the demo's).")
    parser.add_argument("--steps_per_epoch", type=int, default=None,
                        help="train.py --steps_per_epoch (default: a pass).")
    args = parser.parse_args(argv)
    print(f"{machine_line()}; load average {os.getloadavg()[0]:.1f}")
    shorter = [f"--{name}={getattr(args, name)}"
               for name in ("epochs", "steps_per_epoch")
               if getattr(args, name) is not None]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "demo")
        cache = os.path.join(tmp, "cache") if args.fresh_cache else "cache"
        train_s, out = run([
            sys.executable, "train.py", f"--model_dir={model_dir}",
            f"--cache_dir={cache}", *shorter,
        ])
        with open(os.path.join(model_dir, "metrics.json")) as f:
            metrics = json.load(f)
        versions = sorted(
            int(v) for v in os.listdir(os.path.join(model_dir, "export"))
            if v.isdigit()
        )
        eval_s, _ = run([
            sys.executable, "eval.py",
            f"--saved_model={model_dir}/export/{versions[-1]}",
            f"--cache_dir={cache}", "--noprogress",
        ])
    order = ["setup", "training", "test_evaluation", "eszsl_baseline",
             "chance", "save_and_export"]
    stages = {k: metrics["timings_seconds"][k] for k in order
              if k in metrics["timings_seconds"]}
    print(f"\ntrain.py: {train_s:.1f} s wall")
    for name, seconds in stages.items():
        print(f"  {name:<18} {seconds:7.1f} s")
    rest = train_s - sum(stages.values())
    wrote = "writing" if args.fresh_cache else "opening"
    print(f"  {'other':<18} {rest:7.1f} s  (Python + TensorFlow start-up, "
          f"{wrote} the built-in benchmark, progress output)")
    epochs = re.findall(r"\[(\d+\.\d)s\]", out)
    if epochs:
        print(f"  training seconds per epoch: {', '.join(epochs)}")
    print(f"eval.py --saved_model: {eval_s:.1f} s wall")
    total = train_s + eval_s
    verdict = "OK" if total <= TARGET_SECONDS else "OVER"
    print(f"total after installation: {total:.1f} s "
          f"(target <= {TARGET_SECONDS} s: {verdict})")
    print(f"Epsilon ZSL mAP {100 * metrics['zsl']['map']:.2f}, "
          f"ESZSL ZSL mAP "
          f"{100 * metrics['baselines']['eszsl']['zsl']['map']:.2f}")


if __name__ == "__main__":
    main()
