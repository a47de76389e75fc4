"""Linear probe on the label-held-out task: the reference that located
the slow learning (BUILD_NOTES.md, "Learning on release-shaped data").

A single Dense map from mean+max pooled region features to the word space,
trained with the package's hinge ranking loss on the held-out task of
`benchmarks/tune_release_shaped.py --max_train=4000` (run
`benchmarks/diagnose_release_shaped.py` once first: it caches the arrays).
Options per run: feats ("std": standardized on the training images, as
ESZSL does, or "raw"), norm (cosine scoring), scale, loss ("hinge",
"smooth", "sq", "bce"), lr, steps, labels ("raw", "center", "whiten"),
hidden, ln, M (vectors, max over them).

    python benchmarks/probe_release_shaped.py "std:{}" "raw:{'feats':'raw'}"
"""

import ast
import json
import os
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from epsilon_tf.labels import LabelSpace
from epsilon_tf.losses.ranking import hinge_ranking, smooth_ranking
from epsilon_tf.metrics.ranking_metrics import mean_average_precision as mAP

space = LabelSpace.load("/tmp/epsilon_tune/heldout-4000-0")
ns = len(space.seen)
pc = "/tmp/diag_pooled.npz"
if not os.path.exists(pc):
    z = np.load("/tmp/diag_arrays.npz")

    def pool(F):
        out = []
        for i in range(0, len(F), 200):
            f = F[i : i + 200].astype(np.float32)
            out.append(np.concatenate([f.mean(1), f.max(1)], 1))
        return np.concatenate(out)

    np.savez(
        pc, Xtr=pool(z["Ftr"]), Ytr=z["Ltr"], Xte=pool(z["Fte"]), Yte=z["Lte"]
    )
z = np.load(pc)
Xtr, Ytr, Xte, Yte = z["Xtr"], z["Ytr"].astype(np.float32), z["Xte"], z["Yte"]
RAW = (Xtr.copy(), Xte.copy())
mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
Xtr = (Xtr - mu) / sd
Xte = (Xte - mu) / sd
STD = (Xtr, Xte)
U = space.vectors / np.linalg.norm(space.vectors, axis=1, keepdims=True)


def run(
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


for r in sys.argv[1:]:
    name, kw = r.split(":", 1) if ":" in r else (r, "{}")
    run(name, **ast.literal_eval(kw))
