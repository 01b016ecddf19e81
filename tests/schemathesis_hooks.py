"""Schemathesis hooks (``SCHEMATHESIS_HOOKS``): the one rule the OpenAPI schema cannot say.

A batch creates its tasks atomically in one queue, so its tasks must all name the same
queue (JSON Schema cannot compare sibling values); generated batches that mix queues are
left out, and tests/test_api_named_queues.py checks their 400.
"""

from __future__ import annotations

from typing import Any

import schemathesis

BATCH_PATH = "/api/v1/tasks/batch"


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
