"""Per-type concurrency and rate limits in the take script (``admit`` in lib.lua): parking
keeps order, other types flow past, depths stay exact, running slots come back on every
way out of running, and the rate's token bucket."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tasks_app.core import errors, metrics
from tasks_app.core.broker import Broker
from tasks_app.core.events import expand
from tasks_app.core.inspect import Inspector
from tasks_app.core.limits import TypeLimit, TypeLimits, parse_limit
from tasks_app.core.states import TaskState
from tasks_app.core.task import Job
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import WORKER, depths, make_spec, open_broker, register, zero_depths

LEASE = 0.15


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    """A broker with short leases and retries due at once."""
    with open_broker(redis_server.url, lease_seconds=LEASE, retry_backoff_base=0.001,
                     retry_backoff_max=0.001) as b:
        register(b, concurrency=8)
        yield b


@pytest.fixture
def limits(broker: Broker) -> TypeLimits:
    """The namespace's type limits."""
    return TypeLimits(broker)


def take_ids(broker: Broker, n: int = 8) -> list[str]:
    """Take up to n tasks; their ids in the order taken."""
    got = broker.take(WORKER, (3, 2, 1, 0), n)
    return [job.id for job in got] if isinstance(got, list) else []


def take_jobs(broker: Broker, n: int = 8) -> list[Job]:
    """Take up to n tasks."""
    got = broker.take(WORKER, (3, 2, 1, 0), n)
    return got if isinstance(got, list) else []


def take_events(sub: Any) -> list[dict[str, Any]]:
    """The events of the take's message on a subscribed channel. On a Cluster the enqueue's
    own message can reach this node after the subscribe (the cluster bus relays it), so
    messages without a task.started are passed over."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = sub.get_message(timeout=1)
        if message and message["type"] == "message":
            events = expand(json.loads(message["data"]))
            if any(e["type"] == "task.started" for e in events):
                return events
    raise AssertionError("no take message on the events channel")


def enqueue(broker: Broker, *types: str) -> list[str]:
    """Enqueue one task per type, in order; their ids."""
    return [t.id for t in broker.enqueue_many([make_spec(t) for t in types])]


def throttled(broker: Broker, task_type: str) -> int:
    """The throttled counter of a type."""
    counters = metrics.parse(broker.client.hgetall(broker.keys.metrics)).counters
    return int(counters.get("throttled", {}).get((task_type,), 0))


def test_a_limited_type_waits_in_order_while_others_flow_past(
        broker: Broker, limits: TypeLimits) -> None:
    limits.set("email", TypeLimit(concurrency=1))
    e1, e2, o1, e3, o2 = enqueue(broker, "email", "email", "other", "email", "other")
    first = take_jobs(broker, 8)
    assert [j.id for j in first] == [e1, o1, o2]  # no head-of-line blocking
    assert depths(broker) == zero_depths(low=2)  # e2, e3: parked but pending
    assert broker.get(e2).state is TaskState.PENDING
    assert throttled(broker, "email") == 2
    assert limits.get("email").to_dict() == {
        "type": "email", "concurrency": 1, "rate": None, "running": 1, "parked": 2}
    assert take_ids(broker) == []
    broker.ack(first[0], WORKER, "null")
    assert take_ids(broker) == [e2]  # the oldest first, then the next in line
    assert depths(broker) == zero_depths(low=1)
    job = take_jobs(broker)
    assert job == []
    broker.ack(broker_job(broker, e2), WORKER, "null")
    assert take_ids(broker) == [e3]
    assert limits.get("email").parked == 0


def test_a_parked_task_is_announced_with_the_limit_that_held_it(
        redis_server: EmbeddedRedis) -> None:
    with open_broker(redis_server.url, events_channel="tq-test-limits") as b:
        register(b, concurrency=8)
        limits = TypeLimits(b)
        limits.set("email", TypeLimit(concurrency=1))
        limits.set("sms", TypeLimit(rate="1/m"))
        ids = [t.id for t in b.enqueue_many(
            [make_spec(t) for t in ("email", "email", "sms", "sms", "other")])]
        sub = b.client.pubsub()
        sub.subscribe("tq-test-limits")
        assert sub.get_message(timeout=1)["type"] == "subscribe"
        assert take_ids(b) == [ids[0], ids[2], ids[4]]
        events = take_events(sub)
        sub.close()
    throttled_events = [e["data"] for e in events if e["type"] == "task.throttled"]
    assert throttled_events == [
        {"task_id": ids[1], "type": "email", "priority": "low", "queue": "default",
         "state": "pending", "limit": "concurrency"},
        {"task_id": ids[3], "type": "sms", "priority": "low", "queue": "default",
         "state": "pending", "limit": "rate"}]
    assert [e["type"] for e in events].count("task.started") == 3


def test_one_take_announces_at_most_16_parked_tasks(redis_server: EmbeddedRedis) -> None:
    """A take walks past every task of a type at its limit: one call may park thousands, so
    it sends at most 16 task.throttled events (the throttled metric counts them all)."""
    with open_broker(redis_server.url, events_channel="tq-test-limits") as b:
        register(b, concurrency=8)
        TypeLimits(b).set("email", TypeLimit(concurrency=1))
        ids = enqueue(b, *["email"] * 40, "other")
        sub = b.client.pubsub()
        sub.subscribe("tq-test-limits")
        assert sub.get_message(timeout=1)["type"] == "subscribe"
        assert take_ids(b) == [ids[0], ids[40]]
        events = take_events(sub)
        sub.close()
        assert throttled(b, "email") == 39
    parked = [e["data"]["task_id"] for e in events if e["type"] == "task.throttled"]
    assert parked == ids[1:17]


def test_the_oldest_pending_age_counts_parked_tasks(broker: Broker, limits: TypeLimits) -> None:
    limits.set("email", TypeLimit(concurrency=1))
    first, second = enqueue(broker, "email", "email")
    assert take_ids(broker) == [first]  # the second is parked: nothing else is in line
    enqueued = int(broker.client.hget(broker.keys.task(second), "enqueued_us"))
    assert Inspector(broker).oldest_pending_us()[0] == enqueued


def broker_job(broker: Broker, task_id: str) -> Job:
    """The running attempt of a task as its worker holds it (id and fence)."""
    f = broker.client.hmget(broker.keys.task(task_id), "fence", "type")
    return Job(task_id, 1, f[0], 1, f[1], {}, {}, 0, 60, 0.0, 0)


def end_by_ack(broker: Broker, job: Job) -> None:
    broker.ack(job, WORKER, "null")


def end_by_retry(broker: Broker, job: Job) -> None:
    broker.fail(job, WORKER, "boom")


def end_by_permanent_failure(broker: Broker, job: Job) -> None:
    broker.fail(job, WORKER, "boom", permanent=True)


def end_by_requeue(broker: Broker, job: Job) -> None:
    broker.requeue(job.id, WORKER, job.fence)


def end_by_finish_batch(broker: Broker, job: Job) -> None:
    broker.finish_and_dequeue(job, WORKER, True, "null", False, (3, 2, 1, 0))


def end_by_lost_lease(broker: Broker, job: Job) -> None:
    time.sleep(LEASE + 0.05)
    recovered, _ = broker.recover()
    assert [r.task_id for r in recovered] == [job.id]


@pytest.mark.parametrize("end", [end_by_ack, end_by_retry, end_by_permanent_failure,
                                 end_by_requeue, end_by_finish_batch, end_by_lost_lease])
def test_every_way_out_of_running_gives_the_slot_back(
        broker: Broker, limits: TypeLimits, end: Callable[[Broker, Job], None]) -> None:
    limits.set("email", TypeLimit(concurrency=1))
    first, second = enqueue(broker, "email", "email")
    (job,) = take_jobs(broker, 1)
    assert job.id == first and take_ids(broker) == []
    end(broker, job)
    broker.promote()  # a retried one is due again
    take_ids(broker)
    states = [broker.get(i).state for i in (first, second)]
    assert states.count(TaskState.RUNNING) == 1, states  # the slot came back, and was used
    assert broker.client.hget(broker.keys.type_running, "email") == "1"


def test_changing_a_limit_while_tasks_run_keeps_the_count(
        broker: Broker, limits: TypeLimits) -> None:
    limits.set("email", TypeLimit(concurrency=2))
    enqueue(broker, "email", "email", "email")
    jobs = take_jobs(broker)
    assert len(jobs) == 2
    limits.clear("email")
    assert take_ids(broker) != []  # no limit: the parked one went back in line
    limits.set("email", TypeLimit(concurrency=5))
    for job in jobs:
        broker.ack(job, WORKER, "null")
    # The third task started while no limit held: it was not counted, and never will be.
    assert broker.client.hgetall(broker.keys.type_running) == {}


def test_a_rate_lets_n_start_then_one_per_token(broker: Broker, limits: TypeLimits) -> None:
    limits.set("email", TypeLimit(rate="4/s"))
    ids = enqueue(broker, *["email"] * 6)
    assert take_ids(broker) == ids[:4]  # a full bucket
    assert take_ids(broker) == []
    moved, wait = broker.promote()
    assert wait is not None and 0 < wait <= 0.25  # the next token is due in 1/4 s
    time.sleep(wait + 0.02)
    broker.promote()
    assert take_ids(broker) == [ids[4]]
    assert depths(broker) == zero_depths(low=1)


def test_cancel_and_purge_reach_parked_tasks(broker: Broker, limits: TypeLimits) -> None:
    limits.set("email", TypeLimit(concurrency=1))
    ids = enqueue(broker, *["email"] * 4)
    take_ids(broker)
    broker.cancel(ids[1])
    assert limits.get("email").parked == 2
    assert depths(broker) == zero_depths(low=2)
    assert Inspector(broker).purge(0) == 2
    assert depths(broker) == zero_depths()
    assert limits.get("email").parked == 0
    assert broker.client.zcard(broker.keys.parked_all) == 0


def test_queue_full_counts_parked_tasks(redis_server: EmbeddedRedis) -> None:
    with open_broker(redis_server.url, max_pending=3) as b:
        register(b)
        TypeLimits(b).set("email", TypeLimit(concurrency=1))
        enqueue(b, "email", "email", "email")
        take_ids(b)
        enqueue(b, "email")
        with pytest.raises(errors.QueueFull):
            enqueue(b, "email")


def test_a_shard_without_limits_keeps_no_limit_state(broker: Broker) -> None:
    enqueue(broker, "email", "email")
    for job in take_jobs(broker):
        broker.ack(job, WORKER, "null")
    found = broker.client.keys("*limits*") + broker.client.keys("*parked*") + \
        broker.client.keys("*type-running*")
    assert found == []
    assert broker.client.hget(broker.keys.task(job.id), "lim") is None


def test_settings_are_written_once_and_a_runtime_change_sticks(
        broker: Broker, limits: TypeLimits) -> None:
    assert limits.sync({"email": TypeLimit(5, "100/s")}) == ["email"]
    limits.clear("email")
    assert limits.sync({"email": TypeLimit(5, "100/s")}) == []  # the DELETE sticks
    with pytest.raises(errors.TypeLimitNotFound):
        limits.get("email")
    assert limits.sync({"email": TypeLimit(6, "100/s")}) == ["email"]  # the setting changed
    assert limits.get("email").limit == TypeLimit(6, "100/s")


def test_a_queue_registered_later_gets_the_limits(broker: Broker, limits: TypeLimits) -> None:
    limits.set("email", TypeLimit(concurrency=1))
    broker.enqueue(dataclasses.replace(make_spec("email"), queue="late"))
    late = broker.queue_shards("late")[0]
    assert broker.client.hget(late.limits, "email") == "1||"


@pytest.mark.parametrize(("body", "field"), [
    ({"concurrency": 0}, "concurrency"), ({"concurrency": "2"}, "concurrency"),
    ({"concurrency": True}, "concurrency"), ({"rate": "10/d"}, "rate"),
    ({"concurrency": None, "rate": "1/s"}, "concurrency"), ({"rate": "\u0661/s"}, "rate"),
    ({"rate": "0/s"}, "rate"), ({"rate": 10}, "rate"), ({}, "concurrency"),
    ({"concurrency": 1, "burst": 2}, "burst"), ([], "body")])
def test_bad_limits_name_the_field(body: object, field: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        parse_limit(body)
    assert caught.value.field == field


def test_spec_round_trip() -> None:
    for limit in (TypeLimit(3, None), TypeLimit(None, "20/m"), TypeLimit(1, "7/h")):
        assert TypeLimit.from_spec(limit.spec()) == limit
