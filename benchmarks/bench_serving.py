"""Latency and throughput of the exported `serving_default` signature.

Loads an exported SavedModel version, or exports a fresh randomly
initialized Epsilon of NUS-WIDE shape (196x512 features, 1,006 labels of
300-d word vectors, default `ModelConfig`) to a temporary directory, then
measures, in this process:

- batch-1 latency of `serving_default` (features -> scores and top-k
  labels over the whole vocabulary): p50, p90, p99 over `--calls` calls
  after `--warmup` calls;
- batch-64 throughput (images/s).

    python benchmarks/bench_serving.py                      # fresh export
    python benchmarks/bench_serving.py --saved_model=runs/x/export/1
    python benchmarks/bench_serving.py --jit_compile         # XLA variant

The figures are those of the loaded SavedModel called from Python
(`tf.saved_model.load` + the signature), which is what TF Serving runs
minus its RPC layer.
"""

import argparse
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _export_fresh(directory, num_labels, num_unseen, top_k, jit_compile):
    from epsilon_tf.config import ModelConfig
    from epsilon_tf.export import export_saved_model
    from epsilon_tf.labels import LabelSpace
    from epsilon_tf.models import build_epsilon

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(num_labels, 300)).astype("float32")
    space = LabelSpace.from_arrays(
        [f"label_{i}" for i in range(num_labels)],
        vectors,
        seen=np.arange(num_labels - num_unseen),
    )
    config = ModelConfig()
    model = build_epsilon(config, space.subset("seen"))
    start = time.perf_counter()
    path = export_saved_model(
        model, space, directory, top_k=top_k, jit_compile=jit_compile
    )
    return path, time.perf_counter() - start, config.feature_shape


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _percentiles(times_s):
    ms = np.asarray(times_s) * 1e3
    return {p: float(np.percentile(ms, p)) for p in (50, 90, 99)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--saved_model",
        default=None,
        help="Exported version dir (default: export fresh).",
    )
    parser.add_argument("--num_labels", type=int, default=1006)
    parser.add_argument("--num_unseen", type=int, default=81)
    parser.add_argument("--top_k", type=int, default=10)
    parser.add_argument(
        "--jit_compile",
        action="store_true",
        help="Export with XLA (fresh export only).",
    )
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args(argv)

    print(
        f"machine: {platform.platform()}, {_cpu_model()}, "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, devices "
        f"{[d.device_type for d in tf.config.list_logical_devices()]}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.saved_model:
            path = args.saved_model
        else:
            path, seconds, shape = _export_fresh(
                tmp,
                args.num_labels,
                args.num_unseen,
                args.top_k,
                args.jit_compile,
            )
            print(
                f"exported a random default-config Epsilon ({shape[0]}x"
                f"{shape[1]} features, {args.num_labels} labels of 300-d, "
                f"top_k={args.top_k}, jit_compile={args.jit_compile}) in "
                f"{seconds:.1f} s"
            )
        loaded = tf.saved_model.load(path)
        serve = loaded.signatures["serving_default"]
        spec = serve.structured_input_signature[1]["features"]
        fs = spec.shape
        if fs.rank is None:  # validated in-graph; the shape is in the info
            import json

            info_path = os.path.join(path, "assets", "export_info.json")
            with open(info_path, encoding="utf-8") as f:
                feature_shape = tuple(json.load(f)["feature_shape"])
        else:
            feature_shape = tuple(fs[1:])
        rng = np.random.default_rng(1)
        one = tf.constant(
            rng.normal(size=(1,) + feature_shape).astype("float32")
        )
        batch = tf.constant(
            rng.normal(size=(args.batch_size,) + feature_shape).astype(
                "float32"
            )
        )
        for _ in range(args.warmup):
            serve(features=one)["top_k_labels"].numpy()
        times = []
        for _ in range(args.calls):
            start = time.perf_counter()
            serve(features=one)["top_k_labels"].numpy()
            times.append(time.perf_counter() - start)
        lat = _percentiles(times)
        for _ in range(2):
            serve(features=batch)["top_k_labels"].numpy()
        start = time.perf_counter()
        for _ in range(args.batches):
            serve(features=batch)["top_k_labels"].numpy()
        elapsed = time.perf_counter() - start
        out = serve(features=one)
        k = int(out["top_k_labels"].shape[-1])
        vocab = int(out["scores"].shape[-1])
    print(
        f"serving_default, features {feature_shape} -> top-{k} of {vocab} "
        f"labels"
    )
    print(
        f"batch 1 latency over {args.calls} calls: p50 {lat[50]:.2f} ms, "
        f"p90 {lat[90]:.2f} ms, p99 {lat[99]:.2f} ms "
        f"(target p50 <= 5 ms: {'met' if lat[50] <= 5 else 'MISSED'})"
    )
    print(
        f"batch {args.batch_size} throughput: "
        f"{args.batch_size * args.batches / elapsed:.0f} images/s "
        f"({elapsed / args.batches * 1e3:.1f} ms a batch)"
    )


if __name__ == "__main__":
    main()
