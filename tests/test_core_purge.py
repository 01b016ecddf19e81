"""Purging a priority's pending queue through the Inspector (the ``purge`` script)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from tasks_app.core import inspect as inspect_module
from tasks_app.core import metrics
from tasks_app.core.broker import Broker
from tasks_app.core.events import expand
from tasks_app.core.inspect import Inspector
from tasks_app.core.keys import pending_band
from tasks_app.core.states import TaskState
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import depths, make_spec, open_broker, register, seed, take, zero_depths

S = TaskState
RESULT_TTL = 100.0
CHANNEL = "tq-test-events"


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    """A broker whose scripts publish events on a test channel."""
    with open_broker(redis_server.url, result_ttl=RESULT_TTL, events_channel=CHANNEL) as b:
        yield b


@pytest.fixture
def inspector(broker: Broker) -> Inspector:
    """The inspector over the same broker."""
    return Inspector(broker)


def cancelled_count(broker: Broker) -> int:
    """The cluster-wide cancellations counter, all types."""
    return sum(metrics.parse(broker.client.hgetall(broker.keys.metrics))
               .counters["cancelled"].values())


def test_purge_cancels_only_that_prioritys_pending_tasks(
    broker: Broker, inspector: Inspector, redis_client: redis.Redis
) -> None:
    high = [t.id for t in broker.enqueue_many([make_spec(priority=2) for _ in range(5)])]
    low = broker.enqueue(make_spec(priority=0)).id
    later = broker.enqueue(make_spec(priority=2, delay_ms=60_000)).id
    assert inspector.purge_target(2).count == 5
    assert inspector.purge(2) == 5
    assert depths(broker) == zero_depths(low=1)
    for task_id in high:
        task = broker.get(task_id)
        assert task.state is S.CANCELLED and task.completed_at is not None
        assert 0 < redis_client.pttl(broker.keys.task(task_id)) <= RESULT_TTL * 1000
    assert broker.get(low).state is S.PENDING
    assert broker.get(later).state is S.SCHEDULED
    assert [s.scheduled for s in inspector.queue_stats() if s.priority == 2] == [1]
    assert cancelled_count(broker) == 5
    assert inspector.purge(2) == 0


def test_purge_leaves_running_tasks_alone(broker: Broker, inspector: Inspector) -> None:
    running = seed(broker, "running")
    waiting = broker.enqueue(make_spec()).id
    assert inspector.purge(0) == 1
    assert broker.get(running.id).state is S.RUNNING
    assert broker.get(waiting).state is S.CANCELLED
    assert inspector.running_count() == 1


def test_purge_works_in_batches_and_stops_at_the_mark(
    broker: Broker, inspector: Inspector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inspect_module, "PURGE_BATCH", 3)
    broker.enqueue_many([make_spec(priority=1) for _ in range(10)])
    target = inspector.purge_target(1)
    newer = broker.enqueue(make_spec(priority=1)).id
    assert (target.count, inspector.purge(1, up_to=target.up_to)) == (10, 10)
    assert depths(broker) == zero_depths(normal=1)
    assert broker.get(newer).state is S.PENDING
    assert cancelled_count(broker) == 10


def test_purge_drops_a_dangling_pending_entry_without_counting_it(
    broker: Broker, inspector: Inspector, redis_client: redis.Redis
) -> None:
    real = broker.enqueue(make_spec(priority=3)).id
    redis_client.zadd(broker.keys.pending, {"ghost": pending_band(3)[0]})
    assert inspector.purge(3) == 1
    assert redis_client.zcard(broker.keys.pending) == 0
    assert broker.get(real).state is S.CANCELLED
    assert cancelled_count(broker) == 1


def test_purged_tasks_are_never_dequeued(broker: Broker, inspector: Inspector) -> None:
    register(broker)
    broker.enqueue_many([make_spec() for _ in range(3)])
    inspector.purge(0)
    kept = broker.enqueue(make_spec()).id
    assert take(broker).id == kept
    assert broker.dequeue("worker-1", (0, 1, 2, 3)) == "empty"


def test_purge_publishes_one_cancelled_event_per_task(
    broker: Broker, inspector: Inspector, redis_client: redis.Redis
) -> None:
    ids = {t.id for t in broker.enqueue_many([make_spec(priority=2) for _ in range(3)])}
    sub = redis_client.pubsub()
    sub.subscribe(CHANNEL)
    assert sub.get_message(timeout=1)["type"] == "subscribe"
    inspector.purge(2)
    message = sub.get_message(timeout=1)
    sub.close()
    events = expand(json.loads(message["data"]))
    assert {e["type"] for e in events} == {"task.cancelled"}
    assert {e["data"]["task_id"] for e in events} == ids
    assert {e["data"]["priority"] for e in events} == {"high"}
