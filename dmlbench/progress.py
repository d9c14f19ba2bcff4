"""Progress output that reads well where it lands: a terminal or a log file.

On a terminal, tqdm's redrawn bars. Anywhere else (a sweep's ``run.log``, CI,
a Slurm log) a bar redrawn with carriage returns becomes thousands of
half-lines, so there the same tqdm object writes one plain line at most every
``DMLBENCH_PROGRESS_SECONDS`` (default 30) and none when it closes; the
caller prints its own summary line (one per epoch, for training).

Every iteration also touches the heartbeat file named by
``DMLBENCH_HEARTBEAT`` (at most once a second), which is how ``dmlbench
sweep --stall-timeout`` tells a slow run from a stuck one without reading
its output.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from pathlib import Path

from tqdm import tqdm

HEARTBEAT_ENV = "DMLBENCH_HEARTBEAT"
INTERVAL_ENV = "DMLBENCH_PROGRESS_SECONDS"
DEFAULT_INTERVAL_S = 30.0
# How a log line of progress looks, and how to recognise one again (the sweep
# skips them when it looks for a failed run's last meaningful line).
LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
LOG_LINE = re.compile(r": \d+(\.\d+)?[kMG]?/\S+ \S+ \[[^\]]*\]$")

_last_beat = 0.0


def heartbeat() -> None:
    """Mark that work is progressing (a no-op unless a sweep asked for it)."""
    global _last_beat
    path = os.environ.get(HEARTBEAT_ENV)
    now = time.monotonic()
    if not path or now - _last_beat < 1.0:
        return
    _last_beat = now
    with contextlib.suppress(OSError):  # the run goes on; only stall detection is weaker
        Path(path).touch()


def log_interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


class _Bar(tqdm):
    """tqdm that beats the heartbeat on every iteration or update."""

    def __iter__(self):
        for item in super().__iter__():
            heartbeat()
            yield item

    def update(self, n=1):
        heartbeat()
        return super().update(n)


class _LogLines(_Bar):
    """tqdm writing whole lines, at most one per ``mininterval``, none on close."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        # tqdm redraws on every postfix change; in a log the next periodic line shows it.
        return super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def display(self, msg=None, pos=None):
        if msg == "":  # a clear: nothing to take back in a log (False: tqdm adds no "\r")
            return False
        if self.n == 0 and msg is None:  # nothing done yet
            return True
        if self.n == getattr(self, "_logged_n", None):  # close() re-displays the last state
            return True
        self._logged_n = self.n
        self.fp.write((msg or self.__str__()) + "\n")
        self.fp.flush()
        return True


def is_terminal(stream=None) -> bool:
    stream = stream if stream is not None else sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(iterable=None, *, desc: str, total=None, unit: str = "it", **kwargs) -> tqdm:
    """A progress bar on a terminal, periodic plain lines elsewhere (see the module doc)."""
    if is_terminal():
        return _Bar(iterable, desc=desc, total=total, unit=unit, **kwargs)
    kwargs.pop("leave", None)
    return _LogLines(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        mininterval=log_interval(),
        maxinterval=float("inf"),  # tqdm's monitor thread would lower miniters; not needed
        bar_format=LOG_FORMAT,
        leave=False,
        dynamic_ncols=False,
        **kwargs,
    )
