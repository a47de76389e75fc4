"""Profile of the release preset's train step, at each family feature shape.

`bench_train_step` times the paper-sized default `ModelConfig`; this times
the step that `train.py --preset=release` (and `--dataset=NAME` on any
release-shaped world) actually runs: `RELEASE_PRESET`'s model, loss and
batch, 925 seen labels (NUS-WIDE's), 300-d word vectors, one device, and
the trainer's own `Task.train_step` (`benchmarks.common.TrainStep`).

For each feature shape (196x512 VGG19 conv5, 49x2048 ResNet layer4,
197x768 ViT tokens) it times, interleaved in one process so the ratios
compare like with like on a shared machine:

- `shipped`: the preset as it ships;
- `xla`: the same step with `jit_compile=True`;
- `bf16`: the Keras policy "mixed_bfloat16" (`--mixed_precision`);
- `hinge`: the pairwise hinge loss in place of the listwise one;
- `no_label_term`: the per-label ranking term off (`label_weight=0`);
- `no_dropout`: token and attention dropout off;
- `gpa_only` / `gfp_only`: one branch (what the other branch costs).

Each variant's ms/step is the median of `--rounds` rounds of `--steps`
timed steps (after `--warmup` untimed ones), and its ratio is to
`shipped` in the same round. A run's other costs (the ESZSL warm start,
validation, test scoring) are in its `metrics.json` `timings_seconds`.

Not a test. Example:

    python -m benchmarks.bench_preset_step
    python -m benchmarks.bench_preset_step --shapes=49x2048 --rounds=2
"""

import argparse
import dataclasses
import statistics

from benchmarks.common import (
    EMBEDDING_DIM,
    NUS_WIDE_SEEN,
    TrainStep,
    machine_line,
    quiet_tensorflow,
)

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from epsilon_tf.config import RELEASE_PRESET, preset_configs  # noqa: E402

SHAPES = ("196x512", "49x2048", "197x768")
VARIANTS = ("shipped", "xla", "bf16", "hinge", "no_label_term",
            "no_dropout", "gpa_only", "gfp_only")


def variant_configs(name, feature_shape):
    """(ModelConfig, LossConfig, TrainConfig, jit, policy) of a variant."""
    overrides = {
        "gpa_only": {"branches": "gpa"},
        "gfp_only": {"branches": "gfp"},
        "no_dropout": {"dropout": 0.0, "token_dropout": 0.0},
    }.get(name, {})
    model, loss, train = preset_configs(RELEASE_PRESET, feature_shape,
                                        overrides)
    if name == "no_label_term":
        loss = dataclasses.replace(loss, label_weight=0.0)
    elif name == "hinge":
        loss = dataclasses.replace(loss, form="hinge")
    policy = "mixed_bfloat16" if name == "bf16" else "float32"
    return model, loss, train, name == "xla", policy


def build_steps(feature_shape, names, num_labels):
    """One `TrainStep` per variant (each with its own model)."""
    steps = {}
    for name in names:
        model, loss, train, jit, policy = variant_configs(name, feature_shape)
        keras.mixed_precision.set_global_policy(policy)
        try:
            steps[name] = TrainStep(
                train.batch_size, jit, model_config=model, loss_config=loss,
                train_config=train, num_labels=num_labels,
                embedding_dim=EMBEDDING_DIM,
            )
        finally:
            keras.mixed_precision.set_global_policy("float32")
    return steps


def profile_shape(feature_shape, args):
    """Prints and returns {variant: [ms/step per round]} for one shape."""
    steps = build_steps(feature_shape, args.variants, args.num_labels)
    for step in steps.values():  # tracing, XLA compilation, warm-up
        step.run(args.warmup)
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            seconds, _, _, done = step.time(args.steps, 1)
            times[name].append(seconds * 1e3)
    batch = next(iter(steps.values())).batch
    shipped = times.get("shipped")
    print(f"feature shape {feature_shape[0]}x{feature_shape[1]}, batch "
          f"{batch}, {args.num_labels} seen labels "
          f"(median of {args.rounds} rounds x {args.steps} steps):")
    for name, values in times.items():
        ms = statistics.median(values)
        ratio = ""
        if shipped and name != "shipped":
            per_round = [v / s for v, s in zip(values, shipped)]
            ratio = (f"  {statistics.median(per_round):5.2f}x shipped"
                     f" (rounds {min(per_round):.2f}-{max(per_round):.2f})")
        print(f"  {name:<14} {ms:8.1f} ms/step {batch / ms * 1e3:8.1f} "
              f"images/s{ratio}", flush=True)
    return times


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES),
                        help="Comma-separated NxC feature shapes.")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"Comma-separated, of {', '.join(VARIANTS)}.")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num_labels", type=int, default=NUS_WIDE_SEEN)
    args = parser.parse_args(argv)
    args.shapes = [tuple(int(v) for v in s.split("x"))
                   for s in args.shapes.split(",") if s]
    args.variants = [v for v in args.variants.split(",") if v]
    for name in args.variants:
        if name not in VARIANTS:
            parser.error(f"--variants: expected names among "
                         f"{', '.join(VARIANTS)}; found {name!r}")
    if min(args.steps, args.warmup, args.rounds) < 1:
        parser.error("--steps, --warmup and --rounds must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    print(machine_line(np, tf, keras, gpus=True))
    return {shape: profile_shape(shape, args) for shape in args.shapes}


if __name__ == "__main__":
    main()
