"""Batch-1 serving latency of several SavedModels, measured side by side.

On a shared machine the spread between two runs of the *same* export is
larger than the difference between two versions of the code, so this
script loads every export given and alternates their `serving_default`
calls on the same inputs (call i of every export before call i + 1 of
any), then prints p50/p90 per export and the largest score difference
from the first. Used to check that a refactoring left serving no slower
(BUILD_NOTES.md, "Serving latency"): export the same model with the old
and the new code, then

    python -m benchmarks.compare_exports OLD/1 NEW/1 --calls=400
"""

import argparse
import time

from benchmarks.common import machine_line, quiet_tensorflow

quiet_tensorflow()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from epsilon_tf.export import read_export_info  # noqa: E402


def _server(path):
    info = read_export_info(path)
    if info is None:
        raise SystemExit(f"error: {path} is not an epsilon_tf export "
                         "(no assets/export_info.json)")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    return serve, tuple(info["feature_shape"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("exports", nargs="+", help="export version dirs")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(argv)
    print(machine_line(np, tf), flush=True)
    servers = [_server(p) for p in args.exports]
    shapes = {shape for _, shape in servers}
    if len(shapes) != 1:
        raise SystemExit(f"error: the exports take different feature "
                         f"shapes {sorted(shapes)}; compare like with like")
    shape = shapes.pop()
    rng = np.random.default_rng(0)
    one = tf.constant(rng.normal(size=(1, *shape)), tf.float32)
    batch = tf.constant(rng.normal(size=(8, *shape)), tf.float32)
    times = [[] for _ in servers]
    for i in range(args.warmup + args.calls):
        for times_j, (serve, _) in zip(times, servers, strict=True):
            start = time.perf_counter()
            serve(features=one)["top_k_labels"].numpy()
            if i >= args.warmup:
                times_j.append(time.perf_counter() - start)
    first = None
    for path, times_j, (serve, _) in zip(args.exports, times, servers,
                                        strict=True):
        scores = serve(features=batch)["scores"].numpy()
        first = scores if first is None else first
        ms = np.asarray(times_j) * 1e3
        print(f"{path}: batch-1 p50 {np.percentile(ms, 50):.2f} ms, p90 "
              f"{np.percentile(ms, 90):.2f} ms over {args.calls} calls; max "
              f"|score - first's| {np.abs(scores - first).max():.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
