"""Queues: priority and FIFO order, pausing, exact depths, requeue, backpressure, enqueue_many."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from tasks_app.core.broker import Broker
from tasks_app.core.errors import QueueFull, WorkerNotFound
from tasks_app.core.inspect import Inspector
from tasks_app.core.states import TaskState
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import (
    WORKER,
    depths,
    drain,
    make_spec,
    open_broker,
    register,
    state_of,
    take,
    zero_depths,
)

S = TaskState


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    """A broker with near-zero backoff and a short delay budget."""
    with open_broker(redis_server.url, retry_backoff_base=0.001,
                     retry_backoff_max=0.001) as b:
        yield b


def test_highest_priority_first_and_fifo_within_a_priority(broker: Broker) -> None:
    register(broker)
    order = [1, 0, 3, 1, 2, 0, 3, 2, 1, 0, 3]
    specs = [make_spec(priority=p, payload={"i": i}) for i, p in enumerate(order)]
    for spec in specs[:5]:
        broker.enqueue(spec)
    broker.enqueue_many(specs[5:])
    expected = sorted(specs, key=lambda s: (-s.priority, s.payload["i"]))
    got = drain(broker)
    assert [(j.id, j.priority) for j in got] == [(s.id, s.priority) for s in expected]


def test_higher_priority_enqueued_later_still_goes_first(broker: Broker) -> None:
    register(broker)
    low = broker.enqueue(make_spec(priority=0))
    first = take(broker)
    assert first.id == low.id
    later_low = broker.enqueue(make_spec(priority=0))
    critical = broker.enqueue(make_spec(priority=3))
    assert [j.id for j in drain(broker)] == [critical.id, later_low.id]


def test_priorities_a_worker_does_not_serve_are_left_alone(broker: Broker) -> None:
    register(broker)
    critical = broker.enqueue(make_spec(priority=3))
    normal = broker.enqueue(make_spec(priority=1))
    low = broker.enqueue(make_spec(priority=0))
    assert take(broker, priorities=(0,)).id == low.id
    assert broker.dequeue(WORKER, (0,)) == "empty"
    assert take(broker, priorities=(0, 1)).id == normal.id
    assert state_of(broker, critical.id) is S.PENDING
    assert depths(broker) == zero_depths(critical=1)


def test_paused_queue_is_skipped_until_resumed(broker: Broker) -> None:
    register(broker)
    inspector = Inspector(broker)
    critical = broker.enqueue(make_spec(priority=3))
    low = broker.enqueue(make_spec(priority=0))
    inspector.pause_queue(3)
    assert [s.paused for s in inspector.queue_stats()] == [True, False, False, False]
    assert take(broker).id == low.id
    assert broker.dequeue(WORKER, (3, 2, 1, 0)) == "empty"
    assert depths(broker) == zero_depths(critical=1)
    inspector.resume_queue(3)
    assert take(broker).id == critical.id


def test_paused_worker_gets_paused_until_resumed(broker: Broker) -> None:
    register(broker)
    register(broker, "other")
    inspector = Inspector(broker)
    task = broker.enqueue(make_spec())
    inspector.pause_worker(WORKER)
    assert broker.dequeue(WORKER, (0, 1, 2, 3)) == "paused"
    assert broker.heartbeat(WORKER, {}, []).paused is True
    assert inspector.worker(WORKER).state == "paused"
    assert state_of(broker, task.id) is S.PENDING
    inspector.resume_worker(WORKER)
    assert take(broker).id == task.id


def test_unregistered_worker_takes_nothing(broker: Broker) -> None:
    task = broker.enqueue(make_spec())
    assert broker.dequeue("ghost", (0, 1, 2, 3)) == "unregistered"
    assert state_of(broker, task.id) is S.PENDING
    with pytest.raises(WorkerNotFound):
        Inspector(broker).pause_worker("ghost")
    register(broker, "ghost")
    assert broker.deregister("ghost") is True
    assert broker.dequeue("ghost", (0, 1, 2, 3)) == "unregistered"


def test_depths_are_exact_through_every_operation(broker: Broker) -> None:
    register(broker)
    assert depths(broker) == zero_depths()
    tasks = broker.enqueue_many(
        [make_spec(priority=p) for p in (3, 3, 2, 1, 1, 1, 0)]
        + [make_spec(priority=2, max_retries=1)]
    )
    assert depths(broker) == zero_depths(critical=2, high=2, normal=3, low=1)
    first = take(broker)
    assert depths(broker) == zero_depths(critical=1, high=2, normal=3, low=1)
    broker.requeue(first.id, WORKER, first.fence)
    assert depths(broker) == zero_depths(critical=2, high=2, normal=3, low=1)
    broker.cancel(tasks[3].id)
    broker.cancel(tasks[6].id)
    assert depths(broker) == zero_depths(critical=2, high=2, normal=2, low=0)
    jobs = [take(broker) for _ in range(4)]
    assert depths(broker) == zero_depths(normal=2)
    retried = next(j for j in jobs if j.id == tasks[7].id)
    broker.fail(retried, WORKER, "boom")
    scheduled = broker.enqueue(make_spec(priority=3, delay_ms=5))
    assert depths(broker) == zero_depths(normal=2)
    stats = {s.name: s.scheduled for s in Inspector(broker).queue_stats()}
    assert stats == zero_depths(high=1, critical=1)
    time.sleep(0.01)
    assert broker.promote()[0] == 2
    assert depths(broker) == zero_depths(critical=1, high=1, normal=2)
    assert take(broker).id == scheduled.id
    drain(broker)
    assert depths(broker) == zero_depths()


def test_requeue_puts_a_task_back_at_its_place_without_counting(broker: Broker) -> None:
    register(broker)
    a, b, c = broker.enqueue_many([make_spec() for _ in range(3)])
    job = take(broker)
    assert job.id == a.id
    broker.requeue(a.id, WORKER, job.fence)
    back = broker.get(a.id)
    assert (back.state, back.attempts, back.worker_id, back.started_at) == (
        S.PENDING, 0, None, None)
    assert Inspector(broker).running_count() == 0
    again = take(broker)
    assert (again.id, again.attempt) == (a.id, 1)
    assert [j.id for j in drain(broker)] == [b.id, c.id]


def test_requeue_repeated_with_the_same_fence_is_harmless(broker: Broker) -> None:
    register(broker)
    task = broker.enqueue(make_spec())
    job = take(broker)
    broker.requeue(task.id, WORKER, job.fence)
    broker.requeue(task.id, WORKER, job.fence)
    assert depths(broker) == zero_depths(low=1)
    assert broker.get(task.id).attempts == 0


@pytest.fixture
def limited(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    """A broker whose pending backlog is capped at 5."""
    with open_broker(redis_server.url, max_pending=5) as b:
        yield b


def test_enqueue_beyond_max_pending_is_refused_and_creates_nothing(
    limited: Broker, redis_client: redis.Redis
) -> None:
    for _ in range(5):
        limited.enqueue(make_spec())
    keys_before = sorted(redis_client.keys("*"))
    refused = make_spec(priority=3)
    with pytest.raises(QueueFull):
        limited.enqueue(refused)
    assert sorted(redis_client.keys("*")) == keys_before
    assert not redis_client.exists(limited.keys.task(refused.id))
    assert sum(depths(limited).values()) == 5
    register(limited)
    take(limited)
    limited.enqueue(refused)
    assert sum(depths(limited).values()) == 5


def test_enqueue_many_past_max_pending_creates_none(
    limited: Broker, redis_client: redis.Redis
) -> None:
    limited.enqueue_many([make_spec() for _ in range(3)])
    batch = [make_spec(priority=p) for p in (0, 1, 2)]
    with pytest.raises(QueueFull):
        limited.enqueue_many(batch)
    assert not any(redis_client.exists(limited.keys.task(s.id)) for s in batch)
    assert depths(limited) == zero_depths(low=3)
    limited.enqueue_many(batch[:2])
    assert sum(depths(limited).values()) == 5


def test_scheduled_tasks_do_not_count_against_max_pending(limited: Broker) -> None:
    limited.enqueue_many([make_spec() for _ in range(5)])
    later = limited.enqueue(make_spec(delay_ms=60_000))
    assert later.state is S.SCHEDULED
    with pytest.raises(QueueFull):
        limited.enqueue(make_spec(delay_ms=0))


def _script_calls(client: redis.Redis) -> int:
    """Script calls the server has run: FCALL (Redis 7+) or EVALSHA."""
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("evalsha", "fcall"))


@pytest.mark.standalone  # counts script calls in one server's commandstats
def test_enqueue_many_creates_every_task_in_one_call(
    broker: Broker, redis_client: redis.Redis
) -> None:
    broker.enqueue(make_spec(priority=3))  # loads the script, so the batch below is one call
    specs = [make_spec(priority=i % 4, payload={"i": i}) for i in range(200)]
    before = _script_calls(redis_client)
    tasks = broker.enqueue_many(specs)
    assert _script_calls(redis_client) - before == 1
    assert [t.id for t in tasks] == [s.id for s in specs]
    assert all(t.state is S.PENDING for t in tasks)
    assert depths(broker) == zero_depths(critical=51, high=50, normal=50, low=50)
    assert broker.get(specs[7].id).payload == {"i": 7}


@pytest.mark.parametrize("delay_ms", [None, 0, 60_000])
def test_enqueue_returns_the_task_as_stored(broker: Broker, delay_ms: int | None) -> None:
    created = broker.enqueue(make_spec(priority=2, payload={"a": [1]}, delay_ms=delay_ms))
    assert broker.get(created.id) == created


def test_resending_the_same_ids_creates_no_duplicates(broker: Broker) -> None:
    register(broker)
    specs = [make_spec(payload={"i": i}) for i in range(10)]
    broker.enqueue_many(specs)
    done = take(broker)
    broker.ack(done, WORKER, "1")
    stored = {s.id: broker.get(s.id) for s in specs}
    broker.enqueue_many(specs)
    broker.enqueue(specs[0])
    assert depths(broker) == zero_depths(low=9)
    assert {s.id: broker.get(s.id) for s in specs} == stored
    assert len(drain(broker)) == 9


def test_resending_an_existing_id_returns_the_stored_task(broker: Broker) -> None:
    register(broker)
    spec = make_spec()
    broker.enqueue(spec)
    broker.ack(take(broker), WORKER, "1")
    stored = broker.get(spec.id)
    again = broker.enqueue(spec)
    assert (again.state, again.created_at) == (stored.state, stored.created_at)


def test_resending_existing_ids_at_the_limit_is_not_queue_full(limited: Broker) -> None:
    specs = [make_spec() for _ in range(5)]
    limited.enqueue_many(specs)
    limited.enqueue_many(specs)
    assert sum(depths(limited).values()) == 5


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


def test_payloads_and_metadata_round_trip_byte_for_byte(broker: Broker) -> None:
    """The enqueue script gets every task's fields as one JSON text: quotes, backslashes,
    control characters, non-ASCII and characters outside the BMP come back unchanged, in
    the record, in what a worker takes and through enqueue_many."""
    odd = {"quote": '"', "backslash": "\\", "nul": "\x00", "newline": "a\nb",
           "accents": "éàü", "emoji": "😀", "separator": "\u2028", "slash": "</script>",
           "nested": {"list": [1, 2.5, -3, None, True, "ñ"]}, "big": 2**60}
    register(broker)
    one = broker.enqueue(replace(make_spec(payload=odd), metadata={"who": "zoë", "x": "\\\""}))
    many = broker.enqueue_many([make_spec(payload={**odd, "i": i}) for i in range(3)])
    assert broker.get(one.id).payload == odd
    assert broker.get(one.id).metadata == {"who": "zoë", "x": "\\\""}
    taken = {job.id: job for job in drain(broker)}
    assert taken[one.id].payload == odd
    for i, task in enumerate(many):
        assert taken[task.id].payload == {**odd, "i": i}


def test_tiny_idempotency_lifetime_still_creates_once(broker: Broker) -> None:
    """A lifetime that rounds to 0 ms is kept for 1 ms: the script's last write (the key)
    never fails after its tasks were written, which would report an error for a call that
    created them (and invite a retry that creates them again)."""
    register(broker)
    made = broker.submit([make_spec()], "tiny", idempotency_ttl=0.0001, scope="s")
    assert not made.duplicate
    assert state_of(broker, made.tasks[0].id) == S.PENDING
    assert depths(broker)["low"] == 1


def test_order_holds_with_sequence_numbers_near_their_limit(broker: Broker) -> None:
    """Scores are band(priority) + sequence, exact doubles below 2^53: with the sequence
    near 2^50 (its bound), one-call and batch enqueues still keep priority and FIFO."""
    register(broker)
    broker.client.set(broker.keys.seq, 2**50 - 100)
    specs = [make_spec(priority=p, payload={"i": i}) for i, p in enumerate([0, 3, 0, 3, 1])]
    broker.enqueue_many(specs[:3])
    for spec in specs[3:]:
        broker.enqueue(spec)
    raw = broker.client.zrange(broker.keys.pending, 0, -1, withscores=True)
    assert all(score == int(score) and score < 2**53 for _, score in raw)
    got = drain(broker)
    assert [j.payload["i"] for j in got] == [1, 3, 4, 0, 2]
