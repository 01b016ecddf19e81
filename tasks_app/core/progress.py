"""Progress reports from running tasks: validation, and the per-attempt throttle.

A handler calls ``ctx.progress(done, total=None, message="")``.  The values are checked
here, then written by the fenced ``progress`` script, which also sends a ``task.progress``
event.  Writes are coalesced in the slot process: at most one per :data:`MIN_INTERVAL`
per attempt; a report made inside that window is kept, and sent by the next report after
it or when the handler returns (so the last one always arrives before the task ends).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import unicodedata
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from .errors import BrokerUnavailable, StaleLease

log = logging.getLogger("tasks_app.core.progress")

MAX_MESSAGE = 200
"""Characters of a progress message kept (after control characters are removed)."""
MAX_NUMBER = 10**15
"""The largest done or total (numbers stay exact in Lua and JSON)."""
MIN_INTERVAL = 0.25
"""Seconds between two writes of one attempt's progress (about 4 a second)."""

Value = tuple[int | float, int | float | None, str]
Writer = Callable[[int | float, int | float | None, str], Any]


def clean_message(message: object) -> str:
    """A message fit for logs and pages: a string, control and format characters (line
    breaks, escapes, bidirectional overrides) removed, at most MAX_MESSAGE characters."""
    if not isinstance(message, str):
        raise TypeError("progress message must be a string")
    kept = "".join(c for c in message if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp"))
    return kept[:MAX_MESSAGE]


def check_number(value: object, name: str) -> int | float:
    """A finite number from 0 to MAX_NUMBER (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"progress {name} must be a number")
    if not math.isfinite(value) or not 0 <= value <= MAX_NUMBER:
        raise ValueError(f"progress {name} must be a finite number from 0 to {MAX_NUMBER}")
    return value


def validate(done: object, total: object = None, message: object = "") -> Value:
    """The checked (done, total, message) of one report; raises TypeError or ValueError."""
    checked_done = check_number(done, "done")
    checked_total = None if total is None else check_number(total, "total")
    if checked_total is not None and checked_done > checked_total:
        raise ValueError("progress done must not exceed total")
    return checked_done, checked_total, clean_message(message)


def number_arg(value: int | float | None) -> str:
    """A number as the script takes it ('' for None; integral floats without '.0')."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


class Reporter:
    """The progress of one attempt: validates, throttles and writes through ``write``
    (a fenced broker call).  Thread-safe (a handler may report from its own threads)."""

    def __init__(self, write: Writer, interval: float = MIN_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self._interval = interval
        self._clock = clock
        self._sent_at = -math.inf
        self._kept: Value | None = None
        self._lock = threading.Lock()

    def report(self, done: object, total: object = None, message: object = "") -> bool:
        """Record a report: True when written or kept for the next write, False when Redis
        could not be reached; raises :class:`StaleLease` once the attempt lost its lease."""
        value = validate(done, total, message)
        with self._lock:
            if self._clock() - self._sent_at < self._interval:
                self._kept = value
                return True
            return self._send(value)

    def flush(self) -> None:
        """Write the report kept by the throttle, if any (the handler has returned)."""
        with self._lock:
            if self._kept is not None:
                with suppress(StaleLease):  # the attempt's outcome is discarded too
                    self._send(self._kept)

    def _send(self, value: Value) -> bool:
        self._kept = None
        self._sent_at = self._clock()
        try:
            self._write(*value)
        except BrokerUnavailable as exc:
            log.warning("progress not recorded: %s", exc)
            return False
        return True
