"""Schemathesis hooks (``SCHEMATHESIS_HOOKS``): the one rule the OpenAPI schema cannot say.

A batch creates its tasks atomically in one queue, so its tasks must all name the same
queue (JSON Schema cannot compare sibling values); generated batches that mix queues are
left out, and tests/test_api_named_queues.py checks their 400.  A task's ``unique_key``
needs its ``unique_for`` (a dependency between fields DRF's schema does not state): a
generated task with a key and no ``unique_for`` gets one before it is sent (every phase,
the coverage phase included, calls ``before_call``); tests/test_unique_tasks.py checks the
400 of a key alone.  A schedule's definition has rules between its fields (one of ``type``
or ``task``, one of ``cron`` or ``every``, a cron expression that parses, an IANA zone)
that the schema states only as types: a generated definition is made to follow them
before it is sent, so the run still checks every server answer for errors and schema
conformance; tests/test_api_schedules.py checks each rule's 400.
"""

from __future__ import annotations

from typing import Any

import schemathesis

BATCH_PATH = "/api/v1/tasks/batch"
CREATE_PATH = "/api/v1/tasks"


SCHEDULE_PATHS = ("/admin/schedules", "/admin/schedules/{name}")


def _schedule_rules(body: dict[str, Any], whole: bool) -> None:
    """Make a generated schedule definition follow the rules between its fields."""
    for name in ("task", "args", "kwargs"):
        body.pop(name, None)
    if whole or "type" in body:
        body["type"] = "echo"
    if body.get("every") is not None:
        body.pop("cron", None)
    elif body.get("cron") is not None or whole:
        body["cron"] = "*/5 * * * *"
        body.pop("every", None)
    if body.get("timezone") is not None:
        body["timezone"] = "UTC"
    if body.get("queue") is not None:
        body["queue"] = "default"


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    """Give a generated task that has a unique_key and no unique_for a unique_for; make a
    generated schedule definition follow the rules between its fields."""
    if case.operation.path in SCHEDULE_PATHS and isinstance(case.body, dict) \
            and case.operation.method.upper() in ("POST", "PUT", "PATCH"):
        _schedule_rules(case.body, whole=case.operation.method.upper() != "PATCH")
        return
    if case.operation.path not in (CREATE_PATH, BATCH_PATH) or not isinstance(case.body, dict):
        return
    tasks = case.body.get("tasks") if case.operation.path == BATCH_PATH else [case.body]
    for task in tasks if isinstance(tasks, list) else []:
        if isinstance(task, dict) and task.get("unique_key") is not None \
                and task.get("unique_for") is None:
            task["unique_for"] = 60


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    """False for a generated batch whose tasks name more than one queue."""
    operation = getattr(context, "operation", None)
    if operation is None or operation.path != BATCH_PATH or not isinstance(body, dict):
        return True
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        return True
    queues = [task.get("queue") for task in tasks if isinstance(task, dict)]
    if not all(queue is None or isinstance(queue, str) for queue in queues):
        return True  # not a queue name at all: a 400 the schema predicts
    return len({queue or "default" for queue in queues}) <= 1
