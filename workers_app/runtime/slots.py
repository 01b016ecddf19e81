"""Shared memory through which a slot process tells the supervisor what it runs."""

from __future__ import annotations

import ctypes
import multiprocessing.sharedctypes as sharedctypes
import time
from dataclasses import dataclass
from typing import Any

from tasks_app.core.task import Job


class _Slot(ctypes.Structure):
    _fields_ = [
        ("busy", ctypes.c_int),
        ("task_id", ctypes.c_char * 36),
        ("fence", ctypes.c_char * 24),
        ("timeout", ctypes.c_double),
        ("deadline", ctypes.c_double),
    ]


@dataclass(frozen=True)
class Running:
    """A snapshot of what a slot runs."""

    task_id: str
    fence: str
    timeout: float
    deadline: float


class Slot:
    """One slot's record; written by the slot process, read by the supervisor."""

    def __init__(self) -> None:
        self._raw: Any = sharedctypes.RawValue(_Slot)

    def begin(self, job: Job) -> None:
        """Mark a job as running (busy is set last so readers see whole records)."""
        raw = self._raw
        raw.task_id = job.id.encode()
        raw.fence = job.fence.encode()
        raw.timeout = float(job.timeout)
        raw.deadline = time.time() + job.timeout
        raw.busy = 1

    def clear(self) -> None:
        """Mark the slot idle."""
        self._raw.busy = 0

    def snapshot(self) -> Running | None:
        """What the slot runs now, or None."""
        raw = self._raw
        if not raw.busy:
            return None
        return Running(raw.task_id.decode(), raw.fence.decode(), raw.timeout, raw.deadline)
