"""The Python API for producers: enqueue, enqueue_many, get, cancel.

    from tasks_app import producer
    task = producer.enqueue("email", {"to": "a@example.com", "subject": "Hi"}, priority="high")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tasks_app.conf import tq_settings
from tasks_app.connection import get_broker
from tasks_app.core.broker import Submitted, new_task_id
from tasks_app.core.inspect import Inspector
from tasks_app.core.registry import registry
from tasks_app.core.task import Task, TaskSpec
from tasks_app.core.validation import build_spec

FIELDS = ("type", "payload", "priority", "max_retries", "timeout", "metadata", "scheduled_at",
          "delay")


def spec(fields: Mapping[str, Any], task_id: str | None = None) -> TaskSpec:
    """Validate one task's fields against the registry and the settings' defaults."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        from tasks_app.core.errors import ValidationError

        raise ValidationError(f"unknown field '{unknown[0]}'", unknown[0])
    defaults = (tq_settings.DEFAULT_PRIORITY, tq_settings.DEFAULT_MAX_RETRIES,
                tq_settings.DEFAULT_TIMEOUT)
    return build_spec(registry, task_id or new_task_id(), defaults=defaults, **fields)


def enqueue(type: str, payload: dict[str, Any] | None = None, **options: Any) -> Task:
    """Create one task; options are priority, max_retries, timeout, metadata, delay,
    scheduled_at."""
    return submit([{"type": type, "payload": payload, **options}]).tasks[0]


def enqueue_many(tasks: Iterable[Mapping[str, Any]]) -> list[Task]:
    """Create many tasks in one round trip, all or nothing (each a dict of FIELDS)."""
    return submit(tasks).tasks


def submit(tasks: Iterable[Mapping[str, Any]], idempotency_key: str | None = None,
           idempotency_ttl: float = 86400.0) -> Submitted:
    """Like enqueue_many; a repeated idempotency key returns the first call's tasks."""
    specs = [spec(fields) for fields in tasks]
    return get_broker().submit(specs, idempotency_key, idempotency_ttl)


def get(task_id: str) -> Task:
    """The task with that id (raises TaskNotFound)."""
    return get_broker().get(task_id)


def cancel(task_id: str) -> Task:
    """Cancel a pending, scheduled or retrying task (raises NotCancellable otherwise)."""
    return get_broker().cancel(task_id)


def inspector() -> Inspector:
    """Admin operations: queues, workers, the dead-letter queue, pause and resume."""
    return Inspector(get_broker())
