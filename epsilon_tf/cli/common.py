"""What every command-line entry point shares: quiet TensorFlow start-up
and one-line errors.

Every CLI (`train.py`, `eval.py`, `python -m epsilon_tf.export`,
`python -m epsilon_tf.tools.convert`,
`python -m epsilon_tf.tools.extract_features`) calls `prepare()` first,
before anything imports TensorFlow, and runs its work inside
`clean_exit(program)`:

- TensorFlow's C++ start-up and runtime logs are off: the log level is set
  before the import (`TF_CPP_MIN_LOG_LEVEL=3`, unless the environment
  already sets one), and the lines the CUDA stubs print while the shared
  libraries load (before any log level applies) are dropped.
  `EPSILON_TF_LOGS=1` (or `--debug`) turns all of that back on.
- A mistake in the input (a corrupt record, a missing file, a bad flag
  value, ...) prints `program: error: <one line>` on stderr and exits with
  status 1, without a traceback. `EPSILON_TRACEBACK=1` (or `--debug`)
  re-raises with the traceback.
- So does a fault of the environment: a full disk met by any write
  (Python's or TensorFlow's own checkpoint and event writers) names the
  file and the free space (`storage.disk_full_error`); a run directory
  another process works in names that process (`training.run_lock`).

This module imports nothing heavy: it must run before TensorFlow loads.
"""

import contextlib
import os
import sys

from epsilon_tf import storage
from epsilon_tf.errors import USER_ERRORS, CommandLineError

TRACEBACK_ENV = "EPSILON_TRACEBACK"
TF_LOGS_ENV = "EPSILON_TF_LOGS"
DEBUG_FLAG = "--debug"
EXIT_CODE = 1
# 128 + SIGINT, what shells and CI report for Ctrl-C.
INTERRUPTED_EXIT_CODE = 130


def _truthy(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false")


def debug_requested(argv=None):
    """True when `--debug` is among the arguments."""
    argv = sys.argv[1:] if argv is None else argv
    return any(a in (DEBUG_FLAG, "--debug=true", "--debug=1") for a in argv)


def prepare(argv=None):
    """Quiets TensorFlow before it is imported; honours `--debug`.

    `--debug` sets `EPSILON_TRACEBACK=1` and `EPSILON_TF_LOGS=1` (and is
    left in the arguments: the absl CLIs define it as a flag, the argparse
    ones accept it).
    """
    if debug_requested(argv):
        os.environ[TRACEBACK_ENV] = "1"
        os.environ[TF_LOGS_ENV] = "1"
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import_tensorflow_quietly()


def tf_logs_wanted():
    return _truthy(TF_LOGS_ENV)


def import_tensorflow_quietly():
    """Imports TensorFlow with its C++ logging off (unless asked for).

    `TF_CPP_MIN_LOG_LEVEL=3` hides TensorFlow's own INFO/WARNING/ERROR
    lines (the failed `cuInit` of a CPU-only machine, the oneDNN banner,
    ...). A few lines are printed while the shared libraries load, through
    absl logging before it is initialized, where no level applies ("All log
    messages before absl::InitializeLog() ...", "Could not find cuda
    drivers"): stderr is pointed at /dev/null for the import only. A Python
    exception raised by the import is re-raised after stderr is restored.
    """
    if tf_logs_wanted():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to hide
        import tensorflow  # noqa: F401
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    # absl (Python) logging of TensorFlow's Python side: warnings only.
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def user_error_types():
    """The exception types that are a user's mistake, not a bug."""
    import pickle

    return (
        *USER_ERRORS,
        OSError,  # FileNotFoundError, IsADirectoryError, PermissionError...
        ValueError,
        KeyError,
        pickle.UnpicklingError,
        EOFError,
    )


def one_line(error):
    """The message of `error` on one line (KeyError's quotes dropped)."""
    if isinstance(error, KeyError) and error.args:
        message = str(error.args[0])
    elif isinstance(error, OSError) and error.filename and error.strerror:
        message = f"{error.filename}: {error.strerror}"
        if error.filename2:
            message += f" ({error.filename2})"
    else:
        message = str(error)
    if not message:
        message = type(error).__name__
    return " ".join(message.split())


def fail(program, message):
    """Prints `program: error: message` and exits with status 1."""
    sys.stdout.flush()
    print(f"{program}: error: {' '.join(str(message).split())}",
          file=sys.stderr, flush=True)
    sys.exit(EXIT_CODE)


def interrupted(program):
    """Ctrl-C: says so on one line and exits with status 130."""
    sys.stdout.flush()
    print(f"{program}: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
    sys.exit(INTERRUPTED_EXIT_CODE)


def _data_error(error):
    """The one-line data error inside a TensorFlow error, or None."""
    if "tensorflow" not in sys.modules:
        return None
    import tensorflow as tf

    if not isinstance(error, tf.errors.OpError):
        return None
    from epsilon_tf.data.pipeline import input_data_error

    clear = input_data_error(error)
    return None if clear is None else str(clear)


@contextlib.contextmanager
def clean_exit(program):
    """Turns user errors into `program: error: <message>` and exit 1.

    Ctrl-C (KeyboardInterrupt) prints `program: interrupted (Ctrl-C)` and
    exits with status 130 (128 + SIGINT), as shells report it.

    Example:

    >>> with clean_exit("train.py"):
    ...     train_and_evaluate(...)
    """
    try:
        yield
    except KeyboardInterrupt:
        if _truthy(TRACEBACK_ENV):
            raise
        interrupted(program)
    except Exception as e:  # noqa: BLE001 (sorted below)
        if _truthy(TRACEBACK_ENV):
            raise
        # A full disk, whoever met it (Python's writes, TensorFlow's C++
        # checkpoint and event writers): the path and the free space.
        full = storage.disk_full_error(e)
        if full is not None:
            fail(program, one_line(full))
        if isinstance(e, user_error_types()):
            fail(program, one_line(e))
        message = _data_error(e)
        if message is not None:
            fail(program, message)
        raise


def absl_flags_parser(program):
    """An `app.run(flags_parser=...)` that reports bad flags in one line."""

    def parse(argv):
        from absl import flags

        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(program, one_line(e))

    return parse


def refuse_arguments(argv):
    """Raises `CommandLineError` when absl left positional arguments."""
    if len(argv) > 1:
        raise CommandLineError(
            f"Unexpected arguments: {' '.join(argv[1:])} (flags are "
            "written --name=value)"
        )


def check(condition, flag, value, requirement):
    """Raises `CommandLineError` "--flag must be ... Received: --flag=v"."""
    if not condition:
        raise CommandLineError(
            f"--{flag} must be {requirement}. Received: --{flag}={value}"
        )
