"""Shared memory through which a slot process tells the supervisor what it runs and holds."""

from __future__ import annotations

import ctypes
import math
import multiprocessing.sharedctypes as sharedctypes
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tasks_app.core.task import Job

MAX_HELD = 16
"""The most attempts one slot holds at once (the running one, those taken ahead of it, and
those run but not yet recorded): the ceiling of the PREFETCH setting."""


class _Held(ctypes.Structure):
    _fields_ = [
        ("task_id", ctypes.c_char * 36),
        ("fence", ctypes.c_char * 48),
        ("where", ctypes.c_char * 72),  # the queue shard (keys.shard_ref)
        ("started", ctypes.c_int),
    ]


class _Slot(ctypes.Structure):
    _fields_ = [
        ("busy", ctypes.c_int),
        ("task_id", ctypes.c_char * 36),
        ("fence", ctypes.c_char * 48),
        ("where", ctypes.c_char * 72),
        ("timeout", ctypes.c_double),
        ("started", ctypes.c_double),
        ("deadline", ctypes.c_double),
        ("processed", ctypes.c_longlong),
        ("failed", ctypes.c_longlong),
        ("version", ctypes.c_longlong),  # odd while the held list is being written
        ("n_held", ctypes.c_int),
        ("held", _Held * MAX_HELD),
    ]


@dataclass(frozen=True)
class Running:
    """A snapshot of what a slot runs."""

    task_id: str
    fence: str
    where: str
    timeout: float
    started: float
    deadline: float  # inf once the handler returned and the slot is reporting


@dataclass(frozen=True)
class Held:
    """An attempt a slot holds: taken (started False: its handler never ran) or run."""

    task_id: str
    fence: str
    where: str
    started: bool


class Slot:
    """One slot's record; written by the slot process, read by the supervisor.

    A replacement process for a dead slot reuses the record, so counts carry on.
    """

    def __init__(self) -> None:
        self._raw: Any = sharedctypes.RawValue(_Slot)

    def begin(self, job: Job) -> None:
        """Mark a job as running (busy is set last so readers see whole records): its held
        entry's flag is set in place, the list is not rewritten."""
        raw = self._raw
        task_id, fence = job.id.encode(), job.fence.encode()
        for i in range(raw.n_held):
            entry = raw.held[i]
            if entry.task_id == task_id and entry.fence == fence:
                raw.version += 1
                entry.started = 1
                raw.version += 1
                break
        raw.task_id = task_id
        raw.fence = fence
        raw.where = job.where.encode()
        raw.timeout = float(job.timeout)
        raw.started = time.time()
        raw.deadline = raw.started + job.timeout
        raw.busy = 1

    def reporting(self) -> None:
        """The handler returned: no time limit applies while the outcome is recorded."""
        self._raw.deadline = math.inf

    def clear(self) -> None:
        """Mark the slot idle."""
        self._raw.busy = 0

    def hold(self, jobs: Iterable[Job]) -> None:
        """Record attempts the slot has taken (before any of them starts), after the ones
        it holds (the list is not rewritten)."""
        raw = self._raw
        n = raw.n_held
        new = list(jobs)[:MAX_HELD - n]
        if not new:
            return
        raw.version += 1
        for i, job in enumerate(new, n):
            entry = raw.held[i]
            entry.task_id = job.id.encode()
            entry.fence = job.fence.encode()
            entry.where = job.where.encode()
            entry.started = 0
        raw.n_held = n + len(new)
        raw.version += 1

    def release(self, attempts: Iterable[tuple[str, str]]) -> None:
        """Forget attempts whose outcome is recorded (or that went back in line)."""
        gone = set(attempts)
        self._edit(lambda entries: [h for h in entries if (h.task_id, h.fence) not in gone])

    def forget(self) -> None:
        """Drop every held attempt and the running mark (a dead slot's record, settled)."""
        self._edit(lambda entries: [])
        self._raw.busy = 0

    def held(self) -> list[Held]:
        """Every attempt the slot holds, from a consistent read of the record."""
        raw = self._raw
        for _ in range(1000):
            before = raw.version
            if before % 2 == 0:
                entries = [Held(raw.held[i].task_id.decode(), raw.held[i].fence.decode(),
                                raw.held[i].where.decode(), bool(raw.held[i].started))
                           for i in range(raw.n_held)]
                if raw.version == before:
                    return entries
            time.sleep(0)
        raise RuntimeError("slot record kept changing while read")

    def _edit(self, change: Any) -> None:
        """Rewrite the held list (only the slot's own process writes it, or the supervisor
        once that process is dead)."""
        raw = self._raw
        entries = change(self.held())[:MAX_HELD]
        raw.version += 1
        for i, h in enumerate(entries):
            raw.held[i].task_id = h.task_id.encode()
            raw.held[i].fence = h.fence.encode()
            raw.held[i].where = h.where.encode()
            raw.held[i].started = int(h.started)
        raw.n_held = len(entries)
        raw.version += 1

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
        return Running(raw.task_id.decode(), raw.fence.decode(), raw.where.decode(),
                       raw.timeout, raw.started,
                       raw.deadline)
