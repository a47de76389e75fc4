"""Figure 1, measured: how complete Epsilon's, LESA's and BiAM's maps are.

The Epsilon paper's Figure 1 claims Epsilon's region maps cover an object
more completely than LESA's and BiAM's. The generated worlds know where
each label lies (`epsilon_tf.data.worlds.region_truth`), so the claim can
be measured: for each test image and each visible *object* label placed
on k regions, the share of those k regions among the k highest regions of
the model's map for that label (`epsilon_tf.metrics.localization`),
averaged over the pairs. A model's map for a label is the map Figure 1
draws (`epsilon_tf.visualization.label_maps`). Beside the models: the
truth (1), the random-map floor (mean k / P) and the feature energy
(mean |activation| of each region: a map that knows no label, so a
model's map above it has found the label, not only where things are;
`visualization.heatmaps.feature_energy`). "core" repeats the
measure on each blob's half-maximum regions (its visible part: the
outer regions of a blob carry as little as 5% of its peak, below the
region noise); "unseen" is the measure over the unseen labels' pairs.

    python -m benchmarks.bench_completeness --cache_dir=/work/cache_worlds
    python -m benchmarks.bench_completeness --members=nus_like \\
        --run_dirs=epsilon=runs/e,lesa=runs/l,biam=runs/b

Every member holds object labels (`object_fraction` 0.35 to 0.85). By
default the four tuning members are measured; the held-out members
(`--members=all`, or by name) are for the one final evaluation with the
chosen defaults (docs/worlds.md, "Rules") and print in their own rows.
Without `--run_dirs` each model is trained with `train.py`'s presets for
the member (release; release + lesa / biam for the baselines) for the
same `--epochs`, into `--work_dir` (a finished run there is reused). With
`--figure_dir`, one PNG per member draws the true regions beside each
model's map for the first test images (needs matplotlib).
"""

import argparse
import dataclasses
import json
import os
import sys
import time

from benchmarks.common import add_size_arguments, cpu_model, quiet_tensorflow

MODELS = ("epsilon", "lesa", "biam")
NAMES = {"epsilon": "Epsilon", "lesa": "LESA", "biam": "BiAM"}
CORE_SHARE = 0.5
PROGRAM = "bench_completeness"


class UsageError(ValueError):
    """A bad flag or run directory: printed as one `error:` line."""


def _parse_run_dirs(text):
    """`epsilon=DIR,lesa=DIR,biam=DIR` -> dict (any subset of the models)."""
    dirs = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, path = item.partition("=")
        if not sep or key not in MODELS or not path:
            raise UsageError(
                f"--run_dirs: expected MODEL=DIR items with MODEL one of "
                f"{', '.join(MODELS)}; found {item!r}"
            )
        dirs[key] = path
    return dirs


def _load_run(key, path, member, feature_shape):
    """The `model.keras` of a finished run, checked against the member."""
    import keras

    from epsilon_tf.models import model_kind
    from epsilon_tf.training.run_dir import RunDir

    run = RunDir(path)
    if not os.path.isfile(run.keras_model):
        raise UsageError(
            f"--run_dirs: {key}={path} holds no model.keras (expected the "
            "--model_dir of a finished train.py run)"
        )
    if run.has_config():
        with open(run.config, encoding="utf-8") as f:
            dataset = json.load(f).get("DataConfig", {}).get("dataset")
        if dataset and dataset != member:
            raise UsageError(
                f"--run_dirs: {key}={path} was trained on dataset={dataset}, "
                f"but the member measured is {member}"
            )
    model = keras.saving.load_model(run.keras_model)
    kind = model_kind(model)
    if kind != key:
        raise UsageError(
            f"--run_dirs: {key}={path} holds a {kind} model, not {key}"
        )
    shape = tuple(model.inputs[0].shape[1:])
    if shape != tuple(feature_shape):
        raise UsageError(
            f"--run_dirs: {key}={path} takes features of shape {shape}; "
            f"{member}'s are {tuple(feature_shape)}"
        )
    return model


def _train(key, name, source, args):
    """Trains `key` on the member with train.py's presets; its model."""
    import keras

    from epsilon_tf.config import preset_configs
    from epsilon_tf.config.presets import default_preset_names, merged
    from epsilon_tf.training.run import train_and_evaluate
    from epsilon_tf.training.run_dir import RunDir

    preset = merged(default_preset_names(name, key))
    model_cfg, loss_cfg, train_cfg = preset_configs(
        preset, source.feature_shape, model_overrides={"model": key}
    )
    model_dir = os.path.join(args.work_dir, f"{name}-{key}-s{args.seed}")
    train_cfg = dataclasses.replace(
        train_cfg, epochs=args.epochs, min_steps=0, seed=args.seed,
        export=False, model_dir=model_dir,
    )
    train_and_evaluate(model_cfg, loss_cfg, train_cfg, source,
                       baseline=False, chance=False)
    return keras.saving.load_model(RunDir(model_dir).keras_model)


def _pair_maps(map_fn, source, truth, batch_size):
    """A map [M, P] for every truth pair, in the pairs' order.

    Args:
        map_fn: callable `(features [b, N, C], rows, labels)` -> the maps
            [len(rows), P] of label `labels[i]` on image `rows[i]` of the
            batch.

    The records are read in the reader's order (shards interleave); each
    image is found by its id, `test_<index:06d>`.
    """
    import numpy as np

    from epsilon_tf.data.pipeline import input_errors

    out = np.zeros(truth.amplitude.shape, np.float32)
    pairs_of = {}
    for pair, image in enumerate(truth.image_index):
        pairs_of.setdefault(int(image), []).append(pair)
    seen = set()
    with input_errors():
        for batch in source.split("test").dataset().batch(batch_size):
            ids = [v.decode() for v in batch["image_id"].numpy()]
            rows, pairs = [], []
            for row, image_id in enumerate(ids):
                prefix, _, number = image_id.partition("_")
                if prefix != "test" or not number.isdigit():
                    raise RuntimeError(
                        f"test image id {image_id!r} is not test_<index>"
                    )
                seen.add(int(number))
                for pair in pairs_of.get(int(number), ()):
                    rows.append(row)
                    pairs.append(pair)
            if pairs:
                out[pairs] = map_fn(batch["features"], rows,
                                    truth.label[pairs])
    missing = set(pairs_of) - seen
    if missing:
        raise RuntimeError(
            f"{len(missing)} test images of the truth were not read, e.g. "
            f"test_{min(missing):06d}"
        )
    return out


def model_maps(model, label_space):
    """`_pair_maps`' `map_fn` of a model: its Figure 1 map of each label."""
    from epsilon_tf.visualization.label_maps import LabelMaps

    maps_of = LabelMaps(model, label_space)

    def map_fn(features, rows, labels):
        return maps_of(features)[1][rows, labels]

    return map_fn


def energy_maps(token_offset):
    """`_pair_maps`' `map_fn` of the label-blind feature-energy map."""
    from epsilon_tf.visualization.heatmaps import feature_energy

    def map_fn(features, rows, labels):
        return feature_energy(features.numpy()[rows, token_offset:])

    return map_fn


def _measure(pair_maps, truth, unseen):
    from epsilon_tf.metrics.localization import completeness

    core = truth.core(CORE_SHARE)
    row = {"all": completeness(pair_maps, truth.mask),
           "core": completeness(pair_maps, core)}
    picked = unseen[truth.label]
    row["unseen"] = (completeness(pair_maps[picked], truth.mask[picked])
                     if picked.any() else None)
    return row


def _figure(path, truth, pair_maps, space, rows, stats):
    """True regions beside each model's map for the first `rows` images."""
    import numpy as np

    from epsilon_tf.experiments import figures
    from epsilon_tf.metrics.localization import top_k_shares

    first = {}
    for pair, image in enumerate(truth.image_index):
        first.setdefault(int(image), pair)
        if len(first) == rows:
            break
    pairs = np.asarray(list(first.values()), np.int64)
    if pairs.size == 0:
        return None
    labels = [space.names[j] + ("*" if space.unseen_mask[j] else "")
              for j in truth.label[pairs]]
    k = truth.mask[pairs].sum(axis=1)
    panels = [("truth", truth.amplitude[pairs],
               [[f"{lab} (k={int(n)})"] for lab, n in zip(labels, k)])]
    for key, maps in pair_maps.items():
        shares = top_k_shares(maps[pairs], truth.mask[pairs])
        panels.append((NAMES[key], maps[pairs],
                       [[f"{lab}: {s:.2f}"] for lab, s in zip(labels,
                                                              shares)]))
    ids = [f"test_{i:06d}" for i in truth.image_index[pairs]]
    figures.draw_figure1(path, ids, panels, truth.grid_shape)
    stats["figure"] = path
    return path


def _member(name, args, label_dir, sizes, run_dirs):
    import numpy as np

    from epsilon_tf.data.worlds import family, region_truth
    from epsilon_tf.metrics.localization import chance_completeness

    source = family.member_source(args.cache_dir, name, label_dir, **sizes)
    config = family.member_config(name, label_dir, **sizes)
    start = time.time()
    truth = region_truth.object_regions(config, "test")
    if truth.num_pairs == 0:
        return {"pairs": 0}
    unseen = np.asarray(source.label_space.unseen_mask)
    stats = {
        "object_fraction": config.object_fraction,
        "pairs": truth.num_pairs,
        "images": int(np.unique(truth.image_index).size),
        "test_images": source.split("test").num_examples,
        "regions": int(truth.mask.shape[1]),
        "mean_k": float(truth.mask.sum(axis=1).mean()),
        "mean_core_k": float(truth.core(CORE_SHARE).sum(axis=1).mean()),
        "unseen_pairs": int(unseen[truth.label].sum()),
        "dropped": truth.dropped,
        "truth_seconds": round(time.time() - start, 1),
    }
    rows = {"truth": _measure(truth.amplitude, truth, unseen)}
    pair_maps = {}
    for key in args.models:
        if key in run_dirs:
            model = _load_run(key, run_dirs[key], name, source.feature_shape)
        else:
            model = _train(key, name, source, args)
        pair_maps[key] = _pair_maps(model_maps(model, source.label_space),
                                    source, truth, args.batch_size)
        rows[NAMES[key]] = _measure(pair_maps[key], truth, unseen)
    energy = _pair_maps(energy_maps(truth.token_offset), source, truth,
                        args.batch_size)
    rows["feature energy"] = _measure(energy, truth, unseen)
    picked = unseen[truth.label]
    rows["random floor"] = {
        "all": chance_completeness(truth.mask),
        "core": chance_completeness(truth.core(CORE_SHARE)),
        "unseen": (chance_completeness(truth.mask[picked])
                   if picked.any() else None),
    }
    if args.figure_dir:
        os.makedirs(args.figure_dir, exist_ok=True)
        try:
            _figure(os.path.join(args.figure_dir, f"{name}.png"),
                    truth, pair_maps, source.label_space,
                    args.figure_images, stats)
        except ImportError:
            print(f"{name}: no figure (matplotlib is not installed)")
    return {**stats, "rows": rows}


def _print_member(name, held_out, result):
    held = " (held out)" if held_out else ""
    if not result["pairs"]:
        print(f"\n{name}{held}: no object label on the test images")
        return
    print(f"\n{name}{held}: {result['pairs']} (image, object label) pairs on "
          f"{result['images']} of {result['test_images']} test images; "
          f"k = {result['mean_k']:.1f} of {result['regions']} regions on "
          f"average (core: {result['mean_core_k']:.1f}); "
          f"{result['unseen_pairs']} pairs of unseen labels; "
          f"{result['dropped']} blobs off the grid left out", flush=True)
    print(f"{'map':<14} {'all':>6} {'core':>6} {'unseen':>6}")
    for row, values in result["rows"].items():
        cells = " ".join(
            f"{v:6.3f}" if v is not None else f"{'-':>6}"
            for v in (values["all"], values["core"], values["unseen"])
        )
        print(f"{row:<14} {cells}", flush=True)


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", default=None,
                        help="Comma-separated members, or all (default: "
                             "the tuning members).")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="Comma-separated models (epsilon,lesa,biam).")
    parser.add_argument("--run_dirs", default=None,
                        help="MODEL=DIR,... finished train.py runs of one "
                             "member (the others are trained).")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=64,
                        help="Images per forward pass when mapping.")
    parser.add_argument("--cache_dir", default="cache")
    parser.add_argument("--label_dir", default=None)
    parser.add_argument("--work_dir", default="runs/bench_completeness")
    parser.add_argument("--figure_dir", default=None,
                        help="Write <member>.png here.")
    parser.add_argument("--figure_images", type=int, default=4)
    parser.add_argument("--out", default=None, help="write the JSON here")
    add_size_arguments(parser)
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    bad = [m for m in args.models if m not in MODELS]
    if bad or not args.models:
        raise UsageError(f"--models: expected names of {', '.join(MODELS)}; "
                         f"found {args.models}")
    for flag in ("epochs", "batch_size", "figure_images"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag}: expected a positive integer; found "
                             f"{getattr(args, flag)}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _arguments(argv)
        run_dirs = _parse_run_dirs(args.run_dirs)
    except UsageError as e:
        print(f"{PROGRAM}: error: {e}", file=sys.stderr)
        return 2
    quiet_tensorflow()

    from epsilon_tf.data.worlds import family, nus_like

    label_dir = args.label_dir or nus_like.default_label_dir()
    if label_dir is None:
        print(f"{PROGRAM}: error: --label_dir is needed (NUS-WIDE's label "
              "files; ../shared/data/nus_wide was not found)",
              file=sys.stderr)
        return 2
    if args.members == "all":
        names = list(family.TUNING) + sorted(family.HELD_OUT)
    else:
        names = (args.members.split(",") if args.members
                 else list(family.TUNING))
    unknown = [n for n in names if n not in family.MEMBERS]
    if unknown:
        print(f"{PROGRAM}: error: --members: unknown {unknown}; the members "
              f"are {', '.join(family.MEMBERS)}", file=sys.stderr)
        return 2
    if run_dirs and len(names) != 1:
        print(f"{PROGRAM}: error: --run_dirs: the runs are of one member; "
              f"give --members=NAME (found {len(names)} members)",
              file=sys.stderr)
        return 2
    sizes = {k: v for k, v in (("num_train", args.num_train),
                                ("num_test", args.num_test)) if v is not None}
    command = "python -m benchmarks.bench_completeness " + " ".join(argv)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores\n"
          f"command: {command.strip()}", flush=True)
    results = {}
    for name in names:
        try:
            results[name] = _member(name, args, label_dir, sizes, run_dirs)
        except UsageError as e:
            print(f"{PROGRAM}: error: {e}", file=sys.stderr)
            return 2
        _print_member(name, name in family.HELD_OUT, results[name])
    if args.out:
        summary = {"cpu": cpu_model(), "command": command.strip(),
                   "epochs": args.epochs, "seed": args.seed,
                   "core_share": CORE_SHARE,
                   "held_out": sorted(family.HELD_OUT), "members": results}
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
