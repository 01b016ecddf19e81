"""End to end: a real worker rides out Redis restarts and lost replies."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tasks_app import producer
from tasks_app.core.errors import BrokerUnavailable
from tasks_app.core.inspect import Inspector
from tasks_app.core.keys import Keys
from tasks_app.core.states import TaskState
from tasks_app.devserver.redis import EmbeddedRedis
from tests.procs import (
    HEARTBEAT_TIMEOUT,
    LEASE_SECONDS,
    FaultyProxy,
    WorkerPool,
    wait_for,
    wait_for_state,
)
from workers_app.runtime.backoff import Backoff

pytestmark = pytest.mark.once  # Redis restarted under real workers: the newest-Python leg


@pytest.fixture
def proxy(redis_server: EmbeddedRedis) -> Iterator[FaultyProxy]:
    faulty = FaultyProxy(redis_server.port)
    yield faulty
    faulty.close()


def dequeue_request(worker_id: str) -> bytes:
    """What an idle slot's dequeue call looks like on the wire: the pending key, then the
    worker id."""
    key = Keys("default").pending
    return f"${len(key)}\r\n{key}\r\n${len(worker_id)}\r\n{worker_id}\r\n".encode()


def redis_answers(inspector: Inspector) -> bool:
    try:
        return inspector.broker.ping()
    except BrokerUnavailable:
        return False


def test_idle_worker_carries_on_after_redis_restarts(
        pool: WorkerPool, inspector: Inspector, redis_server: EmbeddedRedis) -> None:
    worker = pool.start(concurrency=2, inspector=inspector)
    before = producer.enqueue("echo", {"when": "before"})
    wait_for_state(before.id, "completed", timeout=5)
    later = producer.enqueue("echo", {"when": "scheduled"}, delay=1.0)

    redis_server.restart()
    wait_for(lambda: redis_answers(inspector), timeout=5, message="redis to answer")

    after = producer.enqueue("echo", {"when": "after"})
    assert wait_for_state(after.id, "completed", timeout=10).result == {"when": "after"}
    assert wait_for_state(later.id, "completed", timeout=10).result == {"when": "scheduled"}
    kept = producer.get(before.id)
    assert (kept.state, kept.result) == (TaskState.COMPLETED, {"when": "before"})
    assert [t.attempts for t in map(producer.get, (before.id, later.id, after.id))] == [1, 1, 1]
    assert sum(q.depth + q.scheduled for q in inspector.queue_stats()) == 0
    assert inspector.running_count() == 0
    assert inspector.dlq_size() == 0
    assert worker.alive
    wait_for(lambda: worker.info(inspector), timeout=3, message="the worker to be registered")


def test_task_running_across_a_redis_restart_completes_once(
        pool: WorkerPool, inspector: Inspector, redis_server: EmbeddedRedis) -> None:
    # A roomy lease: this checks that the outcome is recorded, not lease timing.
    roomy = {"TASKQUEUE_LEASE_SECONDS": "5", "TASKQUEUE_HEARTBEAT_TIMEOUT": "5"}
    worker = pool.start(concurrency=1, env=roomy, inspector=inspector)
    task = producer.enqueue("sleep", {"seconds": 1})
    wait_for_state(task.id, "running", timeout=5)

    redis_server.restart()
    wait_for(lambda: redis_answers(inspector), timeout=5, message="redis to answer")

    done = wait_for_state(task.id, ["completed", "retrying", "dead_letter"], timeout=10)
    assert (done.state, done.attempts, done.result) == (TaskState.COMPLETED, 1, {"slept": 1})
    assert len(worker.log_lines(f"started sleep {task.id}")) == 1
    echo = producer.enqueue("echo", {"still": "serving"})
    assert wait_for_state(echo.id, "completed", timeout=5).attempts == 1
    assert inspector.running_count() == 0


def test_lost_reply_to_a_dequeue_does_not_cost_the_task_an_attempt(
        proxy: FaultyProxy, pool: WorkerPool, inspector: Inspector) -> None:
    # Armed before the worker starts: an idle slot sends its take (pipelined behind its
    # wait) before anything is enqueued, and the proxy then watches that connection's
    # replies until one hands out a task.
    worker_id = "w-lost-reply"
    proxy.lose_reply(dequeue_request(worker_id), b"$4\r\ntask\r\n")  # one that got a task
    pool.start(concurrency=1, env={"REDIS_URL": proxy.url}, inspector=inspector,
               worker_id=worker_id)
    task = producer.enqueue("echo", {"once": True}, max_retries=0)
    if not proxy.lost.wait(5):
        raise RuntimeError("the worker never sent a dequeue through the proxy")

    done = wait_for_state(task.id, ["completed", "dead_letter", "failed"], timeout=6)
    assert (done.state, done.attempts, done.error) == (TaskState.COMPLETED, 1, None)
    assert done.result == {"once": True}


def test_task_that_finished_in_time_is_not_timed_out_while_redis_is_away(
        pool: WorkerPool, inspector: Inspector, redis_server: EmbeddedRedis) -> None:
    # A roomy lease, so only the time limit can end the attempt while Redis is away.
    roomy = {"TASKQUEUE_LEASE_SECONDS": "30", "TASKQUEUE_HEARTBEAT_TIMEOUT": "30"}
    worker = pool.start(concurrency=1, env=roomy, inspector=inspector)
    task = producer.enqueue("sleep", {"seconds": 0.5}, timeout=1)
    wait_for_state(task.id, "running", timeout=5)

    redis_server.stop()  # the handler ends at 0.5 s and its slot waits to report it
    time.sleep(3.5)  # past the 1 s limit plus the supervisor's 2 s hard-kill grace
    redis_server.start()

    done = wait_for_state(task.id, ["completed", "dead_letter"], timeout=10)
    assert (done.state, done.attempts, done.result) == (TaskState.COMPLETED, 1, {"slept": 0.5})
    assert len(worker.log_lines(f"started sleep {task.id}")) == 1


def test_paused_worker_stays_paused_across_a_redis_outage(
        pool: WorkerPool, inspector: Inspector, redis_server: EmbeddedRedis) -> None:
    worker = pool.start(concurrency=1, inspector=inspector)
    inspector.pause_worker(worker.id)

    redis_server.stop()
    time.sleep(2 * HEARTBEAT_TIMEOUT + 0.5)  # longer than the registry record lives unrefreshed
    redis_server.start()
    wait_for(lambda: redis_answers(inspector), timeout=5, message="redis to answer")
    task = producer.enqueue("echo", {"while": "paused"})

    back = wait_for(lambda: worker.info(inspector), timeout=5, message="the worker to re-register")
    assert back.state == "paused"
    time.sleep(4)  # the slot's back-off after the outage, then more than one idle wait
    assert producer.get(task.id).state == TaskState.PENDING


def test_slot_killed_while_redis_is_slow_still_counts_the_attempt(
        proxy: FaultyProxy, pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(concurrency=1, env={"REDIS_URL": proxy.url}, inspector=inspector)
    task = producer.enqueue("sleep", {"seconds": 2}, max_retries=0)
    # Started in the slot, not only taken in Redis (a dequeue reply still on its way is
    # not yet the slot's: killed then, the heartbeat puts the task back uncounted).
    wait_for(lambda: worker.log_lines(f"started sleep {task.id}"), timeout=5,
             message="the slot to start the task")
    # The supervisor's report of the dead slot meets a slow Redis; heartbeats carry on.
    proxy.hold(task.id.encode(), b"worker lost", seconds=1.5)
    time.sleep(LEASE_SECONDS / 2 + 0.1)  # past the age at which a silent task looks orphaned
    (slot,) = worker.slot_pids()
    os.kill(slot, signal.SIGKILL)  # as the kernel's OOM killer would
    if not proxy.held.wait(5):
        raise RuntimeError("the supervisor never reported the dead slot")

    done = wait_for_state(task.id, ["completed", "dead_letter", "failed"], timeout=8)
    assert (done.state, done.error, done.attempts) == (TaskState.DEAD_LETTER, "worker lost", 1)
    assert len(worker.log_lines(f"started sleep {task.id}")) == 1


def test_slots_that_lost_redis_together_do_not_reconnect_in_step() -> None:
    """Eight slots after the same failures wait different times, within the step's upper half,
    and the waits still double up to the cap."""
    slots = [Backoff(0.1) for _ in range(8)]
    for _ in range(3):
        waits = [slot.next_delay() for slot in slots]
    step = 0.1 * 2**3
    assert all(step / 2 <= wait <= step for wait in waits)
    assert len(set(waits)) == len(waits) and max(waits) - min(waits) > step / 20
    for _ in range(20):
        late = slots[0].next_delay()
    assert 2.5 <= late <= 5.0
    slots[0].reset()
    assert 0.1 <= slots[0].next_delay() <= 0.2
