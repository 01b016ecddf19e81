"""Schemathesis hooks (``SCHEMATHESIS_HOOKS``): the one rule the OpenAPI schema cannot say.

A batch creates its tasks atomically in one queue, so its tasks must all name the same
queue (JSON Schema cannot compare sibling values); generated batches that mix queues are
left out, and tests/test_api_named_queues.py checks their 400.  A task's ``unique_key``
needs its ``unique_for`` (a dependency between fields DRF's schema does not state): a
generated task with a key and no ``unique_for`` gets one before it is sent (every phase,
the coverage phase included, calls ``before_call``); tests/test_unique_tasks.py checks the
400 of a key alone.
"""

from __future__ import annotations

from typing import Any

import schemathesis

BATCH_PATH = "/api/v1/tasks/batch"
CREATE_PATH = "/api/v1/tasks"


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    """Give a generated task that has a unique_key and no unique_for a unique_for."""
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
