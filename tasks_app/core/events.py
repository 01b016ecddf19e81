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
TASK_REQUEUED = "task.requeued"  # an attempt that never ran went back in line, uncounted
TASK_PROGRESS = "task.progress"  # a running attempt reported progress (a few a second at most)
TASK_THROTTLED = "task.throttled"  # a per-type limit kept a task due to start waiting
WORKER_JOINED = "worker.joined"
WORKER_LEFT = "worker.left"
WORKER_PAUSED = "worker.paused"
WORKER_RESUMED = "worker.resumed"
WORKER_HEARTBEAT = "worker.heartbeat"  # each worker, every heartbeat interval
QUEUE_DEPTH = "queue.depth"
QUEUE_STATS = "queue.stats"  # cluster-wide totals, at most once a second when changed
SCHEDULE_FIRED = "schedule.fired"  # a periodic schedule created the task of a tick
SCHEDULE_MISSED = "schedule.missed"  # ticks skipped (catchup policy, or beyond its cap)
SCHEDULE_ERROR = "schedule.error"  # a worker has no handler for a due schedule's type
WORKFLOW_COMPLETED = "workflow.completed"  # every step of a chain/group workflow completed
WORKFLOW_FAILED = "workflow.failed"  # a step ended failed or dead_letter (data.failed_step)
WORKFLOW_CANCELLED = "workflow.cancelled"
WORKFLOW_RESUMED = "workflow.resumed"  # its failed steps were retried: it runs again

Event = dict[str, Any]


def event(kind: str, data: dict[str, Any], at: float | None = None) -> Event:
    """One event in the wire format."""
    stamp = time.time() if at is None else at
    return {"type": kind, "timestamp": ms_to_iso(int(stamp * 1000)), "data": data}


def worker_data(worker_id: str, state: str, **extra: Any) -> dict[str, Any]:
    """The fields every worker event has, plus extras."""
    return {"worker_id": worker_id, "state": state, **extra}


_PRIORITY_NAMES = {"0": "low", "1": "normal", "2": "high", "3": "critical"}


def _submitted(x: list[Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"state": x[0]}
    if x[1] != "":
        data["scheduled_at"] = ms_to_iso(int(x[1]))
    return data


def _started(x: list[Any]) -> dict[str, Any]:
    return {"worker_id": x[0], "attempt": int(x[1]), "queue_wait": int(x[2]) / 1_000_000}


def _completed(x: list[Any]) -> dict[str, Any]:
    return {"worker_id": x[0], "attempt": int(x[1]), "duration": float(x[2])}


def _failed(x: list[Any]) -> dict[str, Any]:
    data = {"error": x[0], "attempt": int(x[1]), "will_retry": x[2] == "retrying",
            "state": x[2]}
    if x[3] != "":
        data["worker_id"] = x[3]
    return data


def _retrying(x: list[Any]) -> dict[str, Any]:
    return {"attempt": int(x[0]), "next_retry_at": ms_to_iso(int(x[1]))}


def _dead_lettered(x: list[Any]) -> dict[str, Any]:
    return {"error": x[0], "reason": x[1], "message_id": x[2]}


def _number(text: str) -> int | float | None:
    if text == "":
        return None
    value = float(text)
    return int(value) if value.is_integer() else value


def _progress(x: list[Any]) -> dict[str, Any]:
    return {"done": _number(x[0]), "total": _number(x[1]), "message": x[2]}


_ROWS = {
    "submitted": (TASK_SUBMITTED, _submitted),
    "started": (TASK_STARTED, _started),
    "completed": (TASK_COMPLETED, _completed),
    "failed": (TASK_FAILED, _failed),
    "retrying": (TASK_RETRYING, _retrying),
    "dead_lettered": (TASK_DEAD_LETTERED, _dead_lettered),
    "cancelled": (TASK_CANCELLED, lambda x: {}),
    "requeued": (TASK_REQUEUED, lambda x: {"state": "pending"}),
    "progress": (TASK_PROGRESS, _progress),
    "throttled": (TASK_THROTTLED, lambda x: {"state": "pending", "limit": x[0]}),
}


def _schedule_row(kind: str, row: list[Any], queue: str) -> tuple[str, dict[str, Any]]:
    """A schedule event: ``[kind, task_id or "", type, priority, "", name, extras...]``."""
    _, task_id, ttype, _, _, name, *x = row
    data: dict[str, Any] = {"schedule": name, "queue": queue, "type": ttype}
    if kind == "schedule_fired":
        data.update(task_id=task_id, scheduled_for=ms_to_iso(int(x[0])), lag=float(x[1]))
        return SCHEDULE_FIRED, data
    if kind == "schedule_missed":
        data.update(missed=int(x[0]), next_run_at=ms_to_iso(int(x[1])))
        return SCHEDULE_MISSED, data
    return SCHEDULE_ERROR, {**data, "error": x[0]}


_SCHEDULE_ROWS = ("schedule_fired", "schedule_missed", "schedule_error")

_WORKFLOW_ROWS = {"wf_completed": WORKFLOW_COMPLETED, "wf_failed": WORKFLOW_FAILED,
                  "wf_cancelled": WORKFLOW_CANCELLED, "wf_resumed": WORKFLOW_RESUMED}


def _workflow_row(row: list[Any], queue: str) -> tuple[str, dict[str, Any]]:
    """A workflow event: ``[kind, workflow_id, "", "", owner, failed step's task id]``."""
    kind, workflow_id, _, _, owner, failed = row[:6]
    data: dict[str, Any] = {"workflow_id": workflow_id, "queue": queue,
                            "state": _WORKFLOW_ROWS[kind].split(".")[1].replace("resumed",
                                                                               "running")}
    if failed:
        data["failed_step"] = failed
    if owner:
        data["owner"] = owner
    return _WORKFLOW_ROWS[kind], data


def expand(message: dict[str, Any]) -> list[Event]:
    """The task events of one message the Lua scripts published, in the wire format.

    The scripts publish compact rows, ``{"type": "events.compact", "at": ms, "rows":
    [[kind, task_id, type, priority, owner or "", extras...], ...], "q": queue}`` (building
    JSON in Lua cost more than the transition it reports); the web process builds the
    events here.
    The task's ``owner`` is kept for the visibility filter (the hub strips it).
    """
    stamp = ms_to_iso(int(message.get("at", 0)))
    queue = message.get("q") or "default"
    out = []
    for row in message.get("rows", []):
        if row[0] in _SCHEDULE_ROWS:
            name, sdata = _schedule_row(row[0], row, queue)
            out.append({"type": name, "timestamp": stamp, "data": sdata})
            continue
        if row[0] in _WORKFLOW_ROWS:
            name, wdata = _workflow_row(row, queue)
            out.append({"type": name, "timestamp": stamp, "data": wdata})
            continue
        kind, task_id, ttype, priority, owner, *extra = row
        name, build = _ROWS[kind]
        data = {"task_id": task_id, "type": ttype, "priority": _PRIORITY_NAMES[str(priority)],
                "queue": queue, **build(extra)}
        if owner:
            data["owner"] = owner
        out.append({"type": name, "timestamp": stamp, "data": data})
    return out
