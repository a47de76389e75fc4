"""In-memory learning-speed diagnosis on the label-held-out task.

The exploration loop behind the diagnosis table in docs/tuning.md ("Why
Epsilon learned slowly"): a plain training loop (AdamW, warmup + cosine, the
package's RankingLoss) over the held-out task that
`research/tune_release_shaped.py --max_train=4000` writes first (train
split of nus_like only: 844 tags train, 81 tags held out, the validation
bucket's images as tune-test). It prints, every quarter of the run, the
training loss, the seen-tag mAP and the held-out-tag (ZSL) mAP, in %.

    python -m research.tune_release_shaped --max_train=4000 --runs=
    python -m research.diagnose_release_shaped \\
        "gfp:{'branches':'gfp','gfp_input':'features','gfp_pooled_norm':True}"

Each argument is NAME:{ModelConfig fields, plus 'lr', 'steps', 'batch',
'warm', 'wd', 'loss_kw'}. With `--linear`, the same task is run by a
linear probe on standardized mean+max pooled features (the reference
that located the problem: ESZSL's input).

`--task_dir` is the task (default: the one of `--max_train=4000`, seed
0, under `--work_dir`, itself `cache/research` by default), `--arrays`
the cache of its arrays in memory order (default:
`WORK_DIR/diag_arrays.npz`), which `probe_release_shaped` reads too.
"""

import argparse
import json
import os
import sys
import time

from research.common import (
    add_held_out_arguments,
    held_out_paths,
    run_specs,
)

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from epsilon_tf.config import ModelConfig  # noqa: E402
from epsilon_tf.data.readers.native_tfrecord import native_source  # noqa: E402
from epsilon_tf.labels import LabelSpace  # noqa: E402
from epsilon_tf.losses.ranking import RankingLoss  # noqa: E402
from epsilon_tf.metrics.ranking_metrics import (  # noqa: E402
    mean_average_precision as mAP,
)
from epsilon_tf.models import build_epsilon, with_labels  # noqa: E402


def load(task_dir, cache):
    """(space, Ftr, Ltr, Fte, Lte) of the task, cached in `cache`."""
    space = LabelSpace.load(task_dir)
    if not os.path.exists(cache):
        src = native_source(task_dir, space, (3, 5))

        def arr(split):
            F, L = [], []
            for ex in src.split(split).dataset():
                F.append(ex["features"].numpy().astype(np.float16))
                L.append(ex["labels"].numpy().astype(np.int8))
            return np.stack(F), np.stack(L)

        Ftr, Ltr = arr("train")
        Fte, Lte = arr("test")
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        np.savez(cache, Ftr=Ftr, Ltr=Ltr, Fte=Fte, Lte=Lte)
    z = np.load(cache)
    return space, z["Ftr"], z["Ltr"], z["Fte"], z["Lte"]


def run(
    data,
    name,
    steps=200,
    batch=64,
    lr=1e-3,
    warm=20,
    wd=1e-2,
    center=False,
    whiten_eps=0.01,
    loss_kw=None,
    **mk,
):
    space, Ftr, Ltr, Fte, Lte = data
    ns = len(space.seen)
    loss_kw = loss_kw or {}
    keras.utils.set_random_seed(0)
    vec = space.vectors.copy()
    if center:
        u = vec / np.linalg.norm(vec, axis=1, keepdims=True)
        m = u[:ns].mean(0)
        vec = u - m
        if center == "whiten":
            c = np.cov((u[:ns] - m).T)
            ev, evec = np.linalg.eigh(c)
            eps = whiten_eps * ev.max()
            W = evec @ np.diag(1 / np.sqrt(ev + eps)) @ evec.T
            vec = (u - m) @ W
    cfg = ModelConfig(
        feature_shape=Ftr.shape[1:], **{"hidden_dim": 128, "gpa_heads": 4, **mk}
    )
    model = build_epsilon(cfg, vec[:ns])
    from epsilon_tf.training.standardization import fit_standardization

    fit_standardization(
        model,
        (Ftr[i : i + 256].astype(np.float32) for i in range(0, 2048, 256)),
    )
    full = with_labels(model, vec)
    sched = keras.optimizers.schedules.CosineDecay(
        0.0, steps - warm, alpha=0.01, warmup_target=lr, warmup_steps=warm
    )
    opt = keras.optimizers.AdamW(sched, weight_decay=wd)
    lossf = RankingLoss(**{"diversity_weight": 0.1, **loss_kw})

    @tf.function
    def step(x, y):
        with tf.GradientTape() as t:
            out = model(x, training=True)
            terms = lossf.per_example_terms(y, out)
            loss = tf.reduce_mean(terms["ranking"] + terms["diversity"])
        g = t.gradient(loss, model.trainable_variables)
        g, _ = tf.clip_by_global_norm(g, 5.0)
        opt.apply_gradients(zip(g, model.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    t0 = time.time()
    hist = []
    for s in range(steps):
        idx = rng.integers(0, len(Ftr), batch)
        loss_value = step(
            tf.constant(Ftr[idx], tf.float32), tf.constant(Ltr[idx], tf.float32)
        )
        if (s + 1) % (steps // 4) == 0 or s + 1 == steps:
            sc = np.concatenate(
                [
                    full(tf.constant(Fte[i : i + 256], tf.float32))[
                        "scores"
                    ].numpy()
                    for i in range(0, len(Fte), 256)
                ]
            )
            seen = mAP(sc[:, :ns], Lte[:, :ns])
            zsl = mAP(sc[:, ns:], Lte[:, ns:])
            hist.append(
                (
                    s + 1,
                    round(float(loss_value), 3),
                    round(seen * 100, 2),
                    round(zsl * 100, 2),
                )
            )
    print(
        json.dumps(
            {
                "run": name,
                "sec": round(time.time() - t0),
                "hist(step,loss,seen_mAP,heldout_zsl_mAP)": hist,
            }
        ),
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_held_out_arguments(parser, "d128:{'steps':200}")
    args = parser.parse_args(argv)
    data = load(*held_out_paths(args))
    print("loaded", data[1].shape, data[3].shape, flush=True)
    for name, settings in run_specs(args.runs):
        run(data, name, **settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
