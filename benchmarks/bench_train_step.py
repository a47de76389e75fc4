"""Benchmark of Epsilon's train step, with and without XLA.

Builds Epsilon at NUS-WIDE shapes (196x512 region features, 925 seen
labels, 300-d word vectors, the default `ModelConfig`: hidden_dim 512,
7 prompts, 1 encoder layer with 8 heads, 3 global vectors) and times the
train step exactly as `epsilon_tf.training.trainer.Trainer` runs it: the
step is `epsilon_tf.training.task.Task.train_step` itself, the trainer's
(gradients from `Task.compute_gradients`: forward pass with
`training=True`, `RankingLoss.per_example_terms`, `tape.gradient`, in
`tf.function(jit_compile=...)`; then the replica sum, global-norm
clipping and the trainer's AdamW from `Task.create_optimizer`: weight
decay, the no-decay list), in an outer `tf.function` on one device.
Inputs are random in-memory tensors (no input pipeline).

For each batch size it prints examples/s and ms/step without and with XLA
(`jit_compile=True`), the ratio XLA / no-XLA and which is faster (the
recommendation for `TrainConfig.jit_compile`). It also prints the model's
FLOPs per example (analytic, from the layer shapes, and from TF's graph
profiler when it can count them), this machine's measured dense-matmul
throughput (a float32 matmul timed in the same run) and the fraction of it
the train step achieves. With both modes it then diagnoses the XLA
figure: the same step with dropout off, and `keras.random.dropout` alone,
each with and without XLA.

Every configuration gets `--warmup` untimed steps (the first call, with
tracing and XLA compilation, is one of them), then up to `--steps` timed
steps, stopping after `--max_seconds` (at least 2 timed steps).

`--mixed_precision` sets the Keras global policy to "mixed_bfloat16"
before the model is built, as `train.py --mixed_precision` does (meant
for GPUs and TPUs; CPU figures do not predict an accelerator).

Not a test. Examples:

    python -m benchmarks.bench_train_step
    python -m benchmarks.bench_train_step --batches=32 --steps=10 --xla=off
    python -m benchmarks.bench_train_step --mixed_precision
"""

import argparse
import dataclasses
import time

from benchmarks.common import (
    EMBEDDING_DIM,
    NUS_WIDE_SEEN,
    machine_line,
    quiet_tensorflow,
    time_train_step,
)

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from epsilon_tf.config import ModelConfig  # noqa: E402


def matmul_gflops(size=2048, repeats=10, device=None):
    """Measured dense float32 matmul throughput (GFLOP/s) on `device`."""
    device = device or ("/GPU:0" if tf.config.list_physical_devices("GPU")
                        else "/CPU:0")
    with tf.device(device):
        a = tf.random.normal((size, size), seed=1)
        b = tf.random.normal((size, size), seed=2)

        @tf.function
        def chain(a, b):
            c = a
            for _ in range(repeats):
                c = tf.matmul(c, b) * (1.0 / size)
            return tf.reduce_sum(c)

        chain(a, b).numpy()  # trace + warm up
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            chain(a, b).numpy()
            best = min(best, time.perf_counter() - start)
    flops = 2.0 * size**3 * repeats
    return flops / best / 1e9, device


# ----------------------------------------------------------------- FLOPs
def analytic_forward_flops(config, num_labels, embedding_dim):
    """Forward FLOPs of one example (a multiply-add counts 2), by layer.

    Counts the matmuls (Dense layers, attention, grouping, scoring); the
    element-wise work (layer norms, softmax, GELU, dropout) is listed
    separately as a rough estimate and is a few percent of the total.
    """
    n, c = config.feature_shape
    d, e = config.hidden_dim, embedding_dim
    g, m, k = config.num_prompts, config.num_global, num_labels
    t = n + g
    mlp = int(round(d * 2.0))  # TransformerEncoderBlock mlp_ratio=2.0
    parts = {"token_projection": 2 * n * c * d}
    enc = 0
    for _ in range(config.gpa_layers):
        enc += 3 * 2 * t * d * d  # Q, K, V projections
        enc += 2 * 2 * t * t * d  # Q.K^T and A.V over all heads
        enc += 2 * t * d * d  # attention output projection
        enc += 2 * 2 * t * d * mlp  # MLP
    parts["gpa_encoder"] = enc
    parts["gpa_grouping"] = (
        2 * g * d * d + 2 * 2 * n * d * d  # group query; key, value
        + 2 * 2 * g * n * d  # logits and aggregation
        + 2 * g * d * e  # to word space
    )
    h = config.hidden_dim
    parts["gfp"] = (
        2 * 2 * d * h  # pooled (avg, max) -> hidden
        + config.gfp_blocks * 2 * 2 * h * h
        + 2 * h * m * e
    )
    parts["label_scoring"] = 2 * (g + m) * e * k
    elementwise = (
        10 * n * c  # token norm, dropout
        + config.gpa_layers * (20 * t * d + 5 * 8 * t * t + 10 * t * mlp)
        + 10 * t * d + 5 * g * n
    )
    return parts, elementwise


def profiler_flops(concrete):
    """FLOPs the TF graph profiler counts in a concrete function's graph."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    tf.get_logger().setLevel("ERROR")  # the v1 profiler's deprecation notes

    opts = (
        option_builder.ProfileOptionBuilder(
            option_builder.ProfileOptionBuilder.float_operation()
        )
        .with_empty_output()
        .build()
    )
    info = model_analyzer.profile(
        graph=concrete.graph, run_meta=None, cmd="op", options=opts
    )
    by_op = {}
    stack = list(info.children)  # the "op" view nests each type in the last
    while stack:
        node = stack.pop()
        if node.float_ops:
            by_op[node.name] = by_op.get(node.name, 0) + node.float_ops
        stack.extend(node.children)
    return info.total_float_ops, by_op


# ------------------------------------------------------------------ main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="32,96",
                        help="Comma-separated batch sizes.")
    parser.add_argument("--steps", type=int, default=10,
                        help="Timed steps per configuration (at most).")
    parser.add_argument("--warmup", type=int, default=2,
                        help="Untimed steps first, the first call (tracing, "
                        "XLA compilation) included.")
    parser.add_argument("--max_seconds", type=float, default=30.0,
                        help="Stop timing a configuration after this long "
                        "(at least 2 timed steps); 0: no limit.")
    parser.add_argument("--xla", choices=("both", "on", "off"),
                        default="both")
    parser.add_argument("--mixed_precision", action="store_true",
                        help='Keras global policy "mixed_bfloat16".')
    parser.add_argument("--num_labels", type=int, default=NUS_WIDE_SEEN)
    parser.add_argument("--matmul_size", type=int, default=2048)
    parser.add_argument("--no_profiler", action="store_true",
                        help="Skip the TF profiler FLOP count.")
    parser.add_argument("--no_diagnosis", action="store_true",
                        help="Skip the XLA diagnosis (dropout off, and "
                        "keras.random.dropout alone).")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    return args


def _label(batch, jit, tag=""):
    return f"batch {batch:>4} xla={'on ' if jit else 'off'}{tag}:"


def _run_config(args, batch, jit, tag="", **kwargs):
    try:
        res = time_train_step(
            batch, jit, steps=args.steps, warmup=args.warmup,
            max_seconds=args.max_seconds or None,
            num_labels=args.num_labels, **kwargs,
        )
    except Exception as err:  # noqa: BLE001 - report and go on
        print(f"{_label(batch, jit, tag)} FAILED ({type(err).__name__}: "
              f"{str(err).splitlines()[0][:200]})", flush=True)
        return None
    print(
        f"{_label(batch, jit, tag)} {res['examples_per_s']:8.1f} examples/s "
        f"{res['ms_per_step']:9.1f} ms/step  (first call "
        f"{res['first_call_s']:.1f} s, loss {res['loss']:.4f}, "
        f"{res['timed_steps']} timed steps)",
        flush=True,
    )
    return res


def dropout_microbench(shape, repeats=2):
    """ms per call of `keras.random.dropout` and `tf.nn.dropout`, +-XLA."""
    x = tf.random.normal(shape, seed=3)
    seed = keras.random.SeedGenerator(1)
    fns = {
        "keras.random.dropout": lambda t: keras.random.dropout(
            t, 0.1, seed=seed
        ),
        "tf.nn.dropout": lambda t: tf.nn.dropout(t, 0.1),
    }
    out = {}
    for name, fn in fns.items():
        for jit in (False, True):
            f = tf.function(fn, jit_compile=jit)
            f(x).numpy()
            start = time.perf_counter()
            for _ in range(repeats):
                r = f(x)
            r.numpy()
            out[(name, jit)] = (time.perf_counter() - start) / repeats * 1e3
    return out


def diagnose_xla(args, batch):
    """Why XLA is slower here: the step without dropout, and dropout alone."""
    print(f"XLA diagnosis at batch {batch} (same process):")
    config = dataclasses.replace(ModelConfig(), dropout=0.0,
                                 token_dropout=0.0)
    short = argparse.Namespace(**{**vars(args), "steps": min(args.steps, 5)})
    pair = [
        _run_config(short, batch, jit, tag=" dropout=0", model_config=config)
        for jit in (False, True)
    ]
    if None not in pair:
        ratio = pair[1]["examples_per_s"] / pair[0]["examples_per_s"]
        print(f"  without dropout, XLA / no-XLA = {ratio:.2f}x")
        for res in pair:
            res.pop("trainer_step")
    shape = (2, ModelConfig().gpa_heads) + (
        ModelConfig().feature_shape[0] + ModelConfig().num_prompts,
    ) * 2
    times = dropout_microbench(shape)
    print(f"  dropout alone on the attention weights {shape} "
          f"(batch 2; ms per call):")
    for name in ("keras.random.dropout", "tf.nn.dropout"):
        off, on = times[(name, False)], times[(name, True)]
        print(f"    {name:<21} no-XLA {off:8.1f}  XLA {on:8.1f}  "
              f"({on / off:.1f}x)")


def print_flops(config, num_labels, embedding_dim, step, skip_profiler):
    parts, elementwise = analytic_forward_flops(
        config, num_labels, embedding_dim
    )
    forward = sum(parts.values())
    print("FLOPs per example (analytic, multiply-add = 2 FLOPs):")
    for name, value in parts.items():
        print(f"  {name:<18} {value / 1e6:10.1f} MFLOP")
    print(f"  forward matmuls    {forward / 1e9:10.3f} GFLOP  "
          f"(+ ~{elementwise / 1e6:.0f} MFLOP element-wise, not counted)")
    print(f"  training (~3x fwd) {3 * forward / 1e9:10.3f} GFLOP")
    prof = None
    if not skip_profiler and step is not None:
        try:
            prof = profile_forward(step)
        except Exception as err:  # noqa: BLE001 - optional figure
            print(f"  TF profiler: not available ({type(err).__name__}: "
                  f"{str(err).splitlines()[0][:120]})")
    return forward, prof


def profile_forward(step):
    """TF profiler FLOPs of the forward pass and of the gradient function."""
    model = step.model
    batch = step.batch
    spec = tf.TensorSpec(step.features.shape, tf.float32)

    @tf.function
    def forward(x):
        return model(x, training=False)["scores"]

    fwd_total, fwd_ops = profiler_flops(forward.get_concrete_function(spec))
    grad_concrete = tf.function(step.grad_fn.python_function) \
        .get_concrete_function(
            spec, tf.TensorSpec(step.labels.shape, tf.float32)
        )
    grad_total, grad_ops = profiler_flops(grad_concrete)
    per_fwd = fwd_total / batch
    per_grad = grad_total / batch
    print("FLOPs per example (TF graph profiler, "
          "ProfileOptionBuilder.float_operation()):")
    print(f"  forward            {per_fwd / 1e9:10.3f} GFLOP  "
          f"(counted ops: {_top_ops(fwd_ops, batch)})")
    print(f"  forward + backward {per_grad / 1e9:10.3f} GFLOP  "
          f"({per_grad / max(per_fwd, 1):.2f}x forward; "
          f"counted ops: {_top_ops(grad_ops, batch)})")
    return per_fwd, per_grad


def _top_ops(by_op, batch, n=4):
    items = sorted(by_op.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {v / batch / 1e6:.0f}M" for k, v in items)


def main(argv=None):
    args = parse_args(argv)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    print(machine_line(np, tf, keras, gpus=True))
    policy = keras.mixed_precision.global_policy().name
    print(f"keras dtype policy: {policy}")
    if args.mixed_precision and not tf.config.list_physical_devices("GPU"):
        print("NOTE: mixed_bfloat16 on a CPU: the figures below do not "
              "predict an accelerator.")
    config = ModelConfig()
    gflops, device = matmul_gflops(args.matmul_size)
    print(f"dense matmul {args.matmul_size}x{args.matmul_size} float32 on "
          f"{device}: {gflops:.1f} GFLOP/s (best of 3)")
    print(f"model: feature_shape={config.feature_shape}, "
          f"hidden_dim={config.hidden_dim}, prompts={config.num_prompts}, "
          f"gpa_layers={config.gpa_layers}, heads={config.gpa_heads}, "
          f"global={config.num_global}, seen labels={args.num_labels}, "
          f"word vectors={EMBEDDING_DIM}-d")
    modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.xla]
    results = {}
    profiled = None
    for batch in args.batches:
        for jit in modes:
            res = _run_config(args, batch, jit)
            if res is None:
                continue
            results[(batch, jit)] = res
            if profiled is None:
                profiled = res["trainer_step"]
            res.pop("trainer_step")

    forward, prof = print_flops(
        config, args.num_labels, EMBEDDING_DIM, profiled, args.no_profiler
    )
    again, _ = matmul_gflops(args.matmul_size)
    print(f"dense matmul again after the steps: {again:.1f} GFLOP/s; the "
          f"fractions below use the best, {max(gflops, again):.1f} GFLOP/s")
    gflops = max(gflops, again)
    train_flops = 3 * forward
    print("achieved throughput (analytic training FLOPs = 3x forward):")
    for (batch, jit), res in results.items():
        achieved = res["examples_per_s"] * train_flops / 1e9
        print(f"  batch {batch:>4} xla={'on ' if jit else 'off'}: "
              f"{achieved:7.1f} GFLOP/s = {achieved / gflops:6.1%} of the "
              f"measured matmul rate")
    print("XLA / no-XLA (examples/s ratio, same process):")
    votes = []
    for batch in args.batches:
        off, on = results.get((batch, False)), results.get((batch, True))
        if off is None or on is None:
            continue
        ratio = on["examples_per_s"] / off["examples_per_s"]
        votes.append(ratio)
        print(f"  batch {batch:>4}: {ratio:.2f}x -> "
              f"{'XLA' if ratio > 1 else 'no XLA'} is faster")
    if votes:
        geo = float(np.exp(np.mean(np.log(votes))))
        verdict = "True" if geo > 1.05 else "False"
        print(f"recommendation on this machine: TrainConfig.jit_compile="
              f"{verdict} (geometric-mean ratio {geo:.2f}x; "
              f"{'>' if geo > 1.05 else '<='} 1.05)")
    if args.xla == "both" and not args.no_diagnosis and args.batches:
        diagnose_xla(args, args.batches[0])
    return results


if __name__ == "__main__":
    main()
