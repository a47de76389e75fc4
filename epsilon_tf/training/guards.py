"""Clean command-line exits for the errors a user has to act on.

A diverged loss, NaN features, a missing file or a malformed input are not
bugs in the program: the CLIs print the one message that says what
happened (which step, which record, which file, what was expected) and
exit with status 1, without a traceback. Set `EPSILON_TRACEBACK=1` (or
pass `--debug`) to get the traceback as well.

The implementation is `epsilon_tf.cli.common.clean_exit`, shared by every
entry point; this module keeps the trainer's name for it.
"""

from epsilon_tf.cli.common import EXIT_CODE, clean_exit, user_error_types
from epsilon_tf.errors import InputDataError, TrainingDivergedError

USER_ERRORS = (TrainingDivergedError, InputDataError, *user_error_types())

__all__ = ["EXIT_CODE", "USER_ERRORS", "clean_exit"]
