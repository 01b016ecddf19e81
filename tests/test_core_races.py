"""Races on a real Redis: concurrent dequeuers, and cancel against dequeue."""

from __future__ import annotations

import threading
from collections.abc import Callable

import redis

from tasks_app.core.broker import Broker
from tasks_app.core.errors import NotCancellable
from tasks_app.core.inspect import Inspector
from tasks_app.core.keys import Keys
from tasks_app.core.states import TaskState
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import drain, make_spec, open_broker, register, zero_depths

BATCH = 1000


def _enqueue(broker: Broker, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, BATCH):
        specs = [make_spec(priority=i % 4) for i in range(start, min(start + BATCH, count))]
        ids += [t.id for t in broker.enqueue_many(specs)]
    return ids


def _run_together(*bodies: Callable[[], None]) -> None:
    """Start every body on its own thread at the same moment; re-raise the first error."""
    barrier = threading.Barrier(len(bodies))
    errors: list[BaseException] = []

    def run(body: Callable[[], None]) -> None:
        barrier.wait()
        try:
            body()
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racing thread hung"
    if errors:
        raise errors[0]


def test_two_dequeuers_get_every_task_exactly_once(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    taken: dict[str, list[str]] = {"a": [], "b": []}
    with open_broker(redis_server.url) as producer:
        ids = _enqueue(producer, 10_000)
        assert len(set(ids)) == 10_000

    def worker(name: str) -> Callable[[], None]:
        def body() -> None:
            with open_broker(redis_server.url) as own:
                register(own, name)
                taken[name] = [job.id for job in drain(own, name)]
        return body

    _run_together(worker("a"), worker("b"))
    a, b = taken["a"], taken["b"]
    assert len(a) == len(set(a)) and len(b) == len(set(b)), "a worker got a task twice"
    assert not set(a) & set(b), "two workers got the same task"
    assert set(a) | set(b) == set(ids), "tasks went missing"
    assert a and b, "the dequeuers did not overlap"
    with open_broker(redis_server.url) as check:
        assert Inspector(check).queue_depths() == zero_depths()
        assert Inspector(check).running_count() == 10_000
    assert redis_client.scard(Keys("default").worker_active("a")) == len(a)


def test_cancel_racing_dequeue_never_does_both(redis_server: EmbeddedRedis) -> None:
    cancelled: list[str] = []
    refused: list[str] = []
    dequeued: list[str] = []
    with open_broker(redis_server.url) as producer:
        ids = _enqueue(producer, 2_000)

    def canceller() -> None:
        with open_broker(redis_server.url) as own:
            for task_id in ids:
                try:
                    own.cancel(task_id)
                    cancelled.append(task_id)
                except NotCancellable:
                    refused.append(task_id)

    def dequeuer() -> None:
        with open_broker(redis_server.url) as own:
            register(own, "racer")
            dequeued.extend(job.id for job in drain(own, "racer"))

    _run_together(canceller, dequeuer)
    assert not set(cancelled) & set(dequeued), "a task was both cancelled and dequeued"
    assert set(cancelled) | set(dequeued) == set(ids)
    assert sorted(refused) == sorted(dequeued)
    assert cancelled and dequeued, "the race did not overlap"
    with open_broker(redis_server.url) as check:
        inspector = Inspector(check)
        assert inspector.queue_depths() == zero_depths()
        assert all(s.scheduled == 0 for s in inspector.queue_stats())
        assert inspector.running_count() == len(dequeued)
        assert check.dequeue("racer", (0, 1, 2, 3)) == "empty"
        for task_id in cancelled[:50] + cancelled[-50:]:
            assert check.get(task_id).state is TaskState.CANCELLED
        for task_id in dequeued[:50] + dequeued[-50:]:
            assert check.get(task_id).state is TaskState.RUNNING
