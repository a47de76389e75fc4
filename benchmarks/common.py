"""Helpers shared by the benchmark scripts.

The scripts are modules of the `benchmarks` package, run from the
repository root (`python -m benchmarks.bench_eval`); they import what they
share from here, never from one another.
"""

import os
import platform
import threading

# Where `tune_release_shaped` writes its label-held-out task, and the
# arrays `diagnose_release_shaped` caches for itself and
# `probe_release_shaped` (BUILD_NOTES.md, "Learning on release-shaped
# data").
TUNE_DIR = "/tmp/epsilon_tune"
TUNE_MAX_TRAIN = 4000
DIAGNOSIS_ARRAYS = "/tmp/diag_arrays.npz"
PROBE_POOLED = "/tmp/diag_pooled.npz"


def quiet_tensorflow(level="3"):
    """TensorFlow's C++ logs off and Keras on TensorFlow; call before
    TensorFlow is imported (values already set in the environment win)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", level)


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

    from epsilon_tf.data import nus_like

    config = nus_like.NusLikeConfig(
        label_dir=label_dir or nus_like.default_label_dir()
    )
    sizes = {k: v for k, v in (("num_train", num_train),
                                ("num_test", num_test)) if v is not None}
    return nus_like.nus_like_source(
        cache_dir, dataclasses.replace(config, **sizes)
    )


def held_out_dir(work_dir, max_train, seed):
    """The directory of `tune_release_shaped`'s label-held-out task."""
    return os.path.join(work_dir, f"heldout-{max_train}-{seed}")


def add_size_arguments(parser):
    """`--num_train` and `--num_test` of the nus_like world (smoke runs)."""
    parser.add_argument("--num_train", type=int, default=None,
                        help="nus_like training images (default: 8,000).")
    parser.add_argument("--num_test", type=int, default=None,
                        help="nus_like test images (default: 2,000).")


def add_held_out_arguments(parser, example):
    """The run specs, `--task_dir` and `--arrays` of the scripts that
    explore `tune_release_shaped`'s label-held-out task."""
    parser.add_argument("runs", nargs="*",
                        help=f"NAME:{{settings}}, e.g. \"{example}\"")
    parser.add_argument(
        "--task_dir", default=held_out_dir(TUNE_DIR, TUNE_MAX_TRAIN, 0),
        help="The held-out task (default: --max_train=4000, seed 0).",
    )
    parser.add_argument("--arrays", default=DIAGNOSIS_ARRAYS,
                        help="Cache of the task's arrays.")


def run_specs(runs):
    """[(name, settings dict)] of "NAME:{python dict}" arguments."""
    import ast

    specs = []
    for run in runs:
        name, settings = run.split(":", 1) if ":" in run else (run, "{}")
        specs.append((name, ast.literal_eval(settings)))
    return specs
