"""Benchmark of `epsilon_tf.metrics.evaluate_scores` against the reference.

Generates a seeded random score/label matrix of benchmark size (default:
NUS-WIDE GZSL, 107,859 images x 1,006 labels, 81 of them unseen; about
2.5% positives, some unannotated (0) entries, columns without positives,
all-zero columns, images without positives and many exactly tied scores)
and times:

(a) the straightforward reference: a per-label loop over scikit-learn's
    `average_precision_score` on the +1/-1 rows, and a full stable
    `np.argsort` per image for the top-K (ZSL and GZSL);
(b) `evaluate_scores`.

It prints both times, the speed-up and the largest absolute difference
over every metric (must be <= 1e-6).

`--open_images` uses the Open Images GZSL size (125,456 x 7,586, 400
unseen, K = 10, 20, sparse annotations), skips the (very slow) reference
unless `--reference`, spot-checks exactness on a sample instead, and
reports the peak resident memory during `evaluate_scores` relative to the
float32 score matrix. `--memory_budget_mb` streams the rows batch by batch
through a `ScoreBuffer` with that budget (spilling to memmap files), then
evaluates the memmaps, reporting the peak resident memory as well.

Not a test. Examples:

    python -m benchmarks.bench_eval
    python -m benchmarks.bench_eval --images 20000 --labels 500 --ks 3,5
    python -m benchmarks.bench_eval --open_images
    python -m benchmarks.bench_eval --open_images --memory_budget_mb 512
    python -m benchmarks.bench_eval --open_images --variant=biam_openimages
"""

import argparse
import os
import time

import numpy as np

from benchmarks.common import PeakRss, gib, machine_line
from epsilon_tf.metrics import (
    ScoreBuffer,
    average_precision_per_label,
    evaluate_scores,
    top_k_indices,
)

NUS_WIDE = {"images": 107_859, "labels": 1_006, "unseen": 81, "ks": "3,5"}
OPEN_IMAGES = {
    "images": 125_456,
    "labels": 7_586,
    "unseen": 400,
    "ks": "10,20",
    "pos_rate": 0.002,
    "zero_rate": 0.99,
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--labels", type=int, default=None)
    parser.add_argument(
        "--unseen",
        type=int,
        default=None,
        help="Last N labels are unseen (ZSL block); 0 for one 'all' block.",
    )
    parser.add_argument("--ks", type=str, default=None, help="e.g. 3,5")
    parser.add_argument(
        "--pos_rate", type=float, default=None, help="Fraction of +1."
    )
    parser.add_argument(
        "--zero_rate",
        type=float,
        default=None,
        help="Fraction of the non-positive entries that are 0.",
    )
    parser.add_argument(
        "--tie_rate",
        type=float,
        default=0.05,
        help="Fraction of scores rounded to 1 decimal (exact ties).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_rows", type=int, default=4096)
    parser.add_argument("--num_threads", type=int, default=None)
    parser.add_argument(
        "--repeats", type=int, default=3, help="Timed evaluate_scores runs."
    )
    parser.add_argument(
        "--open_images",
        action="store_true",
        help="Open Images GZSL size; reports peak memory.",
    )
    parser.add_argument(
        "--memory_budget_mb",
        type=float,
        default=None,
        help="Stream through a ScoreBuffer with this RAM budget.",
    )
    parser.add_argument(
        "--reference",
        dest="reference",
        action="store_true",
        default=None,
        help="Run the reference (default: on unless --open_images).",
    )
    parser.add_argument(
        "--skip_reference", dest="reference", action="store_false"
    )
    parser.add_argument(
        "--variant",
        default="lesa",
        choices=["lesa", "biam_openimages"],
        help="Evaluation variant; the reference and the spot check are "
        "LESA's, so they run for 'lesa' only.",
    )
    parser.add_argument("--spot_labels", type=int, default=24)
    parser.add_argument("--spot_rows", type=int, default=2000)
    args = parser.parse_args(argv)
    preset = dict(OPEN_IMAGES if args.open_images else NUS_WIDE)
    preset.setdefault("pos_rate", 0.025)
    preset.setdefault("zero_rate", 0.01)
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.ks = tuple(int(k) for k in str(args.ks).split(",") if k)
    if args.reference is None:
        args.reference = not args.open_images and args.memory_budget_mb is None
    return args


# ---------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------


def make_batch(args, index):
    """Rows [index * batch_rows, ...) of the seeded benchmark matrix."""
    start = index * args.batch_rows
    rows = min(args.batch_rows, args.images - start)
    rng = np.random.default_rng([args.seed, index])
    num_labels = args.labels
    u = rng.random((rows, num_labels), dtype=np.float32)
    labels = np.where(u < args.pos_rate, 1, -1).astype(np.int8)
    v = rng.random((rows, num_labels), dtype=np.float32)
    labels[(v < args.zero_rate) & (labels != 1)] = 0
    no_positive = labels[:, 5::97]  # a view: columns without positives
    no_positive[no_positive == 1] = -1
    labels[:, 7::211] = 0  # columns never annotated
    scores = rng.standard_normal((rows, num_labels), dtype=np.float32)
    scores += 1.5 * (labels == 1)
    tie = rng.random((rows, num_labels), dtype=np.float32) < args.tie_rate
    scores[tie] = np.round(scores[tie], 1)
    return scores, labels


def num_batches(args):
    return -(-args.images // args.batch_rows)


def make_matrix(args):
    scores = np.empty((args.images, args.labels), np.float32)
    labels = np.empty((args.images, args.labels), np.int8)
    for b in range(num_batches(args)):
        s, lab = make_batch(args, b)
        start = b * args.batch_rows
        scores[start : start + len(s)] = s
        labels[start : start + len(s)] = lab
    return scores, labels


def unseen_mask(args):
    if not args.unseen:
        return None
    mask = np.zeros(args.labels, dtype=bool)
    mask[args.labels - args.unseen :] = True
    return mask


# ---------------------------------------------------------------------------
# Reference.
# ---------------------------------------------------------------------------


def reference(scores, labels, ks, mask):
    """The straightforward evaluation: sklearn per label + full argsort."""
    from sklearn.metrics import average_precision_score

    num_labels = scores.shape[1]
    ap = np.zeros(num_labels)
    for j in range(num_labels):
        annotated = labels[:, j] != 0
        y = labels[annotated, j] == 1
        if y.any():
            ap[j] = average_precision_score(y, scores[annotated, j])
    groups = {"all": np.arange(num_labels)}
    if mask is not None:
        groups = {"zsl": np.flatnonzero(mask), "gzsl": np.arange(num_labels)}
    result = {}
    for name, cols in groups.items():
        s = scores if cols.size == num_labels else scores[:, cols]
        lab = labels if cols.size == num_labels else labels[:, cols]
        order = np.argsort(-s, axis=1, kind="stable")[:, : max(ks)]
        hit = np.take_along_axis(lab, order, axis=1) == 1
        npos = np.count_nonzero(lab == 1)
        block = {"map": float(ap[cols].mean())}
        for k in ks:
            tp = np.count_nonzero(hit[:, :k])
            p = tp / (s.shape[0] * k)
            r = tp / npos if npos else 0.0
            block[f"p@{k}"] = p
            block[f"r@{k}"] = r
            block[f"f1@{k}"] = 2 * p * r / (p + r) if p + r else 0.0
        result[name] = block
    return result, ap


def max_difference(result, ref):
    worst = 0.0
    for name, block in ref.items():
        for key, value in block.items():
            worst = max(worst, abs(result[name][key] - value))
    return worst


def spot_check(args, scores, labels):
    """Exactness on a sample: AP of some labels, top-K of some rows."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(args.seed + 1)
    cols = rng.choice(args.labels, size=min(args.spot_labels, args.labels))
    cols = np.sort(cols)
    fast = average_precision_per_label(scores[:, cols], labels[:, cols])
    worst = 0.0
    for i, j in enumerate(cols):
        annotated = labels[:, j] != 0
        y = labels[annotated, j] == 1
        ref = average_precision_score(y, scores[annotated, j]) if y.any() else 0
        worst = max(worst, abs(fast[i] - ref))
    rows = np.sort(
        rng.choice(args.images, size=min(args.spot_rows, args.images))
    )
    sub = np.asarray(scores[rows])
    k = max(args.ks)
    same = np.array_equal(
        top_k_indices(sub, k),
        np.argsort(-sub, axis=1, kind="stable")[:, :k],
    )
    print(
        f"spot check: AP of {cols.size} labels vs sklearn, max |diff| = "
        f"{worst:.2e}; top-{k} of {rows.size} rows equal to the stable "
        f"argsort: {same}"
    )


def print_result(result):
    for name in ("zsl", "gzsl", "all"):
        if name in result:
            block = result[name]
            text = ", ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in block.items()
            )
            print(f"  {name}: {text}")


def main(argv=None):
    args = parse_args(argv)
    print(machine_line(np))
    print(
        f"matrix: {args.images:,} images x {args.labels:,} labels "
        f"(unseen {args.unseen}), ks={args.ks}, pos_rate={args.pos_rate}, "
        f"zero_rate={args.zero_rate}, tie_rate={args.tie_rate}, "
        f"seed={args.seed}, variant={args.variant}"
    )
    f32_bytes = args.images * args.labels * 4
    print(f"float32 score matrix: {gib(f32_bytes):.2f} GiB")
    mask = unseen_mask(args)
    buffer = None
    t0 = time.perf_counter()
    if args.memory_budget_mb is not None:
        budget = int(args.memory_budget_mb * 2**20)
        with PeakRss() as mem_fill:
            buffer = ScoreBuffer(num_images=None, memory_budget_bytes=budget)
            for b in range(num_batches(args)):
                buffer.append(*make_batch(args, b))
            scores, labels = buffer.finalize()
        print(
            f"streamed through ScoreBuffer (budget {args.memory_budget_mb} "
            f"MiB): spilled={buffer.spilled}, "
            f"{time.perf_counter() - t0:.1f} s, peak RSS while filling "
            f"{gib(mem_fill.peak):.2f} GiB (anonymous "
            f"{gib(mem_fill.peak_anon):.2f} GiB; the rest is page cache of "
            "the memmap files)"
        )
    else:
        scores, labels = make_matrix(args)
        print(f"generated in {time.perf_counter() - t0:.1f} s")

    walls, cpus = [], []
    for repeat in range(args.repeats):
        with PeakRss() as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            result = evaluate_scores(
                scores,
                labels,
                ks=args.ks,
                unseen_mask=mask,
                variant=args.variant,
                num_threads=args.num_threads,
            )
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        if repeat == 0:
            first_mem = mem
    fast_time, fast_cpu = float(np.median(walls)), float(np.median(cpus))
    print(
        f"evaluate_scores: median of {args.repeats}: {fast_time:.3f} s wall, "
        f"{fast_cpu:.3f} s CPU (all wall: "
        f"{', '.join(f'{w:.3f}' for w in walls)}; load average "
        f"{os.getloadavg()[0]:.1f})"
    )
    print_result(result)
    mem = first_mem
    print(
        f"memory: RSS before {gib(mem.start):.2f} GiB, peak during "
        f"evaluate_scores {gib(mem.peak):.2f} GiB = "
        f"{mem.peak / f32_bytes:.2f}x the float32 score matrix "
        f"(extra over inputs {gib(mem.peak - mem.start):.2f} GiB = "
        f"{(mem.peak - mem.start) / f32_bytes:.2f}x; anonymous peak "
        f"{gib(mem.peak_anon):.2f} GiB)"
    )

    if args.variant != "lesa":
        print("(no reference or spot check: they are LESA's)")
    elif args.reference:
        t0, c0 = time.perf_counter(), time.process_time()
        ref, _ = reference(
            np.asarray(scores), np.asarray(labels), args.ks, mask
        )
        ref_time = time.perf_counter() - t0
        ref_cpu = time.process_time() - c0
        print(
            "reference (sklearn per label + full stable argsort): "
            f"{ref_time:.2f} s wall, {ref_cpu:.2f} s CPU (load average "
            f"{os.getloadavg()[0]:.1f})"
        )
        print(
            f"speed-up: {ref_time / fast_time:.1f}x wall, "
            f"{ref_cpu / fast_cpu:.1f}x CPU"
        )
        diff = max_difference(result, ref)
        print(
            f"max |difference| over all metrics: {diff:.2e} "
            f"({'OK' if diff <= 1e-6 else 'MISMATCH'})"
        )
    else:
        spot_check(args, scores, labels)
    if buffer is not None:
        del scores, labels
        paths = buffer.spill_paths
        buffer.close()
        left = [p for p in paths if os.path.exists(p)]
        print(f"ScoreBuffer closed; spill files left: {len(left)}")


if __name__ == "__main__":
    main()
