"""Clean command-line exits for the errors a user has to act on.

A diverged loss, NaN features, a missing file or a malformed input are not
bugs in the program: the CLIs print the one message that says what
happened (which step, which record, which file, what was expected) and
exit with status 1, without a traceback. Set `EPSILON_TRACEBACK=1` to get
the traceback as well.
"""

import contextlib
import os
import sys

from epsilon_tf.data.pipeline import InputDataError
from epsilon_tf.training.trainer import TrainingDivergedError

USER_ERRORS = (
    TrainingDivergedError,
    InputDataError,
    FileNotFoundError,
    ValueError,
    KeyError,
)
EXIT_CODE = 1


@contextlib.contextmanager
def clean_exit(program):
    """Turns `USER_ERRORS` into `program: error: <message>` and exit 1.

    Example:

    >>> with clean_exit("train.py"):
    ...     train_and_evaluate(...)
    """
    try:
        yield
    except USER_ERRORS as e:
        if os.environ.get("EPSILON_TRACEBACK"):
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"{program}: error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CODE)
