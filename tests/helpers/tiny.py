"""A tiny synthetic world and the train.py flags that fit it.

Small enough that a few epochs train in seconds on two CPU cores, big
enough that every code path (validation carving, several batches per
epoch, unseen labels, GPA maps on a 4x4 grid) is exercised.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

# 400 training images -> 360 after the 10% validation carve -> 11 steps of
# 32 per epoch.
WORLD_KWARGS = dict(
    num_themes=4, num_seen=30, num_unseen=8, num_train=400, num_test=120,
    grid_shape=(4, 4), channels=16,
)
STEPS_PER_EPOCH = 11
MODEL_FLAGS = [
    "--hidden_dim=16", "--gpa_heads=2", "--num_prompts=3",
    "--gfp_blocks=1",
]
# The built-in world's preset these mechanics tests were written with
# (`presets.SYNTHETIC`; the world trains with the release preset since
# session 30): its dropout layers, its GFP over the tokens, the hinge
# without the per-label term (which ranks each replica's images only).
BASE_FLAGS = MODEL_FLAGS + [
    "--preset=synthetic",
    "--dataset=synthetic", "--data_format=native", "--epochs=3",
    "--batch_size=32", "--warmup_steps=5", "--nobaseline", "--noexport",
    "--verbose=1",
]
NO_DROPOUT = ["--dropout=0", "--token_dropout=0"]


def world():
    from epsilon_tf.data.worlds.synthetic import SyntheticConfig

    return SyntheticConfig(**WORLD_KWARGS)


def model_config(**overrides):
    from epsilon_tf.config import ModelConfig

    kwargs = dict(hidden_dim=16, gpa_heads=2, num_prompts=3, gfp_blocks=1)
    kwargs.update(overrides)
    return ModelConfig(**kwargs)


def arrays(split):
    """(ids, features, labels) of one split of the tiny world."""
    from epsilon_tf.data.worlds.synthetic import generate_split

    ids, feats, labels = zip(*generate_split(world(), split), strict=True)
    return list(ids), np.stack(feats), np.stack(labels)


def in_memory_source(transform=None):
    """The tiny world as an in-memory `DatasetSource`.

    `transform(split, ids, features, labels)` may edit the arrays first.
    """
    from epsilon_tf.data.base import DatasetSource
    from epsilon_tf.data.readers.in_memory import array_split
    from epsilon_tf.data.worlds.synthetic import synthetic_label_space

    config = world()
    splits = {}
    for split, label_set in (("train", "seen"), ("test", "all")):
        ids, feats, labels = arrays(split)
        if transform is not None:
            ids, feats, labels = transform(split, ids, feats, labels)
        splits[split] = array_split(split, feats, labels, label_set, ids)
    return DatasetSource(
        "synthetic", synthetic_label_space(config), config.feature_shape,
        splits,
    )


def train_one_epoch(source, model_dir, **model_overrides):
    """One epoch of the tiny model on `source`, evaluated on its test split.

    Returns `(training, result, weights)`: the trainer's summary, the test
    result of the best checkpoint and every model weight as an array.
    """
    from epsilon_tf.config import LossConfig, TrainConfig
    from epsilon_tf.training.run import build_trainer

    trainer = build_trainer(
        model_config(**model_overrides), LossConfig(),
        TrainConfig(model_dir=str(model_dir), epochs=1, batch_size=32,
                    warmup_steps=5, verbose=0, summary_images=0,
                    pr_curve_labels=0),
        source,
    )
    training = trainer.train()
    trainer.restore_best()
    result = trainer.evaluate_test(progress=False)
    return training, result, [np.array(v) for v in trainer.model.weights]


def random_label_space(num_labels, num_seen, dim, seed):
    """A `LabelSpace` of `num_labels` normal random word vectors of width
    `dim`, the first `num_seen` seen."""
    from epsilon_tf.labels import LabelSpace

    rng = np.random.default_rng(seed)
    return LabelSpace.from_arrays(
        [f"label {i}" for i in range(num_labels)],
        rng.normal(size=(num_labels, dim)).astype("float32"),
        seen=np.arange(num_seen),
    )


def train_to_end(trainer):
    """Trains, restores the best epoch and evaluates on test: the
    (training, test metrics, weights) `assert_same_run` compares."""
    training = trainer.train()
    trainer.restore_best()
    result = trainer.evaluate_test(progress=False)
    return training, result, [np.array(v) for v in trainer.model.weights]


def assert_same_run(first, second):
    """Two `train_one_epoch` outputs are the same, bit for bit."""
    (ta, ra, wa), (tb, rb, wb) = first, second
    assert ta == tb
    assert ra["zsl"] == rb["zsl"] and ra["gzsl"] == rb["gzsl"]
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(x, y)


def write_native(directory):
    """Writes the tiny world as native TFRecords (float32) + label space."""
    from epsilon_tf.data.readers.native_writer import write_native_split
    from epsilon_tf.data.worlds.synthetic import (
        generate_split,
        synthetic_label_space,
    )

    config = world()
    space = synthetic_label_space(config)
    os.makedirs(directory, exist_ok=True)
    space.save(directory)
    for split, names, label_set in (
        ("train", space.subset("seen").names, "seen"),
        ("test", space.names, "all"),
    ):
        write_native_split(
            directory, split, generate_split(config, split),
            config.feature_shape, label_names=names,
            feature_dtype="float32", label_set=label_set,
        )
    return str(directory)


def native_source(data_dir):
    """The `DatasetSource` of a `write_native` directory, as train.py's
    `--data_format=native` opens it."""
    from epsilon_tf.config import DataConfig
    from epsilon_tf.data.sources import make_source

    return make_source(DataConfig(dataset="synthetic", data_format="native",
                                  data_dir=str(data_dir)), progress=False)


def train_command(data_dir, model_dir, *extra, script="train.py"):
    return [
        PYTHON, str(ROOT / script), *BASE_FLAGS, f"--data_dir={data_dir}",
        f"--model_dir={model_dir}", *extra,
    ]


def child_env(**extra):
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["KERAS_BACKEND"] = "tensorflow"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), env.get("PYTHONPATH", "")]
    )
    env.update(extra)
    return env


def start(command, log_path, **env):
    log = open(log_path, "w")  # noqa: SIM115 (closed by finish())
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env=child_env(**env),
    )
    proc.log_file = log
    proc.log_path = log_path
    return proc


def finish(proc, timeout=300):
    """Waits for `proc`; returns (returncode, its output)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc.log_file.close()
    return proc.returncode, Path(proc.log_path).read_text()


def run(command, log_path, timeout=300, **env):
    return finish(start(command, log_path, **env), timeout)


def wait_for_file(path, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1."""
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def metrics(model_dir):
    return json.loads((Path(model_dir) / "metrics.json").read_text())


def checkpoint_tensors(prefix):
    """{name: array} of every tensor of a checkpoint."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
    }


def latest_checkpoint(directory):
    import tensorflow as tf

    return tf.train.latest_checkpoint(str(directory))


def perturb_weights(model, scale=0.1, seed=0):
    """Adds seeded noise to every weight but the label vectors.

    A freshly built model has zero biases and unit LayerNorm scales, which
    hide mistakes in anything that folds or reorders those weights; a
    perturbed one behaves like a trained model. Returns `model`.
    """
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "label_scoring" in weight.path or not weight.trainable:
            continue
        noise = rng.normal(scale=scale, size=weight.shape)
        weight.assign(weight.numpy() + noise.astype("float32"))
    return model


def bytes_example(values, drop=()):
    """A serialized `tf.train.Example` of bytes features, minus `drop`."""
    import tensorflow as tf

    feats = {
        k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
        for k, v in values.items()
        if k not in drop
    }
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    return example.SerializeToString()
