"""The live events: their names and how each one's data is built.

Every event is ``{"type": ..., "timestamp": ISO-8601 Z, "data": {...}}``; task
events carry at least ``task_id``, ``type`` and ``priority`` (by name; the Lua scripts
build them), worker events ``worker_id`` and ``state``.  Publishing is the edges' business.
"""

from __future__ import annotations

import time
from typing import Any

from .task import ms_to_iso

TASK_SUBMITTED = "task.submitted"
TASK_STARTED = "task.started"
TASK_COMPLETED = "task.completed"
TASK_FAILED = "task.failed"
TASK_RETRYING = "task.retrying"
TASK_DEAD_LETTERED = "task.dead_lettered"
TASK_CANCELLED = "task.cancelled"
WORKER_JOINED = "worker.joined"
WORKER_LEFT = "worker.left"
WORKER_PAUSED = "worker.paused"
WORKER_RESUMED = "worker.resumed"
WORKER_HEARTBEAT = "worker.heartbeat"  # each worker, every heartbeat interval
QUEUE_DEPTH = "queue.depth"
QUEUE_STATS = "queue.stats"  # cluster-wide totals, at most once a second when changed

Event = dict[str, Any]


def event(kind: str, data: dict[str, Any], at: float | None = None) -> Event:
    """One event in the wire format."""
    stamp = time.time() if at is None else at
    return {"type": kind, "timestamp": ms_to_iso(int(stamp * 1000)), "data": data}


def worker_data(worker_id: str, state: str, **extra: Any) -> dict[str, Any]:
    """The fields every worker event has, plus extras."""
    return {"worker_id": worker_id, "state": state, **extra}
