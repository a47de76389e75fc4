"""Linear probe on the label-held-out task: the reference that located
the slow learning (docs/tuning.md, "Why Epsilon learned slowly").

A single Dense map from mean+max pooled region features to the word space,
trained with the package's hinge ranking loss on the held-out task of
`python -m research.tune_release_shaped --max_train=4000` (run
`python -m research.diagnose_release_shaped` once first: it caches the
arrays, `--arrays`; the pooled arrays are cached in `--pooled`; both
default to files under `--work_dir`, `cache/research` by default).
Options per run: feats ("std": standardized on the training images, as
ESZSL does, or "raw"), norm (cosine scoring), scale, loss ("hinge",
"smooth", "sq", "bce"), lr, steps, labels ("raw", "center", "whiten"),
hidden, ln, M (vectors, max over them).

    python -m research.probe_release_shaped "std:{}" "raw:{'feats':'raw'}"
"""

import argparse
import json
import os
import sys

from research.common import (
    add_held_out_arguments,
    held_out_paths,
    run_specs,
)

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from epsilon_tf.labels import LabelSpace  # noqa: E402
from epsilon_tf.losses.ranking import (  # noqa: E402
    hinge_ranking,
    smooth_ranking,
)
from epsilon_tf.metrics.ranking_metrics import (  # noqa: E402
    mean_average_precision as mAP,
)


def load(task_dir, arrays, pooled):
    """The probe's data: label count, unit word vectors, raw and
    standardized pooled features, labels."""
    space = LabelSpace.load(task_dir)
    if not os.path.exists(pooled):
        z = np.load(arrays)

        def pool(F):
            out = []
            for i in range(0, len(F), 200):
                f = F[i : i + 200].astype(np.float32)
                out.append(np.concatenate([f.mean(1), f.max(1)], 1))
            return np.concatenate(out)

        os.makedirs(os.path.dirname(os.path.abspath(pooled)), exist_ok=True)
        np.savez(
            pooled, Xtr=pool(z["Ftr"]), Ytr=z["Ltr"], Xte=pool(z["Fte"]),
            Yte=z["Lte"],
        )
    z = np.load(pooled)
    Xtr, Ytr, Xte, Yte = (
        z["Xtr"], z["Ytr"].astype(np.float32), z["Xte"], z["Yte"]
    )
    raw = (Xtr.copy(), Xte.copy())
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    std = ((Xtr - mu) / sd, (Xte - mu) / sd)
    U = space.vectors / np.linalg.norm(space.vectors, axis=1, keepdims=True)
    return {"ns": len(space.seen), "U": U, "RAW": raw, "STD": std,
            "Ytr": Ytr, "Yte": Yte}


def run(
    data,
    name,
    feats="std",
    norm=True,
    scale=5.0,
    loss="hinge",
    lr=1e-3,
    steps=600,
    batch=64,
    labels="raw",
    eps=0.01,
    hidden=0,
    margin=1.0,
    act="gelu",
    ln=False,
    M=1,
):
    ns, U, Ytr, Yte = data["ns"], data["U"], data["Ytr"], data["Yte"]
    RAW, STD = data["RAW"], data["STD"]
    tf.random.set_seed(0)
    rng = np.random.default_rng(0)
    Xtr, Xte = RAW if feats == "raw" else STD
    W = U.copy()
    if labels != "raw":
        m = W[:ns].mean(0)
        W = W - m
        if labels == "whiten":
            ev, evec = np.linalg.eigh(np.cov(W[:ns].T))
            W = W @ evec @ np.diag(1 / np.sqrt(ev + eps * ev.max())) @ evec.T
        W = W / np.linalg.norm(W, axis=1, keepdims=True)
    W = tf.constant(W, tf.float32)
    layers = []
    if hidden:
        layers.append(tf.keras.layers.Dense(hidden, activation=act))
    if ln:
        layers.append(tf.keras.layers.LayerNormalization())
    layers.append(tf.keras.layers.Dense(W.shape[1] * M))
    layers.append(tf.keras.layers.Reshape((M, W.shape[1])))
    net = tf.keras.Sequential(layers)
    opt = tf.keras.optimizers.Adam(lr)

    def score(x, Wk):
        s = net(x)
        if norm:
            s = tf.math.l2_normalize(s, -1)
        return scale * tf.reduce_max(tf.einsum("bme,ke->bmk", s, Wk), 1)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as t:
            sc = score(x, W[:ns])
            if loss == "hinge":
                loss_value = tf.reduce_mean(hinge_ranking(y, sc, margin))
            elif loss == "smooth":
                loss_value = tf.reduce_mean(smooth_ranking(y, sc))
            elif loss == "sq":
                loss_value = tf.reduce_mean(
                    tf.square(sc - y) * tf.cast(y != 0, tf.float32)
                )
            elif loss == "bce":
                loss_value = tf.reduce_mean(
                    tf.nn.sigmoid_cross_entropy_with_logits(
                        tf.cast(y > 0, tf.float32), sc
                    )
                )
        g = t.gradient(loss_value, net.trainable_variables)
        opt.apply_gradients(zip(g, net.trainable_variables))
        return loss_value

    hist = []
    for s in range(steps):
        idx = rng.integers(0, len(Xtr), batch)
        loss_value = step(Xtr[idx], Ytr[idx])
        if (s + 1) % (steps // 3) == 0:
            sc = score(Xte, W).numpy()
            hist.append(
                (
                    s + 1,
                    round(float(loss_value), 3),
                    round(mAP(sc[:, :ns], Yte[:, :ns]) * 100, 2),
                    round(mAP(sc[:, ns:], Yte[:, ns:]) * 100, 2),
                )
            )
    print(json.dumps({"run": name, "hist": hist}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_held_out_arguments(parser, "raw:{'feats':'raw'}")
    parser.add_argument(
        "--pooled", default=None,
        help="Cache of the pooled arrays (default: "
             "WORK_DIR/diag_pooled.npz).",
    )
    args = parser.parse_args(argv)
    pooled = args.pooled or os.path.join(args.work_dir, "diag_pooled.npz")
    data = load(*held_out_paths(args), pooled)
    for name, settings in run_specs(args.runs):
        run(data, name, **settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
