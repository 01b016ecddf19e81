"""Demo task handlers used by the README tour and the tests (TASKQUEUE_DEMO_HANDLERS=0 turns
them off)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

from tasks_app.core.errors import NonRetryableError
from tasks_app.core.registry import TaskContext, handler


@handler("echo")
def echo(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Return the payload."""
    return payload


@handler("sleep")
def sleep(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleep ``payload["seconds"]`` and say so."""
    seconds = float(payload.get("seconds", 1))
    time.sleep(seconds)
    return {"slept": payload.get("seconds", 1)}


@handler("fail")
def fail(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Fail: for the first ``fail_times`` attempts, or always; ``permanent`` skips retries."""
    message = str(payload.get("message", "task failed"))
    if payload.get("permanent"):
        raise NonRetryableError(message)
    fail_times = payload.get("fail_times")
    if fail_times is not None and ctx.attempt > int(fail_times):
        return {"ok": True}
    raise RuntimeError(message)


@handler("email")
def email(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Check ``to`` and ``subject`` and pretend to send."""
    for field in ("to", "subject"):
        if not isinstance(payload.get(field), str) or not payload[field]:
            raise NonRetryableError(f"email needs a non-empty '{field}'")
    if "@" not in payload["to"]:
        raise NonRetryableError(f"invalid recipient {payload['to']!r}")
    time.sleep(0.01)
    return {"sent": True, "message_id": f"msg-{uuid.uuid4().hex[:12]}"}


@handler("crash")
def crash(payload: dict[str, Any], ctx: TaskContext) -> None:
    """End the running process at once, as a segfault or an OOM kill would."""
    os.kill(os.getpid(), signal.SIGKILL)


@handler("steps")
def steps(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Work through ``steps`` steps of ``interval`` seconds, reporting progress after each."""
    total = max(0, min(int(payload.get("steps", 5)), 10_000))
    interval = max(0.0, min(float(payload.get("interval", 0.5)), 60.0))
    ctx.progress(0, total, "starting")
    for done in range(1, total + 1):
        time.sleep(interval)
        ctx.progress(done, total, f"step {done} of {total}")
    return {"steps": total}


def _total(value: Any) -> float:
    """The sum of the numbers in a result or a nested list of results."""
    if isinstance(value, list):
        return sum(_total(item) for item in value)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


@handler("count")
def count(payload: dict[str, Any], ctx: TaskContext) -> float:
    """For trying workflows: ``payload["add"]`` (default 1) plus the sum of the parent
    results, after sleeping ``payload["seconds"]`` (default 0).  A chain of N counts
    ends at N; a group of N with a count ``then`` ends at N + 1."""
    time.sleep(float(payload.get("seconds", 0)))
    return float(payload.get("add", 1)) + _total(ctx.parent_results)
