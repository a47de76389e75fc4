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


# Raised by the command lines' error handler (`cli.common.clean_exit`) on
# top of the standard library's OSError, ValueError, KeyError, ... .
USER_ERRORS = (CommandLineError, InputDataError, TrainingDivergedError)
