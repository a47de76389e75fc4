"""Latency and throughput of the exported `serving_default` signature.

Loads an exported SavedModel version, or exports a fresh randomly
initialized Epsilon of NUS-WIDE shape (196x512 features, 1,006 labels of
300-d word vectors, default `ModelConfig`; `--feature_shape` and
`--hidden_dim` shrink it for smoke runs) to a temporary directory, then
measures, in this process:

- batch-1 latency of `serving_default` (features -> scores and top-k
  labels over the whole vocabulary): p50, p90, p99 over `--calls` calls
  after `--warmup` calls;
- batch-64 throughput (images/s).

    python -m benchmarks.bench_serving            # float32 and bfloat16
    python -m benchmarks.bench_serving --keras_reference
    python -m benchmarks.bench_serving --saved_model=runs/x/export/1
    python -m benchmarks.bench_serving --precision=float32 --jit_compile

`--keras_reference` also times the Keras model's own layers traced into
one function (`epsilon_tf.export.reference.keras_reference_serving`: what
the export ran before the folded inference graph, and what it still runs
for models other than Epsilon) and compares every export's scores with it
on the same inputs.

The fresh model's weights are its random initialization plus seeded noise
on every weight, so that no bias is zero and no LayerNorm is the identity
as in a trained model (grappler drops additions of constant zeros, which
would flatter an untrained model's latency).

The figures are those of the loaded SavedModel called from Python
(`tf.saved_model.load` + the signature), which is what TF Serving runs
minus its RPC layer.
"""

import argparse
import os
import platform
import tempfile
import time

from benchmarks.common import cpu_model, quiet_tensorflow

quiet_tensorflow("2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from epsilon_tf.export.reference import keras_reference_serving  # noqa: E402


def _export_fresh(
    directory, num_labels, num_unseen, top_k, jit_compile, precision,
    model_overrides=None,
):
    import keras

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
    config = ModelConfig(**(model_overrides or {}))
    keras.utils.set_random_seed(0)  # the same model for each precision
    model = build_epsilon(config, space.subset("seen"))
    for weight in model.weights:
        if "label_scoring" not in weight.path:
            weight.assign(
                weight.numpy()
                + rng.normal(scale=0.02, size=weight.shape).astype("float32")
            )
    start = time.perf_counter()
    path = export_saved_model(
        model,
        space,
        directory,
        top_k=top_k,
        jit_compile=jit_compile,
        precision=precision,
    )
    return path, time.perf_counter() - start, config.feature_shape, model, space


def _percentiles(times_s):
    ms = np.asarray(times_s) * 1e3
    return {p: float(np.percentile(ms, p)) for p in (50, 90, 99)}


def _feature_shape(path):
    # The export's info (exports made before the signatures declared their
    # shapes have it too).
    from epsilon_tf.export import read_export_info

    info = read_export_info(path)
    if info is None:
        raise SystemExit(
            f"{path} has no assets/export_info.json: not an epsilon_tf export"
        )
    return tuple(info["feature_shape"])


def _measure(serve, one, batch, args):
    for _ in range(args.warmup):
        serve(features=one)["top_k_labels"].numpy()
    times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        serve(features=one)["top_k_labels"].numpy()
        times.append(time.perf_counter() - start)
    for _ in range(2):
        serve(features=batch)["top_k_labels"].numpy()
    start = time.perf_counter()
    for _ in range(args.batches):
        serve(features=batch)["top_k_labels"].numpy()
    elapsed = time.perf_counter() - start
    return _percentiles(times), elapsed


def _report(name, lat, elapsed, args):
    print(
        f"[{name}] batch 1 latency over {args.calls} calls: p50 "
        f"{lat[50]:.2f} ms, p90 {lat[90]:.2f} ms, p99 {lat[99]:.2f} ms "
        f"(target p50 <= 5 ms: {'met' if lat[50] <= 5 else 'MISSED'})"
    )
    print(
        f"[{name}] batch {args.batch_size} throughput: "
        f"{args.batch_size * args.batches / elapsed:.0f} images/s "
        f"({elapsed / args.batches * 1e3:.1f} ms a batch)"
    )


def _agreement(reference, other, k):
    """Max |score difference| and mean top-k overlap of two score sets."""
    diff = float(np.max(np.abs(reference - other)))
    top_ref = np.argsort(-reference, axis=1)[:, :k]
    top_other = np.argsort(-other, axis=1)[:, :k]
    overlap = np.mean(
        [len(set(a) & set(b)) / k for a, b in zip(top_ref, top_other)]
    )
    return diff, float(overlap)


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
    parser.add_argument(
        "--precision",
        default="both",
        choices=["float32", "bfloat16", "both"],
        help="Precision of the fresh export; both (default): the two side "
        "by side, with their score agreement.",
    )
    parser.add_argument(
        "--keras_reference",
        action="store_true",
        help="Also time the Keras model's own graph (what the export traced "
        "before the folded inference graph), in the same process.",
    )
    parser.add_argument(
        "--feature_shape",
        default="196x512",
        help="REGIONSxCHANNELS of the fresh model (smaller: smoke runs).",
    )
    parser.add_argument(
        "--hidden_dim",
        type=int,
        default=None,
        help="Token width of the fresh model (default: ModelConfig's).",
    )
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args(argv)
    overrides = {
        "feature_shape": tuple(int(v) for v in args.feature_shape.split("x"))
    }
    if args.hidden_dim is not None:
        overrides["hidden_dim"] = args.hidden_dim

    print(
        f"machine: {platform.platform()}, {cpu_model()}, "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, devices "
        f"{[d.device_type for d in tf.config.list_logical_devices()]}"
    )
    precisions = (
        ["float32", "bfloat16"]
        if args.precision == "both"
        else [args.precision]
    )
    rng = np.random.default_rng(1)
    scores, inputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        if args.saved_model:
            paths["saved_model"] = args.saved_model
        else:
            for precision in precisions:
                path, seconds, shape, model, space = _export_fresh(
                    os.path.join(tmp, precision),
                    args.num_labels,
                    args.num_unseen,
                    args.top_k,
                    args.jit_compile,
                    precision,
                    overrides,
                )
                paths[precision] = path
                print(
                    f"exported a random Epsilon ({shape[0]}x"
                    f"{shape[1]} features, {args.num_labels} labels of 300-d,"
                    f" top_k={args.top_k}, jit_compile={args.jit_compile}, "
                    f"precision={precision}) in {seconds:.1f} s"
                )
        servers = {
            name: (
                path,
                tf.saved_model.load(path).signatures["serving_default"],
            )
            for name, path in paths.items()
        }
        if args.keras_reference and not args.saved_model:
            servers["keras graph"] = (
                paths[precisions[0]],
                keras_reference_serving(model, space, args.top_k),
            )
        for name, (path, serve) in servers.items():
            feature_shape = _feature_shape(path)
            if feature_shape not in inputs:  # the same inputs for each export
                inputs[feature_shape] = (
                    tf.constant(
                        rng.normal(size=(1,) + feature_shape), tf.float32
                    ),
                    tf.constant(
                        rng.normal(size=(args.batch_size,) + feature_shape),
                        tf.float32,
                    ),
                )
            one, batch = inputs[feature_shape]
            lat, elapsed = _measure(serve, one, batch, args)
            out = serve(features=batch)
            scores[name] = out["scores"].numpy()
            print(
                f"[{name}] features {feature_shape} -> "
                f"top-{int(out['top_k_labels'].shape[-1])} of "
                f"{scores[name].shape[-1]} labels"
            )
            _report(name, lat, elapsed, args)
    reference = next(
        (n for n in ("keras graph", "float32") if n in scores), None
    )
    for name in scores:
        if reference is None or name == reference:
            continue
        diff, overlap = _agreement(scores[reference], scores[name], args.top_k)
        print(
            f"{name} vs {reference} on {args.batch_size} random feature "
            f"maps: max |score difference| {diff:.2e}, mean top-{args.top_k} "
            f"overlap {overlap:.3f}"
        )
    return scores


if __name__ == "__main__":
    main()
