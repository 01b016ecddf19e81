"""Demo Django tasks (``@task`` functions run by taskqueue through ``TASKS``), used by the
README and the tests; imported with the demo handlers (TASKQUEUE_DEMO_HANDLERS=0 drops them)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tasks_app.tasks_framework.compat import TaskContext, task


@task
def add(a: float, b: float) -> float:
    """Return ``a + b``."""
    return a + b


@task(priority=50)
def shout(text: str, *, times: int = 1) -> dict[str, Any]:
    """Return the text upper-cased ``times`` times (a high-priority task with kwargs)."""
    return {"text": text.upper() * times}


@task
def fail(message: str) -> None:
    """Raise ValueError(message) on every attempt."""
    raise ValueError(message)


@task
def nap(seconds: float) -> float:
    """Sleep ``seconds`` (a task to time out or to kill mid-run)."""
    time.sleep(seconds)
    return seconds


@task(takes_context=True)
def flaky(context: TaskContext, fail_times: int) -> dict[str, Any]:
    """Fail the first ``fail_times`` attempts, then report the attempt that succeeded."""
    if context.attempt <= fail_times:
        raise RuntimeError(f"attempt {context.attempt} fails on purpose")
    return {"attempt": context.attempt}


@task(takes_context=True)
def whoami(context: TaskContext) -> dict[str, Any]:
    """What the task context says about the running attempt."""
    result = context.task_result
    return {"id": result.id, "attempt": context.attempt, "status": str(result.status),
            "worker_ids": result.worker_ids, "queue_name": result.task.queue_name,
            "priority": result.task.priority, "args": result.args}


@task
async def async_add(a: float, b: float) -> float:
    """``add``, as a coroutine."""
    await asyncio.sleep(0)
    return a + b


@task(takes_context=True)
def counted(context: TaskContext, steps: int) -> int:
    """Report progress after each of ``steps`` steps (ctx.progress from a Django task)."""
    for done in range(1, steps + 1):
        context.progress(done, steps, f"step {done}")  # type: ignore[attr-defined]
    return steps


@task(takes_context=True)
def add_parents(context: TaskContext, extra: float = 0) -> float:
    """In a workflow: ``extra`` plus the sum of the numbers among the parent results."""
    parents = context.parent_results  # type: ignore[attr-defined]
    values = parents if isinstance(parents, list) else [parents]
    return extra + sum(v for v in values if isinstance(v, int | float))
