"""Shared memory through which a slot process tells the supervisor what it runs."""

from __future__ import annotations

import ctypes
import math
import multiprocessing.sharedctypes as sharedctypes
import time
from dataclasses import dataclass
from typing import Any

from tasks_app.core.task import Job


class _Slot(ctypes.Structure):
    _fields_ = [
        ("busy", ctypes.c_int),
        ("task_id", ctypes.c_char * 36),
        ("fence", ctypes.c_char * 48),
        ("timeout", ctypes.c_double),
        ("started", ctypes.c_double),
        ("deadline", ctypes.c_double),
        ("processed", ctypes.c_longlong),
        ("failed", ctypes.c_longlong),
    ]


@dataclass(frozen=True)
class Running:
    """A snapshot of what a slot runs."""

    task_id: str
    fence: str
    timeout: float
    started: float  # 0 while taken but not started
    deadline: float  # inf until the handler starts and once it returned (reporting)


class Slot:
    """One slot's record; written by the slot process, read by the supervisor.

    A replacement process for a dead slot reuses the record, so counts carry on.
    """

    def __init__(self) -> None:
        self._raw: Any = sharedctypes.RawValue(_Slot)

    def take(self, job: Job) -> None:
        """Claim a job as soon as a dequeue hands it over, before it starts, so heartbeats
        report it from then on (busy is set last so readers see whole records)."""
        raw = self._raw
        raw.busy = 0
        raw.task_id = job.id.encode()
        raw.fence = job.fence.encode()
        raw.timeout = float(job.timeout)
        raw.started = 0.0  # not started yet
        raw.deadline = math.inf
        raw.busy = 1

    def begin(self) -> None:
        """The taken job's handler starts now: its time limit runs from here."""
        raw = self._raw
        raw.started = time.time()
        raw.deadline = raw.started + raw.timeout

    def reporting(self) -> None:
        """The handler returned: no time limit applies while the outcome is recorded."""
        self._raw.deadline = math.inf

    def clear(self) -> None:
        """Mark the slot idle."""
        self._raw.busy = 0

    def count(self, ok: bool) -> None:
        """Count a finished attempt (only this slot's process writes its counters)."""
        if ok:
            self._raw.processed += 1
        else:
            self._raw.failed += 1

    @property
    def counts(self) -> tuple[int, int]:
        """(processed, failed) attempts so far."""
        return int(self._raw.processed), int(self._raw.failed)

    def snapshot(self) -> Running | None:
        """What the slot runs now, or None."""
        raw = self._raw
        if not raw.busy:
            return None
        return Running(raw.task_id.decode(), raw.fence.decode(), raw.timeout, raw.started,
                       raw.deadline)
