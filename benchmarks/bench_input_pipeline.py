"""Benchmark of the input pipeline alone against the train step.

Writes the same synthetic NUS-WIDE examples (196x512 float32 region
features, post-ReLU-like with ~60% zeros; 1,000 tags of which 75 are also
concepts and read 0; 81 concepts) twice into a temporary folder:

(a) in LESA's layout: ZLIB-compressed TFRecords with the keys `img_id`,
    `feature` (raw float32 196x512), `label_1k` (raw float32 x 1,000) and
    `label_81` (raw float32 x 81), across `--shards` files whose names
    carry "ZLIB", read with `lesa_nus_wide_split`;
(b) in the project's native format (float16 features, ZLIB, same shard
    count) with `NativeWriter`, read with `native_split`.

It then times, in one process:

- peak resident memory (sampled every 5 ms, and the kernel's high-water
  mark; `common.PeakRss`) while streaming the
  split several times with no shuffle (evaluation path), and with the
  training path at a small and at the default shuffle buffer, next to the
  bytes of float32 features streamed (first, before any model exists);
- the train step (default `jit_compile=False`, synthetic in-memory
  tensors) at each batch size, with `time_train_step` from
  `bench_train_step`;
- `make_dataset(...)` alone (no model), iterated as the trainer calls it
  (`subset="train"`, shuffled with `TrainConfig`'s shuffle buffer,
  `drop_remainder=True`), for both formats and each batch size, and prints
  examples/s and the ratio pipeline / train step with PASS/FAIL against
  2x (the smallest ratio over the passes counts);
- the train step fed by the pipeline (end to end) at the first batch size,
  each next to the same step on in-memory tensors timed just before it.

On a machine with few cores the pipeline and the train step compete for
the same cores; the end-to-end figure shows what that costs.

Not a test. Examples:

    python -m benchmarks.bench_input_pipeline
    python -m benchmarks.bench_input_pipeline --records 2000 --batches 32
"""

import argparse
import dataclasses
import math
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

# The trainer's step as bench_train_step times it (issue 12: it moves to
# benchmarks.common once that script times the Task's step).
from benchmarks.common import PeakRss, machine_line, mib, time_train_step
from epsilon_tf.config import TrainConfig
from epsilon_tf.data.pipeline import make_dataset
from epsilon_tf.data.readers.lesa_tfrecord import lesa_nus_wide_split
from epsilon_tf.data.readers.native_tfrecord import native_split
from epsilon_tf.data.readers.native_writer import NativeWriter
from epsilon_tf.labels import LabelSpace

FEATURE_SHAPE = (196, 512)
NUM_TAGS = 1000
NUM_CONCEPTS = 81
NUM_SEEN = NUM_TAGS - 75  # 925
EMBEDDING_DIM = 300
LESA_PATTERN = "NUS_WIDE_Train_full_feature_ZLIB-{:02d}-of-{:02d}.tfrecords"


# ------------------------------------------------------------------ data
@dataclasses.dataclass
class World:
    label_space: LabelSpace
    seen_tag_index: np.ndarray  # TagList1k position of every seen label
    concept_tags: np.ndarray  # the 75 tag positions that are concepts


def make_world(seed=0):
    rng = np.random.default_rng(seed)
    concept_tags = np.sort(rng.choice(NUM_TAGS, 75, replace=False))
    seen_tag_index = np.setdiff1d(np.arange(NUM_TAGS), concept_tags)
    names = [f"tag{i}" for i in seen_tag_index] + [
        f"concept{i}" for i in range(NUM_CONCEPTS)
    ]
    vectors = rng.standard_normal((len(names), EMBEDDING_DIM)).astype(
        np.float32
    )
    space = LabelSpace.from_arrays(names, vectors, seen=np.arange(NUM_SEEN))
    return World(space, seen_tag_index, concept_tags)


def synthetic_chunks(world, num_records, chunk=200, seed=1):
    """Yields (ids, features f32 [c,196,512], label_1k [c,1000], label_81)."""
    rng = np.random.default_rng(seed)
    for start in range(0, num_records, chunk):
        c = min(chunk, num_records - start)
        feats = rng.standard_normal((c,) + FEATURE_SHAPE, dtype=np.float32)
        feats -= 0.25
        np.maximum(feats, 0.0, out=feats)  # ~60% zeros, like ReLU maps
        label_1k = np.where(rng.random((c, NUM_TAGS)) < 0.02, 1.0, -1.0)
        label_1k[:, world.concept_tags] = 0.0
        label_81 = np.where(rng.random((c, NUM_CONCEPTS)) < 0.05, 1.0, -1.0)
        ids = [f"Flickr/synthetic/{start + i:07d}.jpg" for i in range(c)]
        yield (
            ids,
            feats,
            label_1k.astype(np.float32),
            label_81.astype(np.float32),
        )


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def write_both(world, directory, num_records, shards, native_compression,
               lesa_level=1):
    """Writes the LESA files and the native split; returns their stats.

    The LESA files are ZLIB streams written at `lesa_level` (1 by default,
    to keep the run short; the level changes neither the layout nor the
    reader's work, inflating costs about the same at every level).
    """
    lesa_dir = os.path.join(directory, "lesa")
    native_dir = os.path.join(directory, "native")
    os.makedirs(lesa_dir)
    per_shard = math.ceil(num_records / shards)
    options = tf.io.TFRecordOptions(
        compression_type="ZLIB",
        compression_level=None if lesa_level < 0 else lesa_level,
    )
    lesa_writers = [
        tf.io.TFRecordWriter(
            os.path.join(lesa_dir, LESA_PATTERN.format(i, shards)), options
        )
        for i in range(shards)
    ]
    lesa_seconds = native_seconds = 0.0
    seen_names = [world.label_space.names[i] for i in world.label_space.seen]
    with NativeWriter(
        native_dir, "train", FEATURE_SHAPE, label_names=seen_names,
        feature_dtype="float16", examples_per_shard=per_shard,
        compression=native_compression,
    ) as native:
        index = 0
        for ids, feats, label_1k, label_81 in synthetic_chunks(
            world, num_records
        ):
            start = time.perf_counter()
            for j, image_id in enumerate(ids):
                example = tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            "img_id": _bytes(image_id.encode()),
                            "feature": _bytes(feats[j].tobytes()),
                            "label_1k": _bytes(label_1k[j].tobytes()),
                            "label_81": _bytes(label_81[j].tobytes()),
                        }
                    )
                )
                # Contiguous blocks per shard, like a sharded conversion.
                lesa_writers[(index + j) // per_shard].write(
                    example.SerializeToString()
                )
            lesa_seconds += time.perf_counter() - start
            start = time.perf_counter()
            seen = label_1k[:, world.seen_tag_index]
            for j, image_id in enumerate(ids):
                native.write(image_id, feats[j], seen[j])
            native_seconds += time.perf_counter() - start
            index += len(ids)
    for writer in lesa_writers:
        writer.close()
    return {
        "lesa_dir": lesa_dir,
        "native_dir": native_dir,
        "lesa_bytes": _folder_bytes(lesa_dir),
        "native_bytes": _folder_bytes(native_dir),
        "lesa_write_s": lesa_seconds,
        "native_write_s": native_seconds,
    }


def _folder_bytes(path):
    return sum(
        os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
    )


def readers(world, stats):
    lesa = lesa_nus_wide_split(
        os.path.join(stats["lesa_dir"], "NUS_WIDE_Train_full_feature_ZLIB-*"),
        "train",
        world.label_space,
        world.seen_tag_index,
    )
    native = native_split(stats["native_dir"], "train")
    return {"lesa": lesa, "native": native}


# --------------------------------------------------------------- timing
def train_path_dataset(reader, batch, seed, shuffle_buffer):
    """`make_dataset` as `Trainer._train_dataset` calls it (one replica)."""
    return make_dataset(
        reader,
        batch,
        subset="train",
        validation_fraction=0.1,
        shuffle_seed=seed,
        shuffle_buffer=shuffle_buffer,
        drop_remainder=True,
    )


def consume(dataset):
    """Iterates a batched dataset; returns (examples, seconds)."""
    examples = 0
    start = time.perf_counter()
    for batch in dataset:
        examples += int(batch["labels"].shape[0])
    return examples, time.perf_counter() - start


def end_to_end(step, dataset, steps):
    """Examples/s of the train step fed by `dataset` (after one step)."""
    it = iter(dataset)
    first = next(it)
    step._step(first["features"], first["labels"]).numpy()
    start = time.perf_counter()
    done = 0
    loss = None
    for _ in range(steps):
        try:
            batch = next(it)
        except StopIteration:
            break
        loss = step._step(batch["features"], batch["labels"])
        done += 1
    loss.numpy()
    return done * step.batch / (time.perf_counter() - start)


# ------------------------------------------------------------------ main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--batches", default="32,96")
    parser.add_argument("--passes", type=int, default=2,
                        help="Timed passes per format and batch size.")
    parser.add_argument("--stream_passes", type=int, default=3,
                        help="Passes of the memory check (no shuffle).")
    parser.add_argument("--train_steps", type=int, default=5,
                        help="Timed train steps per batch size.")
    parser.add_argument("--end_to_end_steps", type=int, default=8)
    parser.add_argument("--small_buffer", type=int, default=256,
                        help="Shuffle buffer of the bounded-memory check.")
    parser.add_argument("--native_compression", default="ZLIB",
                        help='"ZLIB", "GZIP" or "none".')
    parser.add_argument("--lesa_compression_level", type=int, default=1,
                        help="zlib level of the LESA files (-1: default).")
    parser.add_argument("--workdir", default=None,
                        help="Parent of the temporary data folder.")
    parser.add_argument("--keep", action="store_true",
                        help="Keep the written files.")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    if args.native_compression.lower() == "none":
        args.native_compression = None
    return args


def main(argv=None):
    args = parse_args(argv)
    print(machine_line(np, tf, keras, gpus=True))
    buffer_default = TrainConfig().shuffle_buffer
    example_f32 = math.prod(FEATURE_SHAPE) * 4
    raw = args.records * example_f32
    directory = tempfile.mkdtemp(prefix="epsilon_bench_", dir=args.workdir)
    try:
        world = make_world()
        stats = write_both(
            world, directory, args.records, args.shards,
            args.native_compression, args.lesa_compression_level,
        )
        print(
            f"data: {args.records} synthetic NUS-WIDE records in "
            f"{args.shards} shards ({mib(raw)} of float32 features); LESA "
            f"ZLIB (level {args.lesa_compression_level}) f32 on disk "
            f"{mib(stats['lesa_bytes'])} (written in "
            f"{stats['lesa_write_s']:.0f} s), native "
            f"{args.native_compression or 'uncompressed'} float16 "
            f"{mib(stats['native_bytes'])} (written in "
            f"{stats['native_write_s']:.0f} s); page cache warm",
            flush=True,
        )
        split_readers = readers(world, stats)
        # First, while the process holds no model: the allocator has not
        # yet cached the memory of earlier work that would mask growth.
        memory_checks(args, split_readers, buffer_default, example_f32)
        run(args, split_readers, buffer_default)
    finally:
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def run(args, split_readers, buffer_default):
    print("train step alone (jit_compile=False, the faster here; synthetic "
          "in-memory tensors):")
    steps = {}
    for batch in args.batches:
        res = time_train_step(
            batch, False, steps=args.train_steps, warmup=2, max_seconds=40
        )
        steps[batch] = res
        print(f"  batch {batch:>3}: {res['examples_per_s']:8.1f} examples/s "
              f"({res['ms_per_step']:.0f} ms/step, {res['timed_steps']} "
              "steps)", flush=True)

    print(f"input pipeline alone (make_dataset as the trainer calls it: "
          f"subset='train', shuffle_buffer={buffer_default}, "
          f"drop_remainder=True; no model):")
    rates = {}
    for name, reader in split_readers.items():
        for batch in args.batches:
            for p in range(args.passes):
                ds = train_path_dataset(reader, batch, seed=p,
                                        shuffle_buffer=buffer_default)
                n, seconds = consume(ds)
                rate = n / seconds
                rates.setdefault((name, batch), []).append(rate)
                print(f"  {name:<6} batch {batch:>3} pass {p + 1}: "
                      f"{rate:8.1f} examples/s ({n} examples in "
                      f"{seconds:.1f} s)", flush=True)

    print("pipeline / train step (smallest pass; must be >= 2x):")
    verdicts = []
    for (name, batch), values in rates.items():
        ratio = min(values) / steps[batch]["examples_per_s"]
        ok = ratio >= 2.0
        verdicts.append(ok)
        print(f"  {name:<6} batch {batch:>3}: {min(values):8.1f} / "
              f"{steps[batch]['examples_per_s']:.1f} = {ratio:6.1f}x  "
              f"{'PASS' if ok else 'FAIL'}")
    print(f"overall: {'PASS' if all(verdicts) else 'FAIL'} (pipeline >= 2x "
          "the train step for every format and batch size)")

    batch = args.batches[0]
    step = steps[batch]["trainer_step"]
    print(f"end to end at batch {batch} (train step fed by the pipeline, "
          f"both on this machine's {os.cpu_count()} CPUs, shuffle_buffer="
          f"{args.small_buffer}; each next to the same step on in-memory "
          "tensors timed just before it):")
    for name, reader in split_readers.items():
        synthetic, _, _, _ = step.time(args.end_to_end_steps, warmup=1)
        synthetic = batch / synthetic
        ds = train_path_dataset(reader, batch, seed=7,
                                shuffle_buffer=args.small_buffer)
        ds = ds.map(lambda b: {"features": b["features"],
                               "labels": b["labels"]})
        rate = end_to_end(step, ds, args.end_to_end_steps)
        print(f"  {name:<6}: {rate:8.1f} examples/s fed by the pipeline vs "
              f"{synthetic:.1f} on in-memory tensors = "
              f"{rate / synthetic:.2f}", flush=True)
    for res in steps.values():
        res.pop("trainer_step")


def memory_checks(args, split_readers, buffer_default, example_f32):
    batch = max(args.batches)
    print(f"memory while streaming (peak RSS sampled every 5 ms; one "
          f"example = {example_f32 / 2**10:.0f} KiB of float32 features):")
    for name, reader in split_readers.items():
        pass_rates = []
        running_peaks = []
        with PeakRss() as mem:
            total = 0
            for _ in range(args.stream_passes):
                n, seconds = consume(make_dataset(reader, batch))
                total += n
                pass_rates.append(n / seconds)
                running_peaks.append(mem.peak - mem.start)
        streamed = total * example_f32
        print(f"  {name:<6} no shuffle, batch {batch}, "
              f"{args.stream_passes} passes: streamed {total} examples = "
              f"{mib(streamed)}; RSS before {mib(mem.start)}, peak "
              f"{mib(mem.peak)} (+{mib(mem.peak - mem.start)}), after "
              f"{mib(mem.after)}  -> growth is "
              f"{(mem.peak - mem.start) / streamed:.1%} of the data",
              flush=True)
        first = " (pass 1 + ZLIB stream verification)" if name == "lesa" \
            else ""
        print("         examples/s per pass: "
              + ", ".join(f"{r:.0f}" for r in pass_rates) + first
              + "; peak growth so far after each pass: "
              + ", ".join(f"+{mib(g)}" for g in running_peaks))
    reader = split_readers["native"]
    for buffer in (args.small_buffer, buffer_default):
        with PeakRss() as mem:
            n, _ = consume(train_path_dataset(reader, batch, seed=3,
                                              shuffle_buffer=buffer))
        held = min(buffer, args.records) * example_f32
        print(f"  native train path, shuffle_buffer={buffer}: streamed "
              f"{n} examples = {mib(n * example_f32)}; RSS before "
              f"{mib(mem.start)}, peak {mib(mem.peak)} "
              f"(+{mib(mem.peak - mem.start)}); the buffer alone holds "
              f"{mib(held)} (min(buffer, records) x "
              f"{example_f32 / 2**10:.0f} KiB)", flush=True)


if __name__ == "__main__":
    main()
