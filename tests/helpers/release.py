"""Small LESA- and BiAM-format NUS-WIDE releases, with mistakes on demand.

Laid out as the releases lay them out (TagList1k.txt, Concepts81.txt and
the word-vector pickle in a label folder; LESA TFRecords of raw-byte
features with `label_1k` / `label_81`; BiAM HDF5 with channel-first
features), holding a small learnable world from the synthetic generator.
"""

import pickle
from pathlib import Path

import numpy as np

from helpers import tiny

WORLD_KWARGS = dict(
    num_themes=3, num_seen=16, num_unseen=5, num_train=160, num_test=48,
    grid_shape=(3, 3), channels=8, seed=7,
)
FEATURE_SHAPE = "9x8"
OVERLAP = 2  # concepts that are also tags (zeroed in label_1k, as in LESA)
MODEL_FLAGS = tiny.MODEL_FLAGS + [
    "--epochs=1", "--batch_size=16", "--warmup_steps=2", "--nobaseline",
    "--verbose=0", "--summary_images=0", "--pr_curve_labels=0",
]


def world():
    from epsilon_tf.data.worlds.synthetic import SyntheticConfig

    return SyntheticConfig(**WORLD_KWARGS)


def label_dir(directory):
    """Writes the label files; returns (space, tags)."""
    from epsilon_tf.data.worlds.synthetic import synthetic_label_space

    space = synthetic_label_space(world())
    seen = [space.names[i] for i in space.seen]
    unseen = [space.names[i] for i in space.unseen]
    tags = seen[:4] + unseen[:OVERLAP] + seen[4:]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "TagList1k.txt").write_text("\n".join(tags) + "\n")
    (directory / "Concepts81.txt").write_text("\n".join(unseen) + "\n")
    vec = dict(zip(space.names, space.vectors))
    with open(directory / "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300",
              "wb") as f:
        pickle.dump([np.stack([vec[t] for t in tags]),
                     np.stack([vec[u] for u in unseen])], f)
    return space, tags


def lesa_values(split, space, tags):
    """The LESA records' raw values {img_id, feature, label_1k, label_81}."""
    from epsilon_tf.data.worlds.synthetic import generate_split

    out = []
    seen_names = [space.names[i] for i in space.seen]
    for image_id, features, labels in generate_split(world(), split):
        seen = dict(zip(seen_names, labels[: len(space.seen)]))
        unseen = (labels[len(space.seen):] if split == "test"
                  else np.zeros(len(space.unseen)))
        out.append({
            "img_id": image_id.encode(),
            "feature": np.asarray(features, np.float32).tobytes(),
            "label_1k": np.array([seen.get(t, 0) for t in tags],
                                 np.float32).tobytes(),
            "label_81": np.asarray(unseen, np.float32).tobytes(),
        })
    return out


def write_records(path, values, compression="ZLIB", drop=None):
    """Writes LESA records; `drop` maps a record index to keys left out."""
    import tensorflow as tf

    drop = drop or {}
    options = tf.io.TFRecordOptions(compression_type=compression or "")
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for i, value in enumerate(values):
            writer.write(tiny.bytes_example(value, drop=drop.get(i, ())))
    return Path(path)


def lesa_release(directory, train_compression="ZLIB"):
    """A label folder and LESA train/test files; returns their paths."""
    directory = Path(directory)
    space, tags = label_dir(directory / "labels")
    (directory / "lesa").mkdir(parents=True, exist_ok=True)
    paths = {"labels": directory / "labels"}
    for split, name, comp in (
        ("train", "NUS_WIDE_Train_full_feature_ZLIB.tfrecords",
         train_compression),
        ("test", "NUS_WIDE_Test_full_feature_ZLIB.tfrecords", "ZLIB"),
    ):
        paths[split] = write_records(
            directory / "lesa" / name, lesa_values(split, space, tags), comp
        )
    paths["space"], paths["tags"] = space, tags
    return paths


def lesa_flags(paths, train=None, test=None):
    return [
        "--dataset=nus_wide", "--data_format=lesa",
        f"--label_dir={paths['labels']}", f"--feature_shape={FEATURE_SHAPE}",
        f"--train_files={train or paths['train']}",
        f"--test_files={test or paths['test']}",
    ]


def write_biam(directory, space, split="train", drop_key=None):
    """A BiAM NUS-WIDE .h5 and names pickle; `drop_key=(index, suffix)`
    leaves one image's dataset out."""
    import h5py

    from epsilon_tf.data.worlds.synthetic import generate_split

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    h5_path = directory / f"nus_wide_{split}.h5"
    with h5py.File(h5_path, "w") as f:
        for i, (image_id, features, labels) in enumerate(
            generate_split(world(), split)
        ):
            names.append(image_id)
            if drop_key != (i, "-features"):
                f[f"{image_id}-features"] = np.asarray(features).T
            if drop_key != (i, "-labels"):
                f[f"{image_id}-labels"] = labels.astype(np.int8)
    names_path = directory / f"{split}_img_names.pkl"
    with open(names_path, "wb") as f:
        pickle.dump({"img_names": names}, f)
    return h5_path, names_path
