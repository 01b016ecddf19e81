"""The enqueue side of the Django Tasks backend: ``Task.enqueue`` becomes a taskqueue task.

A Django task becomes an ordinary taskqueue task whose type is the function's dotted
path (``myapp.tasks.send_email``) and whose payload is ``{"args": [...], "kwargs": {...}}``;
Django's own priority, queue name and backend alias are kept in its metadata under
``"django"``; the task goes to the taskqueue queue its ``queue_name`` names.  Workers
find the function through ``runner.resolve``, a registry resolver.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.apps import apps
from django.core import checks
from django.db import DEFAULT_DB_ALIAS
from django.utils.module_loading import import_string

from tasks_app import producer
from tasks_app.conf import tq_settings
from tasks_app.core.broker import new_task_id
from tasks_app.core.errors import TaskNotFound
from tasks_app.core.keys import valid_queue_name
from tasks_app.core.nesting import too_deep
from tasks_app.core.task import Task as QueueTask
from tasks_app.core.task import ms_to_datetime
from tasks_app.tasks_framework.compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
)
from tasks_app.tasks_framework.results import DOTTED_PATH, META_KEY, to_result

PRIORITY_BANDS = ((-100, -34, 0), (-33, 33, 1), (34, 66, 2), (67, 100, 3))
"""Django priorities (-100..100) onto taskqueue's four levels (low, normal, high,
critical); Django's default, 0, is ``normal``."""

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
    ``queue_name`` is the taskqueue queue the task goes to: any valid queue name unless the
    TASKS entry lists its ``QUEUES``.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        if "QUEUES" not in params:  # a taskqueue queue comes to exist when used
            self.queues = set()

    def validate_task(self, task: Task) -> None:
        """Django's checks, plus: the queue name is a taskqueue queue name, and a worker
        must be able to import the function by its path."""
        super().validate_task(task)
        if not valid_queue_name(task.queue_name):
            raise InvalidTask(f"Queue {task.queue_name!r} is not a valid queue name (1-64 of "
                              "A-Z a-z 0-9 _ . -, starting with a letter or digit).")
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
        base = django_task(record.type)
        if base is None:
            raise TaskResultDoesNotExist(result_id)
        return to_result(record, base, queue_aliases())

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """Queue names must be taskqueue queue names."""
        return [checks.Error(f"Task backend {self.alias!r}: invalid queue name {name!r}.",
                             id="taskqueue.E007")
                for name in sorted(self.queues, key=str) if not valid_queue_name(name)]

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
            "queue": task.queue_name,
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


def django_task(path: str) -> Task | None:
    """The Task at ``path`` if the site runs Django tasks on taskqueue; imports only app
    modules.

    The Task's own default backend may be another one: ``.using(backend=<an alias of
    TaskQueueBackend>)`` sends it here all the same, and the worker only sees its path.
    """
    if not DOTTED_PATH.match(path) or not queue_aliases():
        return None
    module = path.rsplit(".", 1)[0]
    if module not in sys.modules and apps.get_containing_app_config(module) is None:
        return None
    try:
        found = import_string(path)
    except ImportError:
        return None
    return found if isinstance(found, Task) else None


def queue_aliases() -> list[str]:
    """The TASKS aliases whose backend is a TaskQueueBackend."""
    found = []
    for alias in task_backends.settings:
        try:
            if isinstance(task_backends[alias], TaskQueueBackend):
                found.append(alias)
        except Exception:  # a broken alias is Django's check to report, not ours
            continue
    return found


