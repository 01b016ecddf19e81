"""The worker side of the Django Tasks backend: the handler that runs a ``@task`` function.

:func:`resolve` is a registry resolver (installed by ``autodiscover()``): it answers for
task types that are the dotted path of a Django task bound to a ``TaskQueueBackend``.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.dispatch import Signal

from tasks_app import producer
from tasks_app.core.broker import Broker
from tasks_app.core.errors import NonRetryableError, TaskNotFound
from tasks_app.core.registry import Handler
from tasks_app.core.registry import TaskContext as QueueContext
from tasks_app.tasks_framework.backend import django_task, queue_aliases
from tasks_app.tasks_framework.compat import (
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_finished,
    task_started,
)
from tasks_app.tasks_framework.results import arguments, to_result

log = logging.getLogger("tasks_app.tasks_framework")


class DjangoTaskError(Exception):
    """A Django task raised; the message is ``<exception class path>: <message>``."""



def resolve(name: str) -> Handler | None:
    """Registry resolver: the handler that runs the Django task named by its path."""
    task = django_task(name)
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
    args, kwargs = arguments(payload)
    result = to_result(producer.get(ctx.task_id), task, queue_aliases())
    _tell(task_started, result)
    if task.takes_context:
        args = [ProgressContext(task_result=result, queue_context=ctx), *args]
    return result, args, kwargs


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressContext(TaskContext):  # type: ignore[misc]
    """Django's task context, plus ``progress()`` (see the queue's ``TaskContext.progress``)."""

    queue_context: QueueContext

    def progress(self, done: float, total: float | None = None, message: str = "") -> bool:
        """Report how far the task got; see :meth:`tasks_app.core.registry.TaskContext.progress`."""
        return self.queue_context.progress(done, total, message)

    @property
    def parent_results(self) -> Any:
        """In a workflow step: the results of the steps before it (see core/workflows.py);
        None otherwise."""
        return self.queue_context.parent_results


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
    base = django_task(type_name)
    if base is None:
        return
    try:
        record = broker.get(task_id)
    except TaskNotFound:
        return
    _tell(task_finished, to_result(record, base, queue_aliases()))


def signal_name(signal: Signal) -> str:
    """The name a log line gives a signal."""
    return "task_started" if signal is task_started else "task_finished"


def _wrapped(exc: Exception) -> DjangoTaskError:
    cls = type(exc)
    return DjangoTaskError(f"{cls.__module__}.{cls.__qualname__}: {exc}")
