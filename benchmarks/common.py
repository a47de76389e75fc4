"""Helpers shared by the benchmark scripts.

The scripts are modules of the `benchmarks` package, run from the
repository root (`python -m benchmarks.bench_eval`); they import what they
share from here, never from one another.
"""

import os
import platform
import threading


def quiet_tensorflow(level="3"):
    """Keras on TensorFlow, TensorFlow imported with its C++ logs off.

    Call before TensorFlow is imported (values already set in the
    environment win). The start-up lines that no log level reaches are
    hidden as train.py hides them (`import_tensorflow_quietly`).
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", level)
    from epsilon_tf.cli.common import import_tensorflow_quietly

    import_tensorflow_quietly()


def cpu_model():
    """The CPU's model name, to print beside every figure."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line(*modules, gpus=False):
    """One line describing this machine and the libraries' versions.

    Args:
        *modules: imported modules whose `__version__` is printed (numpy,
            tensorflow, keras...).
        gpus: also list TensorFlow's physical GPUs.
    """
    versions = [f"python {platform.python_version()}"] + [
        f"{m.__name__} {m.__version__}" for m in modules
    ]
    line = (
        f"machine: {platform.platform()}, {platform.machine()}, "
        f"{cpu_model()}, {os.cpu_count()} CPUs; {', '.join(versions)}"
    )
    if gpus:
        import tensorflow as tf

        names = []
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                details = tf.config.experimental.get_device_details(gpu)
                names.append(details.get("device_name", gpu.name))
            except Exception:  # noqa: BLE001 - best effort description
                names.append(gpu.name)
        line += f"; GPUs: {names or 'none'}"
    return line


def mib(x):
    return f"{x / 2**20:,.0f} MiB"


def gib(x):
    return x / 2**30


def proc_status(field):
    """A `/proc/self/status` field in bytes (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakRss:
    """Peak resident set size while active (VmHWM reset + sampling).

    `start` and `after`: RSS on entry and exit; `peak`: the largest sample
    (every `interval` s) or, at exit, the kernel's high-water mark;
    `peak_anon`: the largest anonymous RSS sample.
    """

    def __init__(self, interval=0.005):
        self.interval = interval
        self.peak = 0
        self.peak_anon = 0
        self._stop = threading.Event()

    def _rss(self):
        rss = proc_status("VmRSS")
        if rss is None:
            import psutil

            rss = psutil.Process().memory_info().rss
        return rss

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self.peak_anon = max(self.peak_anon, proc_status("RssAnon") or 0)
            self._stop.wait(self.interval)

    def __enter__(self):
        try:  # Resets VmHWM (Linux).
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._hwm = True
        except OSError:
            self._hwm = False
        self.start = self._rss()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.after = self._rss()
        self.peak = max(self.peak, self.after)
        if self._hwm:
            self.peak = max(self.peak, proc_status("VmHWM") or 0)
        return False


def nus_like_source(cache_dir, label_dir=None, num_train=None, num_test=None):
    """The built-in nus_like benchmark, optionally with fewer images.

    Args:
        cache_dir: where the benchmark is written (once per configuration).
        label_dir: NUS-WIDE's label files (default: `../shared/data`).
        num_train, num_test: image counts (None: the benchmark's 8,000 and
            2,000); smaller counts are for smoke runs.
    """
    from epsilon_tf.config import DataConfig
    from epsilon_tf.data.sources import make_source

    if num_train is None and num_test is None:
        return make_source(DataConfig(
            dataset="nus_like", cache_dir=cache_dir, label_dir=label_dir,
        ))
    import dataclasses

    from epsilon_tf.data.worlds import nus_like

    config = nus_like.NusLikeConfig(
        label_dir=label_dir or nus_like.default_label_dir()
    )
    sizes = {k: v for k, v in (("num_train", num_train),
                                ("num_test", num_test)) if v is not None}
    return nus_like.nus_like_source(
        cache_dir, dataclasses.replace(config, **sizes)
    )


def add_size_arguments(parser):
    """`--num_train` and `--num_test` of the nus_like world (smoke runs)."""
    parser.add_argument("--num_train", type=int, default=None,
                        help="nus_like training images (default: 8,000).")
    parser.add_argument("--num_test", type=int, default=None,
                        help="nus_like test images (default: 2,000).")


# The trainer's step on random inputs, timed by bench_train_step and
# bench_input_pipeline (TensorFlow is imported when it is used, after the
# scripts quiet it).
NUS_WIDE_SEEN = 925
EMBEDDING_DIM = 300


def make_inputs(batch, config, num_labels, seed=0):
    """Random features and +1/-1/0 labels (about 2% positives)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    features = rng.standard_normal(
        (batch,) + tuple(config.feature_shape), dtype=np.float32
    )
    draw = rng.random((batch, num_labels))
    labels = np.where(draw < 0.02, 1.0, np.where(draw < 0.95, -1.0, 0.0))
    labels[:, 0] = 1.0  # every image has a positive
    return (
        tf.constant(features),
        tf.constant(labels.astype(np.float32)),
    )


class TrainStep:
    """The trainer's step on a fixed model, for one batch size and XLA mode.

    A `Task` (the one the trainer builds its model, optimizer and step
    from) over `num_labels` random word vectors; the timed function is
    `Task.train_step` on the default (one-device) strategy, so the timed
    work is exactly the trainer's.
    """

    def __init__(self, batch, jit_compile, model_config=None,
                 loss_config=None, train_config=None,
                 num_labels=NUS_WIDE_SEEN, embedding_dim=EMBEDDING_DIM,
                 seed=0):
        import dataclasses

        import keras
        import numpy as np
        import tensorflow as tf

        from epsilon_tf.config import LossConfig, ModelConfig, TrainConfig
        from epsilon_tf.labels import LabelSpace
        from epsilon_tf.training.task import LOSS_TERMS, Task

        model_config = model_config or ModelConfig()
        loss_config = loss_config or LossConfig()
        train_config = dataclasses.replace(
            train_config or TrainConfig(), batch_size=batch,
            jit_compile=jit_compile,
        )
        keras.utils.set_random_seed(seed)
        rng = np.random.default_rng(seed + 1)
        vectors = rng.standard_normal(
            (num_labels, embedding_dim)
        ).astype(np.float32)
        space = LabelSpace.from_arrays(
            [f"label_{i}" for i in range(num_labels)], vectors
        )
        model_config = dataclasses.replace(
            model_config, embedding_dim=embedding_dim
        )
        self.task = Task(model_config, loss_config, train_config, space)
        self.model = self.task.build_model()
        self.optimizer = self.task.create_optimizer(
            train_config.learning_rate
        )
        self.grad_fn = self.task.gradient_fn
        self.features, self.labels = make_inputs(
            batch, model_config, num_labels, seed
        )
        self.batch = batch
        self.model_config = model_config
        self.num_labels = num_labels
        self.embedding_dim = embedding_dim
        total = LOSS_TERMS.index("total")

        @tf.function
        def step(features, labels):
            terms, _ = self.task.train_step(features, labels)
            return terms[total]

        self._step = step

    def run(self, steps):
        loss = None
        for _ in range(steps):
            loss = self._step(self.features, self.labels)
        return float(loss.numpy())  # waits for the last step

    def time(self, steps, warmup, max_seconds=None):
        """Returns (seconds per step, first-call seconds, last loss, steps).

        The first call (tracing, XLA compilation and one step) counts as
        the first warm-up step. With `max_seconds`, timing stops after the
        step that crosses it (at least 2 timed steps), so a very slow
        configuration does not hold the run for `steps` steps.
        """
        import time

        start = time.perf_counter()
        self.run(1)
        first = time.perf_counter() - start
        if warmup > 1:
            self.run(warmup - 1)
        done = 0
        loss = None
        start = time.perf_counter()
        while done < steps:
            loss = self.run(1)
            done += 1
            elapsed = time.perf_counter() - start
            if max_seconds and done >= 2 and elapsed > max_seconds:
                break
        return elapsed / done, first, loss, done


def time_train_step(batch, jit_compile, steps=10, warmup=2,
                    max_seconds=None, **kwargs):
    """Examples/s of the trainer's step at `batch` (used by other benches).

    Args:
        batch: int. Global batch size.
        jit_compile: bool. XLA-compile the gradient function.
        steps: int. Timed steps (at most).
        warmup: int. Untimed steps first, the first call included.
        max_seconds: float or None. Stop timing after this long (>= 2
            steps).
        **kwargs: passed to `TrainStep` (`model_config`, `num_labels`...).

    Returns:
        A dict with `examples_per_s`, `ms_per_step`, `first_call_s`
        (trace + compile + one step), `timed_steps`, `loss` and
        `trainer_step` (the `TrainStep`).
    """
    step = TrainStep(batch, jit_compile, **kwargs)
    seconds, first, loss, done = step.time(steps, warmup, max_seconds)
    return {
        "batch": batch,
        "jit_compile": jit_compile,
        "examples_per_s": batch / seconds,
        "ms_per_step": seconds * 1e3,
        "first_call_s": first,
        "timed_steps": done,
        "loss": loss,
        "trainer_step": step,
    }
