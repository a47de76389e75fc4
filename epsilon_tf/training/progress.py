"""Progress lines for output that is not a terminal.

Keras' `Progbar` redraws one line in a terminal; in a log file, in CI or
in a cluster job's output it prints `1/Unknown` and little else. There the
trainer prints a plain line every `every_seconds` instead (and one at the
end of each epoch):

    step 120/1000 (12%)  850.3 examples/s  ETA 1m44s  loss 0.4321  lr 9.8e-04

With an unknown number of steps per epoch the total and the ETA are left
out.
"""

import sys
import time


def format_duration(seconds):
    """`"1h02m"`, `"3m05s"` or `"42s"`."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ProgressLines:
    """Periodic one-line progress reports of an epoch.

    Args:
        total: int or None. Steps in the epoch (None: unknown).
        batch_size: int. Examples per step (the global batch).
        every_seconds: float. Minimum time between two lines.
        first_step: int. Steps already done (a resumed epoch).
        stream: file. Defaults to `sys.stdout`.
        clock: callable returning seconds (tests pass a fake one).
    """

    def __init__(self, total, batch_size, every_seconds=30.0, first_step=0,
                 stream=None, clock=time.monotonic):
        self.total = total
        self.batch_size = int(batch_size)
        self.every = float(every_seconds)
        self.first_step = int(first_step)
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self._start = clock()
        self._last_print = self._start
        # The rate is measured from the end of the first step on: it holds
        # the one-off cost of tracing the step function.
        self._rate_origin = None
        self._last_step = self.first_step

    def line(self, step, loss=None, lr=None):
        now = self.clock()
        parts = [f"step {step}"]
        if self.total:
            parts[0] += f"/{self.total} ({100 * step / self.total:.0f}%)"
        rate = None
        if self._rate_origin is not None:
            origin_step, origin_time = self._rate_origin
            if step > origin_step and now > origin_time:
                rate = (step - origin_step) / (now - origin_time)
        elif step > self.first_step and now > self._start:
            rate = (step - self.first_step) / (now - self._start)
        if rate is not None:
            parts.append(f"{rate * self.batch_size:.1f} examples/s")
            if self.total and step < self.total:
                eta = format_duration((self.total - step) / rate)
                parts.append(f"ETA {eta}")
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if lr is not None:
            parts.append(f"lr {lr:.2e}")
        return "  " + "  ".join(parts)

    def update(self, step, loss=None, lr=None):
        """Notes a finished step; prints a line when one is due."""
        now = self.clock()
        if self._rate_origin is None and step > self.first_step:
            self._rate_origin = (step, now)
        self._last_step = step
        if now - self._last_print >= self.every:
            self._last_print = now
            print(self.line(step, loss, lr), file=self.stream, flush=True)

    def finish(self, loss=None, lr=None):
        """The epoch's last line, with its duration."""
        step = self._last_step
        if step <= self.first_step:
            return
        text = self.line(step, loss, lr)
        text += f"  [{format_duration(self.clock() - self._start)}]"
        print(text, file=self.stream, flush=True)
