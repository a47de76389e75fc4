"""Ctrl-C during training: the step under way finishes, a checkpoint of it
is written, and then the run stops (issue 23).

A plain `KeyboardInterrupt` arrives wherever Python happens to be: between
an optimizer step and the bookkeeping of its counters, the progress a
checkpoint records would then disagree with the weights. `deferred_interrupt`
replaces the SIGINT handler for the length of the training loop with one
that only records the request; the loop checks `requested` after each
step's bookkeeping, checkpoints that step (`Trainer`), and raises
`KeyboardInterrupt`, which the command lines turn into one line and exit
status 130. Rerunning the same command resumes from that checkpoint, bit
for bit (`tests/test_interrupt.py`). A second Ctrl-C stops at once.

Only in the main thread of a single-process run, and only where SIGINT
has its default handler (a worker process that ignores SIGINT keeps
ignoring it; a cluster worker cannot checkpoint alone, every worker takes
part in a save).
"""

import contextlib
import signal
import threading


class InterruptRequest:
    """Whether Ctrl-C was pressed while the handler was installed."""

    def __init__(self):
        self.requested = False


@contextlib.contextmanager
def deferred_interrupt(enabled=True):
    """Yields an `InterruptRequest`; SIGINT sets it instead of raising.

    Args:
        enabled: bool. False yields a request that is never set and
            leaves the handler alone.
    """
    request = InterruptRequest()
    if (
        not enabled
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield request
        return

    def handler(signum, frame):
        if request.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        request.requested = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
