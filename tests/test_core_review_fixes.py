"""Engine behaviours found in review: each test pins one fix."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from tasks_app.core.broker import Broker
from tasks_app.core.errors import BrokerUnavailable
from tasks_app.core.registry import HandlerRegistry, TaskContext
from tasks_app.core.scripts import translate
from tasks_app.core.states import TaskState
from tasks_app.core.task import Job
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import WORKER, depths, make_spec, open_broker, register, take, zero_depths
from workers_app.runtime.executor import Executor


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    with open_broker(redis_server.url) as b:
        yield b


def test_an_id_repeated_inside_one_batch_is_created_once(broker: Broker) -> None:
    spec = make_spec()
    tasks = broker.enqueue_many([spec, spec])
    assert [t.id for t in tasks] == [spec.id, spec.id]
    assert depths(broker) == zero_depths(low=1)


def test_deregistering_puts_back_a_task_a_slot_took_at_the_last_instant(broker: Broker) -> None:
    register(broker)
    task = broker.enqueue(make_spec())
    take(broker)
    broker.deregister(WORKER)
    back = broker.get(task.id)
    assert (back.state, back.attempts, back.worker_id) == (TaskState.PENDING, 0, None)
    assert depths(broker) == zero_depths(low=1)


@pytest.mark.parametrize("reply", ["READONLY You can't write against a read only replica.",
                                   "MISCONF Redis is configured to save RDB snapshots",
                                   "OOM command not allowed when used memory > 'maxmemory'."])
def test_replies_of_a_redis_that_cannot_write_now_mean_unavailable(reply: str) -> None:
    assert isinstance(translate(redis.ResponseError(reply)), BrokerUnavailable)


def test_fences_are_never_reused_even_if_the_counter_rolls_back(broker: Broker) -> None:
    register(broker)
    broker.enqueue(make_spec())
    first = take(broker)
    broker.client.delete(broker.keys.fence)  # as if Redis lost its last second of writes
    broker.enqueue(make_spec())
    second = take(broker)
    assert first.fence != second.fence


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
