"""The state machine: every (state, operation) pair against the scripts, retries, backoff, TTLs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from tasks_app.core.broker import Broker, new_task_id
from tasks_app.core.errors import (
    NotCancellable,
    NotInDeadLetterQueue,
    StaleLease,
    TaskNotFound,
    TaskQueueError,
)
from tasks_app.core.inspect import Inspector
from tasks_app.core.states import TERMINAL, TRANSITIONS, TaskState
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import (
    SEED_DELAY_MS,
    WORKER,
    Seeded,
    make_spec,
    open_broker,
    register,
    seed,
    state_of,
    take,
)

S = TaskState
LEASE = 0.05
RESULT_TTL = 100.0


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    """A broker with a tiny lease and backoff so recovery and promotion are quick to reach."""
    with open_broker(redis_server.url, lease_seconds=LEASE, retry_backoff_base=SEED_DELAY_MS / 1000,
                     retry_backoff_max=SEED_DELAY_MS / 1000, result_ttl=RESULT_TTL) as b:
        yield b


def _past_due() -> None:
    time.sleep(max(LEASE, SEED_DELAY_MS / 1000) + 0.03)


def _dequeue(b: Broker, t: Seeded) -> None:
    b.dequeue(WORKER, (0, 1, 2, 3))


def _cancel(b: Broker, t: Seeded) -> None:
    b.cancel(t.id)


def _ack(b: Broker, t: Seeded) -> None:
    b.ack(t, WORKER, '"again"')


def _fail(b: Broker, t: Seeded) -> None:
    b.fail(t, WORKER, "boom")


def _fail_permanent(b: Broker, t: Seeded) -> None:
    b.fail(t, WORKER, "boom", permanent=True)


def _requeue(b: Broker, t: Seeded) -> None:
    b.requeue(t.id, WORKER, t.fence)


def _promote(b: Broker, t: Seeded) -> None:
    _past_due()
    b.promote()


def _recover(b: Broker, t: Seeded) -> None:
    _past_due()
    b.recover()


def _dlq_retry(b: Broker, t: Seeded) -> None:
    Inspector(b).dlq_retry(t.id)


def _purge(b: Broker, t: Seeded) -> None:
    Inspector(b).purge(b.get(t.id).priority)


OPS: dict[str, Callable[[Broker, Seeded], None]] = {
    "dequeue": _dequeue,
    "cancel": _cancel,
    "ack": _ack,
    "fail": _fail,
    "fail_permanent": _fail_permanent,
    "requeue": _requeue,
    "promote": _promote,
    "recover": _recover,
    "dlq_retry": _dlq_retry,
    "purge": _purge,
}


@dataclass(frozen=True)
class Expect:
    """The state a task is in after an operation, and the error the operation raised."""

    state: TaskState
    error: type[TaskQueueError] | None = None


def _refused(state: TaskState, **errors: type[TaskQueueError]) -> dict[str, Expect]:
    """Every operation leaves ``state`` as it is; ``errors`` says which ones raise."""
    return {op: Expect(state, errors.get(op)) for op in OPS}


def _table() -> dict[str, dict[str, Expect]]:
    stale = {"ack": StaleLease, "fail": StaleLease, "fail_permanent": StaleLease,
             "requeue": StaleLease}
    not_dlq = {"dlq_retry": NotInDeadLetterQueue}
    ended_by_fail = {"ack": StaleLease, "requeue": StaleLease, "cancel": NotCancellable, **not_dlq}
    running = {
        **_refused(S.RUNNING, cancel=NotCancellable, **not_dlq),
        "ack": Expect(S.COMPLETED),
        "fail": Expect(S.RETRYING),
        "fail_permanent": Expect(S.FAILED),
        "requeue": Expect(S.PENDING),
        "recover": Expect(S.RETRYING),
    }
    return {
        "pending": {**_refused(S.PENDING, **stale, **not_dlq),
                    "dequeue": Expect(S.RUNNING), "cancel": Expect(S.CANCELLED),
                    "purge": Expect(S.CANCELLED)},
        "scheduled": {**_refused(S.SCHEDULED, **stale, **not_dlq),
                      "cancel": Expect(S.CANCELLED), "promote": Expect(S.PENDING)},
        "running": running,
        "running_last_attempt": {**running, "fail": Expect(S.DEAD_LETTER),
                                 "recover": Expect(S.DEAD_LETTER)},
        # A repeated fail with the attempt's own fence is a retried call: answered, not applied.
        "retrying": {**_refused(S.RETRYING, ack=StaleLease, requeue=StaleLease, **not_dlq),
                     "cancel": Expect(S.CANCELLED), "promote": Expect(S.PENDING)},
        "completed": _refused(S.COMPLETED, cancel=NotCancellable, fail=StaleLease,
                              fail_permanent=StaleLease, requeue=StaleLease, **not_dlq),
        "failed": _refused(S.FAILED, **ended_by_fail),
        "dead_letter": {**_refused(S.DEAD_LETTER, ack=StaleLease, requeue=StaleLease,
                                   cancel=NotCancellable),
                        "dlq_retry": Expect(S.PENDING)},
        "cancelled": _refused(S.CANCELLED, cancel=NotCancellable, **stale, **not_dlq),
    }


TABLE = _table()
CASES = [(seed_name, op) for seed_name, row in TABLE.items() for op in row]


@pytest.mark.parametrize(("seed_name", "op"), CASES)
def test_operation_in_state(broker: Broker, seed_name: str, op: str) -> None:
    task = seed(broker, seed_name)
    expect = TABLE[seed_name][op]
    if expect.error is None:
        OPS[op](broker, task)
    else:
        with pytest.raises(expect.error):
            OPS[op](broker, task)
    assert state_of(broker, task.id) is expect.state


def test_the_table_above_is_the_transitions_of_states_py() -> None:
    allowed = {
        (S(name.removesuffix("_last_attempt")), expect.state)
        for name, row in TABLE.items()
        for expect in row.values()
        if expect.error is None and expect.state.value != name.removesuffix("_last_attempt")
    }
    documented = {(src, dst) for src, targets in TRANSITIONS.items() for dst in targets}
    assert allowed == documented
    assert {s for s in S if not TRANSITIONS[s]} == TERMINAL
    assert {src for src, dst in documented if dst is S.CANCELLED} == {
        S.PENDING, S.SCHEDULED, S.RETRYING}


@pytest.mark.parametrize("state", [S.RUNNING, S.COMPLETED, S.FAILED, S.DEAD_LETTER, S.CANCELLED])
def test_cancel_refusal_names_the_state(broker: Broker, state: TaskState) -> None:
    task = seed(broker, state.value)
    with pytest.raises(NotCancellable) as caught:
        broker.cancel(task.id)
    assert caught.value.state == state.value


def test_pending_running_completed_keeps_result_and_times(broker: Broker) -> None:
    register(broker)
    created = broker.enqueue(make_spec(payload={"n": 1}))
    assert created.state is S.PENDING and state_of(broker, created.id) is S.PENDING
    job = take(broker)
    running = broker.get(job.id)
    assert (running.state, running.attempts, running.worker_id) == (S.RUNNING, 1, WORKER)
    assert job.attempt == 1 and job.payload == {"n": 1}
    outcome = broker.ack(job, WORKER, '{"answer": 42}')
    done = broker.get(job.id)
    assert outcome.state is S.COMPLETED and not outcome.duplicate
    assert done.state is S.COMPLETED and done.result == {"answer": 42}
    assert done.started_at is not None and done.completed_at is not None
    assert done.created_at <= done.started_at <= done.completed_at
    assert broker.dequeue(WORKER, (0, 1, 2, 3)) == "empty"


@pytest.mark.parametrize(("max_retries", "attempts"), [(0, 1), (1, 2), (2, 3), (5, 6)])
def test_max_retries_counts_retries_after_the_first_attempt(
    redis_server: EmbeddedRedis, max_retries: int, attempts: int
) -> None:
    with open_broker(redis_server.url, retry_backoff_base=0.001, retry_backoff_max=0.001) as b:
        register(b)
        task = b.enqueue(make_spec(max_retries=max_retries))
        seen: list[TaskState] = []
        for n in range(1, attempts + 1):
            job = take(b)
            assert job.attempt == n
            outcome = b.fail(job, WORKER, f"failure {n}")
            seen.append(outcome.state)
            time.sleep(0.003)
            b.promote()
        assert seen == [S.RETRYING] * max_retries + [S.DEAD_LETTER]
        dead = b.get(task.id)
        assert (dead.state, dead.attempts, dead.error) == (S.DEAD_LETTER, attempts,
                                                          f"failure {attempts}")
        assert dead.next_retry_at is None
        [entry] = Inspector(b).dlq_page()
        assert entry.message_id == outcome.dlq_message_id
        assert (entry.task_id, entry.reason, entry.error) == (
            task.id, "max retries exceeded", f"failure {attempts}")
        assert b.dequeue(WORKER, (0, 1, 2, 3)) == "empty"


def test_retrying_task_waits_then_promote_makes_it_pending(broker: Broker) -> None:
    task = seed(broker, "retrying")
    retrying = broker.get(task.id)
    assert retrying.error == "boom" and retrying.next_retry_at is not None
    assert broker.dequeue(WORKER, (0, 1, 2, 3)) == "empty"
    _past_due()
    assert broker.promote()[0] == 1
    promoted = broker.get(task.id)
    assert promoted.state is S.PENDING and promoted.next_retry_at is None
    assert take(broker).attempt == 2


BACKOFF = {"retry_backoff_base": 0.1, "retry_backoff_factor": 3.0, "retry_backoff_max": 0.5}
"""Attempt 1 waits 50-100 ms, attempt 2 150-300 ms, attempt 3 is capped: 250-500 ms."""


def _bounds_ms(attempt: int) -> tuple[int, int]:
    full = min(BACKOFF["retry_backoff_max"],
               BACKOFF["retry_backoff_base"] * BACKOFF["retry_backoff_factor"] ** (attempt - 1))
    return int(full * 1000 / 2), int(full * 1000)


def test_backoff_is_exponential_with_jitter_and_capped(redis_server: EmbeddedRedis) -> None:
    count = 12
    with open_broker(redis_server.url, **BACKOFF) as b:
        register(b)
        b.enqueue_many([make_spec(max_retries=5) for _ in range(count)])
        for attempt in (1, 2, 3):
            delays = []
            for _ in range(count):
                job = take(b)
                assert job.attempt == attempt
                outcome = b.fail(job, WORKER, "again")
                task = b.get(job.id)
                assert task.next_retry_at == outcome.next_retry_at
                assert outcome.next_retry_at is not None
                delays.append(outcome.next_retry_at - task.updated_at)
            low, high = _bounds_ms(attempt)
            assert all(low <= d <= high for d in delays), (attempt, delays)
            assert len(set(delays)) > 1, f"no jitter: {delays}"
            if attempt < 3:
                time.sleep(high / 1000 + 0.01)
                assert b.promote()[0] == count


def test_permanent_failure_is_never_retried(broker: Broker) -> None:
    task = seed(broker, "running")
    assert task.job is not None
    outcome = broker.fail(task, WORKER, "bad input", permanent=True)
    assert outcome.state is S.FAILED
    _past_due()
    assert broker.promote()[0] == 0
    assert broker.dequeue(WORKER, (0, 1, 2, 3)) == "empty"
    failed = broker.get(task.id)
    assert (failed.state, failed.error, failed.attempts) == (S.FAILED, "bad input", 1)
    assert Inspector(broker).dlq_size() == 0


def _now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.mark.parametrize("how", ["delay", "scheduled_at"])
def test_scheduled_task_becomes_pending_when_due(
    broker: Broker, redis_client: redis.Redis, how: str
) -> None:
    register(broker)
    if how == "delay":
        spec = make_spec(delay_ms=SEED_DELAY_MS)
    else:
        spec = make_spec(scheduled_at_ms=_now_ms(redis_client) + SEED_DELAY_MS)
    created = broker.enqueue(spec)
    stored = broker.get(spec.id)
    assert created.state is S.SCHEDULED and stored.state is S.SCHEDULED
    assert stored.scheduled_at == created.scheduled_at
    assert broker.promote()[0] == 0
    assert broker.dequeue(WORKER, (0, 1, 2, 3)) == "empty"
    _past_due()
    assert broker.promote()[0] == 1
    assert state_of(broker, spec.id) is S.PENDING
    assert take(broker).id == spec.id


def test_scheduled_at_in_the_past_is_pending_at_once(
    broker: Broker, redis_client: redis.Redis
) -> None:
    spec = make_spec(scheduled_at_ms=_now_ms(redis_client) - 60_000)
    assert broker.enqueue(spec).state is S.PENDING
    assert state_of(broker, spec.id) is S.PENDING
    register(broker)
    assert take(broker).id == spec.id


@pytest.mark.parametrize("seed_name", ["pending", "scheduled", "retrying"])
def test_cancelled_task_leaves_its_queue_and_never_runs(broker: Broker, seed_name: str) -> None:
    task = seed(broker, seed_name)
    cancelled = broker.cancel(task.id)
    assert cancelled.state is S.CANCELLED and cancelled.next_retry_at is None
    _past_due()
    assert broker.promote()[0] == 0
    assert broker.dequeue(WORKER, (0, 1, 2, 3)) == "empty"
    stats = Inspector(broker).queue_stats()
    assert all(s.depth == 0 and s.scheduled == 0 for s in stats)
    assert state_of(broker, task.id) is S.CANCELLED


def test_dlq_retry_resets_attempts_and_error(broker: Broker, redis_client: redis.Redis) -> None:
    task = seed(broker, "dead_letter")
    assert redis_client.xlen(broker.keys.dlq) == 1
    Inspector(broker).dlq_retry(task.id)
    revived = broker.get(task.id)
    assert (revived.state, revived.attempts, revived.error) == (S.PENDING, 0, None)
    assert redis_client.xlen(broker.keys.dlq) == 0
    job = take(broker)
    assert (job.id, job.attempt) == (task.id, 1)
    assert job.fence != task.fence


@pytest.mark.parametrize("seed_name", ["completed", "failed", "cancelled"])
def test_finished_task_expires_after_result_ttl(
    broker: Broker, redis_client: redis.Redis, seed_name: str
) -> None:
    task = seed(broker, seed_name)
    ttl = redis_client.pttl(broker.keys.task(task.id))
    assert RESULT_TTL * 1000 - 5_000 < ttl <= RESULT_TTL * 1000


@pytest.mark.parametrize(
    "seed_name", ["pending", "scheduled", "running", "retrying", "dead_letter"]
)
def test_unfinished_and_dead_tasks_do_not_expire(
    broker: Broker, redis_client: redis.Redis, seed_name: str
) -> None:
    task = seed(broker, seed_name)
    assert redis_client.pttl(broker.keys.task(task.id)) == -1


def test_dlq_retried_task_that_then_completes_gets_the_ttl(
    broker: Broker, redis_client: redis.Redis
) -> None:
    task = seed(broker, "dead_letter")
    Inspector(broker).dlq_retry(task.id)
    broker.ack(take(broker), WORKER, "1")
    assert redis_client.pttl(broker.keys.task(task.id)) > 0


BAD_IDS = ["", "nope", "123", "../../etc", "tq:{default}:seq", new_task_id()]


@pytest.mark.parametrize("task_id", BAD_IDS)
def test_unknown_or_malformed_ids_are_not_found(broker: Broker, task_id: str) -> None:
    with pytest.raises(TaskNotFound):
        broker.get(task_id)
    with pytest.raises(TaskNotFound):
        broker.cancel(task_id)


@pytest.mark.parametrize("op", ["ack", "fail", "requeue"])
def test_worker_reports_on_an_unknown_task_are_not_found(broker: Broker, op: str) -> None:
    with pytest.raises(TaskNotFound):
        OPS[op](broker, Seeded(new_task_id(), None))
