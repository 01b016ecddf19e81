"""Leases and fencing: recovery of lost attempts, stale reports, idempotent acks, heartbeats."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tasks_app.core.broker import Beat, Broker
from tasks_app.core.errors import StaleLease
from tasks_app.core.inspect import Inspector
from tasks_app.core.states import TaskState
from tasks_app.core.task import Lease
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import WORKER, make_spec, open_broker, register, state_of, take

S = TaskState
LEASE = 0.15
OTHER = "worker-2"


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    """A broker with a short lease and a near-zero backoff."""
    with open_broker(redis_server.url, lease_seconds=LEASE, retry_backoff_base=0.001,
                     retry_backoff_max=0.001) as b:
        yield b


def _lose_lease(broker: Broker) -> list[str]:
    """Let every lease expire and run the recoverer; return the recovered ids."""
    time.sleep(LEASE + 0.03)
    recovered, _ = broker.recover()
    return [r.task_id for r in recovered]


def test_expired_lease_is_recovered_as_worker_lost(broker: Broker) -> None:
    register(broker)
    task = broker.enqueue(make_spec(max_retries=2))
    take(broker)
    assert broker.recover() == ([], [])
    assert _lose_lease(broker) == [task.id]
    lost = broker.get(task.id)
    assert (lost.state, lost.error, lost.attempts) == (S.RETRYING, "worker lost", 1)
    assert lost.next_retry_at is not None
    assert Inspector(broker).running_count() == 0
    assert broker.recover() == ([], [])


def test_recovered_last_attempt_goes_to_dead_letter(broker: Broker) -> None:
    register(broker)
    task = broker.enqueue(make_spec(max_retries=0))
    take(broker)
    _lose_lease(broker)
    dead = broker.get(task.id)
    assert (dead.state, dead.error, dead.dlq_reason) == (
        S.DEAD_LETTER, "worker lost", "max retries exceeded")
    assert Inspector(broker).dlq_size() == 1


def test_old_worker_ack_is_stale_and_task_completes_once(broker: Broker) -> None:
    register(broker)
    register(broker, OTHER)
    task = broker.enqueue(make_spec(max_retries=2))
    old = take(broker)
    _lose_lease(broker)
    with pytest.raises(StaleLease):
        broker.ack(old, WORKER, '"from the old worker"')
    assert state_of(broker, task.id) is S.RETRYING
    time.sleep(0.005)
    broker.promote()
    new = take(broker, OTHER)
    assert (new.id, new.attempt) == (task.id, 2)
    assert new.fence != old.fence
    with pytest.raises(StaleLease):
        broker.ack(old, WORKER, '"from the old worker"')
    assert broker.ack(new, OTHER, '"from the new worker"').duplicate is False
    with pytest.raises(StaleLease):
        broker.ack(old, WORKER, '"from the old worker"')
    done = broker.get(task.id)
    assert (done.state, done.result, done.worker_id, done.attempts) == (
        S.COMPLETED, "from the new worker", OTHER, 2)


@pytest.mark.parametrize("op", ["fail", "requeue"])
def test_old_worker_fail_or_requeue_after_takeover_is_stale(broker: Broker, op: str) -> None:
    register(broker)
    register(broker, OTHER)
    task = broker.enqueue(make_spec(max_retries=2))
    old = take(broker)
    _lose_lease(broker)
    time.sleep(0.005)
    broker.promote()
    new = take(broker, OTHER)
    with pytest.raises(StaleLease):
        if op == "fail":
            broker.fail(old, WORKER, "late failure")
        else:
            broker.requeue(task.id, WORKER, old.fence)
    still = broker.get(task.id)
    assert (still.state, still.attempts, still.worker_id) == (S.RUNNING, 2, OTHER)
    broker.ack(new, OTHER, "1")


def test_old_worker_fail_right_after_recovery_is_stale_and_changes_nothing(
    broker: Broker,
) -> None:
    register(broker)
    task = broker.enqueue(make_spec(max_retries=2))
    old = take(broker)
    _lose_lease(broker)
    before = broker.get(task.id)
    with pytest.raises(StaleLease):
        broker.fail(old, WORKER, "late failure")
    with pytest.raises(StaleLease):
        broker.requeue(task.id, WORKER, old.fence)
    assert broker.get(task.id) == before


def test_every_attempt_gets_a_new_fence(broker: Broker) -> None:
    register(broker)
    task = broker.enqueue(make_spec(max_retries=3))
    fences = []
    for _ in range(3):
        job = take(broker)
        fences.append(job.fence)
        broker.fail(job, WORKER, "again")
        time.sleep(0.005)
        broker.promote()
    job = take(broker)
    broker.requeue(job.id, WORKER, job.fence)
    fences += [job.fence, take(broker).fence]
    assert len(set(fences)) == len(fences)
    assert state_of(broker, task.id) is S.RUNNING


def test_ack_retried_with_the_same_fence_is_a_duplicate(broker: Broker) -> None:
    register(broker)
    task = broker.enqueue(make_spec())
    job = take(broker)
    first = broker.ack(job, WORKER, '"first"')
    done = broker.get(task.id)
    second = broker.ack(job, WORKER, '"second"')
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.state is S.COMPLETED
    assert broker.get(task.id) == done
    assert done.result == "first"


def test_fail_retried_with_the_same_fence_counts_once(broker: Broker) -> None:
    register(broker)
    task = broker.enqueue(make_spec(max_retries=3))
    job = take(broker)
    first = broker.fail(job, WORKER, "boom")
    retrying = broker.get(task.id)
    second = broker.fail(job, WORKER, "boom")
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.state is S.RETRYING
    assert broker.get(task.id) == retrying
    assert retrying.attempts == 1


@pytest.mark.parametrize("op", ["ack", "fail", "requeue"])
def test_wrong_fence_on_a_running_task_is_stale(broker: Broker, op: str) -> None:
    register(broker)
    task = broker.enqueue(make_spec())
    job = take(broker)
    wrong = job.fence + "0"
    with pytest.raises(StaleLease):
        if op == "ack":
            broker.ack(Lease(task.id, wrong), WORKER, "1")
        elif op == "fail":
            broker.fail(Lease(task.id, wrong), WORKER, "boom")
        else:
            broker.requeue(task.id, WORKER, wrong)
    running = broker.get(task.id)
    assert (running.state, running.attempts) == (S.RUNNING, 1)
    assert broker.ack(job, WORKER, "1").duplicate is False


def test_heartbeat_renews_the_lease(broker: Broker) -> None:
    register(broker)
    task = broker.enqueue(make_spec())
    job = take(broker)
    for _ in range(3):
        time.sleep(LEASE * 0.6)
        beat = broker.heartbeat(WORKER, {}, [(job.id, job.fence)])
        paused, lost = beat.paused, beat.lost
        assert (paused, lost) == (False, [])
        assert broker.recover() == ([], [])
    assert state_of(broker, task.id) is S.RUNNING
    assert broker.ack(job, WORKER, "1").duplicate is False


def test_heartbeat_reports_leases_it_no_longer_holds(broker: Broker) -> None:
    register(broker)
    task = broker.enqueue(make_spec())
    job = take(broker)
    assert broker.heartbeat(WORKER, {}, [(job.id, "999999")]) == \
        Beat(False, [(task.id, "999999")], [])
    _lose_lease(broker)
    assert broker.heartbeat(WORKER, {}, [(job.id, job.fence)]) == \
        Beat(False, [(task.id, job.fence)], [])
    assert state_of(broker, task.id) is S.RETRYING


def test_heartbeat_of_a_stale_fence_does_not_extend_the_new_lease(broker: Broker) -> None:
    register(broker)
    register(broker, OTHER)
    task = broker.enqueue(make_spec(max_retries=2))
    old = take(broker)
    _lose_lease(broker)
    time.sleep(0.005)
    broker.promote()
    take(broker, OTHER)
    time.sleep(LEASE * 0.6)
    assert broker.heartbeat(WORKER, {}, [(old.id, old.fence)]) == \
        Beat(False, [(task.id, old.fence)], [])
    assert _lose_lease(broker) == [task.id]


def test_recoverer_reaps_workers_that_stopped_heartbeating(redis_server: EmbeddedRedis) -> None:
    with open_broker(redis_server.url, heartbeat_interval=0.05, heartbeat_timeout=0.2) as b:
        register(b, "silent")
        register(b, "alive")
        inspector = Inspector(b)
        assert sorted(w.id for w in inspector.workers()) == ["alive", "silent"]
        for _ in range(3):
            time.sleep(0.1)
            register(b, "alive")
        assert b.recover() == ([], ["silent"])
        assert [w.id for w in inspector.workers()] == ["alive"]
        assert b.dequeue("silent", (0,)) == "unregistered"
        assert b.recover() == ([], [])


def test_fences_are_never_reused_even_if_the_counter_rolls_back(broker: Broker) -> None:
    register(broker)
    broker.enqueue(make_spec())
    first = take(broker)
    broker.client.delete(broker.keys.fence)  # as if Redis lost its last second of writes
    broker.enqueue(make_spec())
    second = take(broker)
    assert first.fence != second.fence
