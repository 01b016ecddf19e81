"""The slot's executor: what a handler's outcome is recorded as."""

from __future__ import annotations

import asyncio

from tasks_app.core.registry import HandlerRegistry, TaskContext
from tasks_app.core.task import Job
from workers_app.runtime.executor import Executor


def _job(task_type: str, timeout: int = 1) -> Job:
    return Job(id="t", priority=0, fence="f", attempt=1, type=task_type, payload={}, metadata={},
               max_retries=0, timeout=timeout, queue_wait=0.0, started_at=0)


def test_an_async_handlers_own_timeout_error_is_not_reported_as_the_task_timing_out() -> None:
    registry = HandlerRegistry()

    async def upstream(payload: dict[str, object], ctx: TaskContext) -> None:
        raise TimeoutError("upstream took too long")

    async def slow(payload: dict[str, object], ctx: TaskContext) -> None:
        await asyncio.sleep(5)

    registry.register("upstream", upstream)
    registry.register("slow", slow)
    executor = Executor(registry)
    assert executor.run(_job("upstream")).error == "upstream took too long"
    assert executor.run(_job("slow")).error == "timed out after 1 s"
