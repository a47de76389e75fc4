"""The exception types a command line turns into one `error:` line.

Dependency-free (standard library only), so every layer of the package can
raise them and `cli.common.clean_exit` can catch them without importing
the modules that raise them. Anything here is a user's mistake or a fault
of the environment, never a bug: the entry points print its message on one
line and exit with status 1, without a traceback (`--debug` shows it).
"""


class CommandLineError(ValueError):
    """A flag or argument value that cannot work (says which and why)."""


class InputDataError(ValueError):
    """The input data is unusable (e.g. NaN or Inf features).

    The message names the offending file or record and image id.
    """


class TrainingDivergedError(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite."""


class RunDirectoryInUseError(RuntimeError):
    """Another process holds the lock of a run directory.

    The message names the directory, what the holder does (training,
    exporting) and its process id (`training.run_lock`).
    """


class DiskFullError(OSError):
    """A write failed because its filesystem is full (or over quota).

    The message names the file or directory that could not be written, the
    free space left there and, where known, the space the write needed
    (`storage`). Everything written before is left intact.
    """


# Raised by the command lines' error handler (`cli.common.clean_exit`) on
# top of the standard library's OSError, ValueError, KeyError, ... .
USER_ERRORS = (
    CommandLineError,
    InputDataError,
    TrainingDivergedError,
    RunDirectoryInUseError,
    DiskFullError,
)
