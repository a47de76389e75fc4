"""Clean command-line exits for the errors a user has to act on.

A diverged loss or NaN features are not bugs in the program: the CLIs
print the one message that says what happened (which step, which record,
which checkpoint is intact) and exit with status 1, without a traceback.
"""

import contextlib
import sys

from epsilon_tf.data.pipeline import InputDataError
from epsilon_tf.training.trainer import TrainingDivergedError

USER_ERRORS = (TrainingDivergedError, InputDataError)
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
        print(f"{program}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CODE)
