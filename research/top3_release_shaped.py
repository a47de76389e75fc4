"""Where each image's top 3 goes: a finished run against ESZSL.

The diagnosis behind "GZSL F1@3" in docs/worlds.md. On the label-held-out
task of `tune_release_shaped` (train split only), it scores the tune-test
images with a finished run's model (its fused scores and each branch's
own scores) and with ESZSL fitted as every run fits it, and prints for
each score source:

- ZSL / GZSL mAP and F1@3 (the package's exact metrics);
- `seen F1@3`: the top 3 among the seen tags only, against the seen tags
  (how well the per-image ranking of the labels it was trained on holds);
- `unseen@3`: the share of held-out tags among the GZSL top 3, beside their
  share of the positives;
- `offset c`: GZSL F1@3 (and the held-out share of the top 3) with the
  held-out tags' scores raised by c times the mean per-image score spread,
  a probe of whether a seen bias is what holds GZSL F1@3 back;
- per band of training frequency (the seen tags ranked by their training
  positives: 1-20, 21-100, 101-400, the rest), the share of the seen-only
  top 3 picked from the band and the precision of those picks.

    python -m research.tune_release_shaped --member=nus_like \\
        --runs=lin_eszsl,lin_lr0 --epochs=4
    python -m research.top3_release_shaped --member=nus_like \\
        --runs=lin_eszsl:4,lin_lr0:1

Each run is NAME:EPOCHS (default 4), the directory `tune_release_shaped`
wrote for it (`lin_lr0` trains at a learning rate of 1e-12 for one epoch:
the model as initialized, warm start included). The ESZSL scores are
cached under the task directory.
"""

import argparse
import os
import sys

import numpy as np

from benchmarks.common import add_size_arguments, quiet_tensorflow
from epsilon_tf.metrics.ranking_metrics import top_k_indices
from research.common import add_work_dir_argument
from research.tune_release_shaped import held_out_task, run_dir, task_dir

BANDS = ((0, 20), (20, 100), (100, 400), (400, None))
SOURCES = (("fused", "scores"), ("GPA", "local_scores"),
           ("GFP", "global_scores"))
OFFSETS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)


def band_picks(scores, labels, train_positives, k=3):
    """[(band, share of the top-k picks, precision of those picks)]."""
    rank = np.empty(len(train_positives), int)
    rank[np.argsort(-train_positives, kind="stable")] = np.arange(
        len(train_positives))
    picks = top_k_indices(scores, k)
    hits = np.take_along_axis(labels == 1, picks, axis=1)
    picked_rank = rank[picks]
    rows = []
    for lo, hi in BANDS:
        inside = (picked_rank >= lo) & (
            picked_rank < (len(rank) if hi is None else hi))
        name = f"{lo + 1}-{hi}" if hi is not None else f"{lo + 1}+"
        rows.append((name, inside.mean(),
                     hits[inside].mean() if inside.any() else float("nan")))
    return rows


def offset_sweep(scores, labels, unseen, offsets=OFFSETS, k=3):
    """[(c, GZSL F1@k, held-out share of the top k)] with the held-out
    tags' scores raised by c times the mean per-image score spread.

    A seen bias that holds GZSL F1@k back shows as a c > 0 above c = 0.
    A test-time probe of the diagnosis, not a method: the published
    protocol scores every label as the model does.
    """
    from epsilon_tf.metrics.ranking_metrics import evaluate_scores

    spread = scores.std(axis=1).mean()
    rows = []
    for c in offsets:
        shifted = scores + c * spread * unseen[None, :]
        gzsl = evaluate_scores(shifted, labels, ks=(k,),
                               unseen_mask=unseen)["gzsl"]
        rows.append((c, gzsl[f"f1@{k}"],
                     float(unseen[top_k_indices(shifted, k)].mean())))
    return rows


def describe(name, scores, labels, unseen, train_positives):
    """One printed block of a score source; returns its figures."""
    from epsilon_tf.metrics.ranking_metrics import (
        evaluate_scores,
        precision_recall_f1_at_k,
    )

    result = evaluate_scores(scores, labels, ks=(3,), unseen_mask=unseen)
    seen = ~unseen
    picks = top_k_indices(scores, 3)
    row = {
        "zsl_map": result["zsl"]["map"], "zsl_f1@3": result["zsl"]["f1@3"],
        "gzsl_map": result["gzsl"]["map"],
        "gzsl_f1@3": result["gzsl"]["f1@3"],
        "seen_f1@3": precision_recall_f1_at_k(
            scores[:, seen], labels[:, seen], 3)["f1"],
        "unseen@3": float(unseen[picks].mean()),
        "bands": band_picks(scores[:, seen], labels[:, seen],
                            train_positives),
        "offsets": offset_sweep(scores, labels, unseen),
    }
    print(f"{name:<22} {100 * row['zsl_map']:7.2f} "
          f"{100 * row['zsl_f1@3']:7.2f} {100 * row['gzsl_map']:7.2f} "
          f"{100 * row['gzsl_f1@3']:7.2f} {100 * row['seen_f1@3']:7.2f} "
          f"{100 * row['unseen@3']:8.1f}  " + "  ".join(
              f"{share * 100:4.0f}% p=" + (
                  f"{precision:.3f}" if share else "  -  ")
              for _, share, precision in row["bands"]))
    print(f"{'':<22} held-out offset c: " + "  ".join(
        f"{c:g}: F1@3 {100 * f1:.2f} ({100 * share:.0f}%)"
        for c, f1, share in row["offsets"]))
    return row


def eszsl_scores(source, cache):
    """ESZSL on the task as `train_and_evaluate` fits it (cached)."""
    if os.path.exists(cache):
        return np.load(cache)
    from epsilon_tf.training.task import fit_eszsl_model

    # The tune runs train with validation_fraction=0.2 (the tune-test
    # images are the 10% bucket).
    baseline = fit_eszsl_model(source, 0.2)
    scores, _ = baseline.score_dataset(source.split("test").dataset(),
                                       source.label_space.vectors)
    scores = np.asarray(scores, np.float32)
    np.save(cache, scores)
    return scores


def model_scores(model_dir, source):
    """{output: [images, labels]} of a run's model on the tune-test images."""
    import keras

    import epsilon_tf.layers  # noqa: F401  (registers the custom layers)
    from epsilon_tf.models import with_labels

    model = with_labels(keras.saving.load_model(
        os.path.join(model_dir, "model.keras")), source.label_space.vectors)
    outputs = {}
    for batch in source.split("test").dataset().batch(256):
        result = model(batch["features"], training=False)
        for _, key in SOURCES:
            if key in result:
                outputs.setdefault(key, []).append(np.asarray(result[key]))
    return {key: np.concatenate(v) for key, v in outputs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="lin_eszsl:4",
                        help="Comma-separated NAME:EPOCHS of finished runs.")
    parser.add_argument("--member", default="nus_like")
    parser.add_argument("--max_train", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held_out", type=int, default=81)
    parser.add_argument("--min_positives", type=int, default=20)
    parser.add_argument("--cache_dir", default="cache")
    add_work_dir_argument(parser)
    add_size_arguments(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow()

    source = held_out_task(
        args.cache_dir, args.work_dir, args.max_train, seed=args.seed,
        sizes=(args.num_train, args.num_test), held_out=args.held_out,
        min_positives=args.min_positives, member=args.member)
    train_labels = np.concatenate([
        b["labels"].numpy() for b in source.split("train").dataset().batch(
            1024)])
    train_positives = (train_labels == 1).sum(0)
    labels = np.concatenate([
        b["labels"].numpy() for b in source.split("test").dataset().batch(
            1024)])
    unseen = source.label_space.unseen_mask
    cache = os.path.join(task_dir(args.work_dir, args.max_train, args.seed,
                                  args.member), "eszsl_scores.npy")
    share = (labels[:, unseen] == 1).sum() / (labels == 1).sum()
    print(f"{args.member}: {len(labels)} tune-test images; held-out tags "
          f"are {100 * share:.1f}"
          "% of the positives. Values in %; bands of training frequency "
          "(rank 1-20, 21-100, 101-400, 401+): share of the seen-only top 3,"
          " p = precision of those picks")
    print(f"{'scores':<22} {'ZSL mAP':>7} {'F1@3':>7} {'GZ mAP':>7} "
          f"{'F1@3':>7} {'seenF1':>7} {'unseen@3':>8}")
    rows = {"ESZSL": describe(
        "ESZSL", eszsl_scores(source, cache),
        labels, unseen, train_positives)}
    for spec in (s for s in args.runs.split(",") if s):
        name, _, epochs = spec.partition(":")
        model_dir = run_dir(args.work_dir, name, int(epochs or 4),
                            args.max_train, args.seed, args.member)
        if not os.path.exists(os.path.join(model_dir, "model.keras")):
            raise SystemExit(
                f"top3_release_shaped: error: --runs={spec}: no finished "
                f"run at {model_dir} (run tune_release_shaped "
                f"--runs={name} --epochs={epochs or 4} first)")
        outputs = model_scores(model_dir, source)
        for label, key in SOURCES:
            if key in outputs:
                rows[f"{name} {label}"] = describe(
                    f"{name} {label}", outputs[key], labels, unseen,
                    train_positives)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
