"""A backend for Django's Tasks framework that runs ``@task`` functions on taskqueue.

    TASKS = {"default": {"BACKEND": "tasks_app.backends.TaskQueueBackend"}}

A Django task becomes an ordinary taskqueue task whose type is the function's dotted
path (``myapp.tasks.send_email``) and whose payload is ``{"args": [...], "kwargs": {...}}``;
Django's own priority, queue name and backend alias are kept in its metadata under
``"django"``.  Workers find the function through :func:`resolve`, a registry resolver.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.apps import apps
from django.core import checks
from django.db import DEFAULT_DB_ALIAS
from django.dispatch import Signal
from django.utils.module_loading import import_string

from tasks_app import producer
from tasks_app.conf import tq_settings
from tasks_app.core.broker import Broker, new_task_id
from tasks_app.core.errors import NonRetryableError, TaskNotFound
from tasks_app.core.nesting import too_deep
from tasks_app.core.registry import Handler
from tasks_app.core.registry import TaskContext as QueueContext
from tasks_app.core.states import TaskState
from tasks_app.core.task import Task as QueueTask
from tasks_app.core.task import ms_to_datetime
from tasks_app.tasks_framework import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)

log = logging.getLogger("tasks_app.backends")

META_KEY = "django"
"""The metadata key holding a Django task's backend alias, queue name and priority."""

PRIORITY_BANDS = ((-100, -34, 0), (-33, 33, 1), (34, 66, 2), (67, 100, 3))
"""Django priorities (-100..100) onto taskqueue's four levels (low, normal, high,
critical); Django's default, 0, is ``normal``."""

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

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


class DjangoTaskError(Exception):
    """A Django task raised; the message is ``<exception class path>: <message>``."""


class TaskFailed(Exception):
    """Stands for a failure recorded without an exception (time limit, worker lost, cancel)."""


def queue_priority(priority: int) -> int:
    """The taskqueue priority (0..3) of a Django priority (-100..100)."""
    for low, high, level in PRIORITY_BANDS:
        if low <= priority <= high:
            return level
    raise InvalidTask(f"priority must be a whole number between -100 and 100, not {priority}")


class TaskQueueBackend(BaseTaskBackend):
    """Enqueues Django tasks as taskqueue tasks; ``runworker_tq`` runs them.

    OPTIONS: ``MAX_RETRIES`` and ``TIMEOUT`` (taskqueue's defaults otherwise),
    ``ENQUEUE_ON_COMMIT`` (enqueue when the transaction on ``DATABASE`` commits).
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: Task) -> None:
        """Django's checks, plus: a worker must be able to import the function by its path."""
        super().validate_task(task)
        func = task.func
        if func.__module__ == "__main__" or "." in func.__qualname__:
            raise InvalidTask("Task function must be importable as <module>.<function> "
                              f"(got {task.module_path!r}).")

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Create the taskqueue task now, or when the current transaction commits."""
        self.validate_task(task)
        _check_importable(task)
        result = self._new_result(task, args, kwargs)
        fields = self._fields(task, result)

        def enqueued(created: QueueTask) -> None:
            object.__setattr__(result, "enqueued_at", ms_to_datetime(created.created_at))
            task_enqueued.send(type(self), task_result=result)

        if self.options.get("ENQUEUE_ON_COMMIT", False):
            using = self.options.get("DATABASE", DEFAULT_DB_ALIAS)
            producer.submit_on_commit(producer.spec(fields, result.id), using, then=enqueued)
            return result
        enqueued(producer.enqueue(task_id=result.id, **fields))
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The TaskResult of a Django task enqueued through taskqueue."""
        try:
            record = producer.get(result_id)
        except TaskNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        base = _django_task(record.type)
        if base is None:
            raise TaskResultDoesNotExist(result_id)
        return to_result(record, base)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """Queue names must be non-empty strings."""
        return [checks.Error(f"Task backend {self.alias!r}: invalid queue name {name!r}.",
                             id="taskqueue.E007")
                for name in sorted(self.queues, key=str)
                if not isinstance(name, str) or not name.strip()]

    def _new_result(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        _check_depth(args, kwargs)
        result: TaskResult[Any, Any] = TaskResult(
            task=task, id=new_task_id(), status=TaskResultStatus.READY, enqueued_at=None,
            started_at=None, finished_at=None, last_attempted_at=None, args=list(args),
            kwargs=dict(kwargs), backend=self.alias, errors=[], worker_ids=[])
        _check_round_trip({"args": result.args, "kwargs": result.kwargs})
        return result

    def _fields(self, task: Task, result: TaskResult) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "type": task.module_path,
            "payload": {"args": result.args, "kwargs": result.kwargs},
            "priority": queue_priority(task.priority),
            "metadata": {META_KEY: {"backend": self.alias, "queue_name": task.queue_name,
                                    "priority": task.priority}},
            "scheduled_at": task.run_after,
        }
        for option, field in (("MAX_RETRIES", "max_retries"), ("TIMEOUT", "timeout")):
            if option in self.options:
                fields[field] = self.options[option]
        return fields


def _check_depth(args: Any, kwargs: Any) -> None:
    """Refuse arguments whose payload ``{"args": [...], "kwargs": {...}}`` nests more than
    MAX_JSON_DEPTH levels (so arguments nest at most MAX_JSON_DEPTH - 2), before Django's
    own recursive checks see them."""
    limit = tq_settings.MAX_JSON_DEPTH
    if too_deep({"args": args, "kwargs": kwargs}, limit):
        raise ValueError("Task arguments are nested too deeply: the payload "
                         f'{{"args": [...], "kwargs": {{...}}}} may nest at most {limit} levels')


def _check_round_trip(value: Any) -> None:
    """Django stores arguments as JSON: refuse what would not come back the same."""
    try:
        same = json.loads(json.dumps(value, allow_nan=False)) == value
    except ValueError as exc:
        raise ValueError(f"Task arguments must be JSON round-trippable: {exc}") from None
    if not same:
        raise TypeError("Task arguments must be JSON round-trippable "
                        "(e.g. dictionary keys must be strings).")


def _check_importable(task: Task) -> None:
    try:
        found = import_string(task.module_path)
    except ImportError:
        found = None
    if not isinstance(found, Task) or found.func is not task.func:
        raise InvalidTask(f"Task function must be importable as {task.module_path!r}.")


def _django_task(path: str) -> Task | None:
    """The Task at ``path`` if the site runs Django tasks on taskqueue; imports only app
    modules.

    The Task's own default backend may be another one: ``.using(backend=<an alias of
    TaskQueueBackend>)`` sends it here all the same, and the worker only sees its path.
    """
    if not _PATH.match(path) or not _queue_aliases():
        return None
    module = path.rsplit(".", 1)[0]
    if module not in sys.modules and apps.get_containing_app_config(module) is None:
        return None
    try:
        found = import_string(path)
    except ImportError:
        return None
    return found if isinstance(found, Task) else None


def _queue_aliases() -> list[str]:
    """The TASKS aliases whose backend is a TaskQueueBackend."""
    found = []
    for alias in task_backends.settings:
        try:
            if isinstance(task_backends[alias], TaskQueueBackend):
                found.append(alias)
        except Exception:  # a broken alias is Django's check to report, not ours
            continue
    return found


def resolve(name: str) -> Handler | None:
    """Registry resolver: the handler that runs the Django task named by its path."""
    task = _django_task(name)
    if task is None:
        return None
    return _async_runner(task) if inspect.iscoroutinefunction(task.func) else _sync_runner(task)


def _sync_runner(task: Task) -> Handler:
    def run(payload: dict[str, Any], ctx: QueueContext) -> Any:
        result, args, kwargs = _starting(task, payload, ctx)
        try:
            value = task.func(*args, **kwargs)
        except Exception as exc:
            failure = _failed(result, ctx, exc)
            if failure is exc:
                raise
            raise failure from exc
        return _finished(result, value)

    return run


def _async_runner(task: Task) -> Handler:
    async def run(payload: dict[str, Any], ctx: QueueContext) -> Any:
        result, args, kwargs = await sync_to_async(_starting)(task, payload, ctx)
        try:
            value = await task.func(*args, **kwargs)
        except Exception as exc:
            # Receivers run as Django runs them: from sync code, outside the event loop.
            failure = await sync_to_async(_failed)(result, ctx, exc)
            if failure is exc:
                raise
            raise failure from exc
        return await sync_to_async(_finished)(result, value)

    return run


def _starting(task: Task, payload: dict[str, Any], ctx: QueueContext
              ) -> tuple[TaskResult, list[Any], dict[str, Any]]:
    """The running attempt's TaskResult (read from Redis) and the call's arguments."""
    args, kwargs = _arguments(payload)
    result = to_result(producer.get(ctx.task_id), task)
    _tell(task_started, result)
    if task.takes_context:
        args = [TaskContext(task_result=result), *args]
    return result, args, kwargs


def _finished(result: TaskResult, value: Any) -> Any:
    """Tell task_finished listeners of a success; the value normalised to JSON types, as
    Django does."""
    value = normalize_json(value)
    _announce_end(result, TaskResultStatus.SUCCESSFUL, value=value)
    return value


def _failed(result: TaskResult, ctx: QueueContext, exc: Exception) -> Exception:
    """The exception to fail the attempt with; when it ends the task (the last attempt, or
    NonRetryableError) task_finished listeners hear of it, with it in ``errors``."""
    final = isinstance(exc, NonRetryableError)
    if final or ctx.attempt > ctx.max_retries:
        cls = type(exc)
        error = TaskError(exception_class_path=f"{cls.__module__}.{cls.__qualname__}",
                          traceback="".join(traceback.format_exception(exc)))
        _announce_end(result, TaskResultStatus.FAILED, errors=[error])  # the latest only
    return exc if final else _wrapped(exc)


def _announce_end(result: TaskResult, status: TaskResultStatus, value: Any = None,
                  errors: list[TaskError] | None = None) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", datetime.now(UTC))
    object.__setattr__(result, "_return_value", value)
    if errors is not None:
        object.__setattr__(result, "errors", errors)
    _tell(task_finished, result)


def _tell(signal: Signal, result: TaskResult) -> None:
    """Send a worker-side signal; a receiver that raises is logged and does not change the
    attempt's outcome (a success failed by a receiver would run the function again)."""
    for receiver, outcome in signal.send_robust(type(result.task.get_backend()),
                                                task_result=result):
        if isinstance(outcome, Exception):
            log.error("%s receiver %r raised for task %s", signal_name(signal), receiver,
                      result.id, exc_info=outcome)


def announce_lost_attempt(broker: Broker, task_id: str, type_name: str) -> None:
    """task_finished for a Django task whose last attempt ended without its function
    returning or raising: killed at its timeout, its process died, or its worker vanished.

    Called by the worker that recorded the failure (``runworker_tq``'s hook, with the
    worker's broker), once the task is dead-lettered; the TaskResult is read back from
    Redis, FAILED, with that error.  Not a Django task, or already gone: nothing is sent.
    """
    base = _django_task(type_name)
    if base is None:
        return
    try:
        record = broker.get(task_id)
    except TaskNotFound:
        return
    _tell(task_finished, to_result(record, base))


def signal_name(signal: Signal) -> str:
    return "task_started" if signal is task_started else "task_finished"


def _wrapped(exc: Exception) -> DjangoTaskError:
    cls = type(exc)
    return DjangoTaskError(f"{cls.__module__}.{cls.__qualname__}: {exc}")


def to_result(record: QueueTask, base: Task) -> TaskResult:
    """A Django TaskResult for a taskqueue task record."""
    meta = record.metadata.get(META_KEY) if isinstance(record.metadata, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    attempts = record.attempts
    alias = _alias_of(meta, base)
    result: TaskResult[Any, Any] = TaskResult(
        task=_task_as_enqueued(base, meta, record, alias),
        id=record.id,
        status=STATUS[record.state],
        enqueued_at=ms_to_datetime(record.created_at),
        started_at=ms_to_datetime(record.started_at),
        finished_at=ms_to_datetime(record.dead_at or record.completed_at),
        last_attempted_at=ms_to_datetime(record.started_at),
        args=_arguments(record.payload)[0],
        kwargs=_arguments(record.payload)[1],
        backend=alias,
        errors=_errors(record),
        worker_ids=[record.worker_id or ""] * attempts,
    )
    if record.state is TaskState.COMPLETED:
        object.__setattr__(result, "_return_value", record.result)
    return result


def _arguments(payload: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The call's arguments from a payload ``{"args": [...], "kwargs": {...}}``."""
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise NonRetryableError('a Django task\'s payload is {"args": [...], "kwargs": {...}}')
    return args, kwargs


def _alias_of(meta: Mapping[str, Any], base: Task) -> str:
    """The TASKS alias a task was enqueued through; for one created by type and payload
    (REST API, producer), the Task's own backend if it is a TaskQueueBackend, else the
    first alias that is."""
    alias = meta.get("backend")
    if isinstance(alias, str) and alias:
        return alias
    aliases = _queue_aliases()
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
    path = head if _PATH.match(head) else f"{TaskFailed.__module__}.{TaskFailed.__qualname__}"
    return [TaskError(exception_class_path=path, traceback=record.error)]
