"""Django ``TaskResult``s read from taskqueue's task records (``get_result`` and the
results the worker-side runner hands to ``task_started`` / ``task_finished``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tasks_app.core.errors import NonRetryableError
from tasks_app.core.states import TaskState
from tasks_app.core.task import Task as QueueTask
from tasks_app.core.task import ms_to_datetime
from tasks_app.tasks_framework.compat import Task, TaskError, TaskResult, TaskResultStatus

META_KEY = "django"
"""The metadata key holding a Django task's backend alias, queue name and priority."""

DOTTED_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")

STATUS = {
    TaskState.PENDING: TaskResultStatus.READY,
    TaskState.SCHEDULED: TaskResultStatus.READY,
    TaskState.RETRYING: TaskResultStatus.READY,
    TaskState.RUNNING: TaskResultStatus.RUNNING,
    TaskState.COMPLETED: TaskResultStatus.SUCCESSFUL,
    TaskState.FAILED: TaskResultStatus.FAILED,
    TaskState.DEAD_LETTER: TaskResultStatus.FAILED,
    TaskState.CANCELLED: TaskResultStatus.FAILED,
}



class TaskFailed(Exception):
    """Stands for a failure recorded without an exception (time limit, worker lost, cancel)."""


def to_result(record: QueueTask, base: Task, aliases: list[str]) -> TaskResult:
    """A Django TaskResult for a taskqueue task record (``aliases``: the TASKS aliases that
    are a TaskQueueBackend)."""
    meta = record.metadata.get(META_KEY) if isinstance(record.metadata, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    attempts = record.attempts
    alias = _alias_of(meta, base, aliases)
    result: TaskResult[Any, Any] = TaskResult(
        task=_task_as_enqueued(base, meta, record, alias),
        id=record.id,
        status=STATUS[record.state],
        enqueued_at=ms_to_datetime(record.created_at),
        started_at=ms_to_datetime(record.started_at),
        finished_at=ms_to_datetime(record.dead_at or record.completed_at),
        last_attempted_at=ms_to_datetime(record.started_at),
        args=arguments(record.payload)[0],
        kwargs=arguments(record.payload)[1],
        backend=alias,
        errors=_errors(record),
        worker_ids=[record.worker_id or ""] * attempts,
    )
    if record.state is TaskState.COMPLETED:
        object.__setattr__(result, "_return_value", record.result)
    return result


def arguments(payload: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The call's arguments from a payload ``{"args": [...], "kwargs": {...}}``."""
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise NonRetryableError('a Django task\'s payload is {"args": [...], "kwargs": {...}}')
    return args, kwargs


def _alias_of(meta: Mapping[str, Any], base: Task, aliases: list[str]) -> str:
    """The TASKS alias a task was enqueued through; for one created by type and payload
    (REST API, producer), the Task's own backend if it is a TaskQueueBackend, else the
    first alias that is."""
    alias = meta.get("backend")
    if isinstance(alias, str) and alias:
        return alias
    return base.backend if base.backend in aliases or not aliases else aliases[0]


def _task_as_enqueued(base: Task, meta: Mapping[str, Any], record: QueueTask,
                      alias: str) -> Task:
    """The module-level Task with the priority, queue, run_after and backend alias it was
    enqueued with."""
    run_after = ms_to_datetime(record.scheduled_at)
    try:
        return base.using(priority=meta.get("priority"), queue_name=meta.get("queue_name"),
                          run_after=run_after, backend=alias)
    except Exception:  # e.g. the queue left QUEUES, or the alias left TASKS, since
        return base


def _errors(record: QueueTask) -> list[TaskError]:
    if not record.error or record.state in (TaskState.COMPLETED,):
        return []
    head = record.error.split(": ", 1)[0]
    path = head if DOTTED_PATH.match(head) else f"{TaskFailed.__module__}.{TaskFailed.__qualname__}"
    return [TaskError(exception_class_path=path, traceback=record.error)]
