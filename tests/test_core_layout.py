"""The Redis layout of the lean hot path, seen from the broker: one pending set for every
priority, and an upgrade from the previous release's per-priority pending sets
(``tq:{ns}:pending:<p>``) that strands no task and keeps strict priority and FIFO."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tasks_app.core.broker import Broker
from tasks_app.core.states import TaskState
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import (
    PREFIX,
    WORKER,
    depths,
    drain,
    make_spec,
    old_release_enqueue,
    open_broker,
    zero_depths,
)

PENDING = PREFIX + "pending"


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    with open_broker(redis_server.url) as b:
        yield b


def test_first_heartbeat_folds_the_old_pending_sets_in_priority_then_fifo_order(
        broker: Broker, redis_client: redis.Redis) -> None:
    # Interleaved, as a live queue would have them: normal, critical, normal, critical, ...
    normal, critical = [], []
    for _ in range(3):
        normal += old_release_enqueue(redis_client, 1, 1)
        critical += old_release_enqueue(redis_client, 3, 1)
    assert redis_client.zcard(PENDING) == 0

    broker.heartbeat(WORKER, {"concurrency": 1, "priorities": "3,2,1,0"}, [], first=True)

    assert redis_client.zrange(PENDING, 0, -1) == critical + normal
    assert not redis_client.exists(PREFIX + "pending:1", PREFIX + "pending:3")
    assert depths(broker) == zero_depths(critical=3, normal=3)
    jobs = drain(broker)
    assert [j.id for j in jobs] == critical + normal
    assert [j.attempt for j in jobs] == [1] * 6
    assert [j.payload for j in jobs[:1]] == [{"p": 3, "i": 0}]


def test_tasks_enqueued_after_the_upgrade_queue_behind_the_folded_ones(
        broker: Broker, redis_client: redis.Redis) -> None:
    old = old_release_enqueue(redis_client, 1, 2)
    broker.heartbeat(WORKER, {"concurrency": 1, "priorities": "3,2,1,0"}, [], first=True)
    new_normal = broker.enqueue(make_spec(priority=1)).id
    new_high = broker.enqueue(make_spec(priority=2)).id
    assert [j.id for j in drain(broker)] == [new_high, *old, new_normal]


def test_a_big_old_backlog_is_folded_whole(broker: Broker, redis_client: redis.Redis) -> None:
    # More than one chunk of the fold (it moves 1,000 entries at a time).
    low = old_release_enqueue(redis_client, 0, 2500)
    critical = old_release_enqueue(redis_client, 3, 10)
    broker.heartbeat(WORKER, {"concurrency": 1, "priorities": "3,2,1,0"}, [], first=True)
    assert redis_client.zcard(PENDING) == 2510
    assert redis_client.zrange(PENDING, 0, -1) == critical + low
    assert not redis_client.exists(PREFIX + "pending:0", PREFIX + "pending:3")
    assert depths(broker) == zero_depths(critical=10, low=2500)


def test_every_heartbeat_folds_what_a_producer_of_the_old_release_enqueued_since(
        broker: Broker, redis_client: redis.Redis) -> None:
    broker.heartbeat(WORKER, {"concurrency": 1, "priorities": "3,2,1,0"}, [], first=True)
    late = old_release_enqueue(redis_client, 1, 1)  # an old producer still running
    broker.heartbeat(WORKER, {"concurrency": 1, "priorities": "3,2,1,0"}, [])
    assert redis_client.zrange(PENDING, 0, -1) == late
    assert not redis_client.exists(PREFIX + "pending:1")
    assert [j.id for j in drain(broker)] == late
    assert broker.get(late[0]).state is TaskState.RUNNING
