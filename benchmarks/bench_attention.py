"""Keras' MultiHeadAttention against `SelfAttention`, side by side.

Times forward + backward (`tf.GradientTape`, gradients of every weight
and of the input, training mode, attention dropout on) of
`keras.layers.MultiHeadAttention` called as self-attention,
`mha(x, x)`, and of `epsilon_tf.layers.SelfAttention` holding the same
weights, `attention(x)`, at the two shapes the package uses:

- GPA's encoder block on the synthetic world: 49 region tokens + 7
  prompts = 56 tokens of width 128, 4 heads;
- BiAM's region-context block: 49 regions of 256 channels, 8 heads
  (the block returns the attention scores, so this call does too).

Then the whole train step of Epsilon at the synthetic world's shape
(`benchmarks.common.TrainStep`: `ModelConfig(feature_shape=(49, 64),
hidden_dim=128, gpa_heads=4)`, 250 labels, 64-d word vectors): the
"old" model has `fused = False` on its `SelfAttention` layers (each
call is `MultiHeadAttention.call`, the code before `SelfAttention`),
the "new" one the fused call; both are built from the same seed.

Old and new alternate, `--repeats` times `--calls` calls each; the
figures are the medians of the repeats' mean times. Not a test.

    python -m benchmarks.bench_attention
    python -m benchmarks.bench_attention --repeats=11 --no_train_step
"""

import argparse
import time

from benchmarks.common import machine_line, quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from epsilon_tf.layers import SelfAttention  # noqa: E402

# name: (tokens, width, heads, return_attention_scores)
SHAPES = {
    "GPA encoder block": (56, 128, 4, False),
    "BiAM region context": (49, 256, 8, True),
}


def _layer_step(layer, x, scores, fused_call):
    """Forward + backward of one attention layer, in a tf.function."""
    variables = layer.trainable_variables

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            args = (x,) if fused_call else (x, x)
            out = layer(*args, training=True,
                        return_attention_scores=scores)
            if scores:
                out = out[0] + tf.reduce_mean(out[1])
            loss = tf.reduce_sum(tf.square(out))
        return tape.gradient(loss, [x] + variables)

    return step


def alternate(steps, repeats, calls):
    """{name: median ms a call} of the `steps` {name: fn()}, alternated."""
    times = {name: [] for name in steps}
    for fn in steps.values():  # tracing and one untimed call
        fn()
    for _ in range(repeats):
        for name, fn in steps.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - start) / calls * 1e3)
    return {name: float(np.median(t)) for name, t in times.items()}


def _report(title, medians, repeats, calls):
    (old_name, old), (new_name, new) = medians.items()
    print(f"{title}: {old_name} {old:.1f} ms, {new_name} {new:.1f} ms, "
          f"{new_name} / {old_name} {new / old:.2f} "
          f"(median of {repeats} x {calls} calls)", flush=True)


def bench_layers(batch, dropout, repeats, calls):
    rng = np.random.default_rng(0)
    for title, (tokens, width, heads, scores) in SHAPES.items():
        shape = (batch, tokens, width)
        keras_mha = keras.layers.MultiHeadAttention(
            heads, width // heads, dropout=dropout, seed=1
        )
        keras_mha.build(shape, shape)
        fused = SelfAttention(heads, width // heads, dropout=dropout, seed=1)
        fused.build(shape)
        for a, b in zip(keras_mha.trainable_weights,
                        fused.trainable_weights):
            b.assign(a)
        x = tf.constant(rng.standard_normal(shape, dtype=np.float32))
        difference = float(tf.reduce_max(tf.abs(
            keras_mha(x, x) - fused(x)
        )))
        steps = {
            "keras MHA": _layer_step(keras_mha, x, scores, False),
            "SelfAttention": _layer_step(fused, x, scores, True),
        }
        medians = alternate(
            {name: (lambda s=s, x=x: tf.nest.map_structure(
                lambda t: t.numpy(), s(x))) for name, s in steps.items()},
            repeats, calls,
        )
        _report(f"{title} [{batch}, {tokens}, {width}], {heads} heads, "
                f"dropout {dropout}, forward+backward", medians,
                repeats, calls)
        print(f"  inference outputs: max |keras - SelfAttention| "
              f"{difference:.2e}", flush=True)


def bench_train_step(batch, num_labels, repeats, calls):
    from benchmarks.common import TrainStep
    from epsilon_tf.config import ModelConfig

    config = ModelConfig(feature_shape=(49, 64), hidden_dim=128,
                         gpa_heads=4)
    steps = {}
    for name, fused in (("keras MHA", False), ("SelfAttention", True)):
        step = TrainStep(batch, jit_compile=False, model_config=config,
                         num_labels=num_labels, embedding_dim=64)
        attention = [layer for layer in step.model._flatten_layers()
                     if isinstance(layer, SelfAttention)]
        assert attention, "no SelfAttention layer in the model"
        for layer in attention:
            layer.fused = fused
        steps[name] = step
    medians = alternate(
        {name: (lambda s=s: s.run(1)) for name, s in steps.items()},
        repeats, calls,
    )
    _report(f"Epsilon train step, batch {batch}, features (49, 64), "
            f"hidden 128, 4 heads, {num_labels} labels, 64-d vectors",
            medians, repeats, calls)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=7,
                        help="Alternated repetitions (the median is shown).")
    parser.add_argument("--calls", type=int, default=10,
                        help="Calls a repetition.")
    parser.add_argument("--num_labels", type=int, default=250)
    parser.add_argument("--no_train_step", action="store_true",
                        help="Time the layers only.")
    args = parser.parse_args(argv)
    print(machine_line(np, tf, keras), flush=True)
    print(f"TensorFlow threads: intra-op "
          f"{tf.config.threading.get_intra_op_parallelism_threads()}, "
          f"inter-op "
          f"{tf.config.threading.get_inter_op_parallelism_threads()} "
          f"(0: TensorFlow's default)", flush=True)
    bench_layers(args.batch, args.dropout, args.repeats, args.calls)
    if not args.no_train_step:
        bench_train_step(args.batch, args.num_labels, args.repeats,
                         args.calls)


if __name__ == "__main__":
    main()
