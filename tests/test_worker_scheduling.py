"""End to end: when a real worker starts tasks (schedule, priority, pause, idle wake-up)."""

from __future__ import annotations

import time

from tasks_app import producer
from tasks_app.core.inspect import Inspector
from tasks_app.core.states import TaskState
from tests.procs import WorkerPool, wait_for_state


def test_delayed_task_runs_when_due_not_before(pool: WorkerPool, inspector: Inspector) -> None:
    pool.start(concurrency=1, inspector=inspector)
    task = producer.enqueue("echo", {"late": True}, delay=1.5)
    assert task.scheduled_at == task.created_at + 1500

    time.sleep(1.0)
    assert producer.get(task.id).state == TaskState.SCHEDULED
    done = wait_for_state(task.id, "completed", timeout=5)
    assert done.started_at is not None
    assert done.started_at >= task.created_at + 1500
    assert done.started_at - (task.created_at + 1500) <= 700


def test_task_cancelled_before_it_is_due_never_runs(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(concurrency=1, inspector=inspector)
    cancelled = producer.enqueue("echo", {"run": False}, delay=1.0)
    control = producer.enqueue("echo", {"run": True}, delay=1.0)
    assert producer.cancel(cancelled.id).state == TaskState.CANCELLED

    wait_for_state(control.id, "completed", timeout=5)
    time.sleep(0.3)
    gone = producer.get(cancelled.id)
    assert (gone.state, gone.attempts, gone.started_at) == (TaskState.CANCELLED, 0, None)
    assert worker.log_lines(cancelled.id) == []


def test_tasks_start_in_priority_order_and_a_paused_worker_takes_nothing(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(concurrency=1, inspector=inspector)
    inspector.pause_worker(worker.id)
    order = ["low", "normal", "high", "critical", "high", "low"]
    tasks = [producer.enqueue("sleep", {"seconds": 0.05, "i": i}, priority=p)
             for i, p in enumerate(order)]

    time.sleep(1.5)  # longer than an idle slot's wait
    assert [producer.get(t.id).state for t in tasks] == [TaskState.PENDING] * len(tasks)
    info = worker.info(inspector)
    assert info is not None and info.state == "paused"

    inspector.resume_worker(worker.id)
    done = [wait_for_state(t.id, "completed", timeout=5) for t in tasks]
    by_start = sorted(done, key=lambda t: t.started_at or 0)
    # Highest priority first; first in, first out within a priority.
    assert [t.payload["i"] for t in by_start] == [3, 2, 4, 1, 0, 5]
    assert len({t.started_at for t in done}) == len(done)


def test_idle_worker_starts_a_new_task_within_100_ms(
        pool: WorkerPool, inspector: Inspector) -> None:
    pool.start(concurrency=2, inspector=inspector)
    time.sleep(0.3)  # let both slots settle into their idle wait
    latencies = []
    for i in range(5):
        task = producer.enqueue("echo", {"i": i})
        done = wait_for_state(task.id, "completed", timeout=3)
        assert done.started_at is not None
        latencies.append(done.started_at - done.created_at)
        time.sleep(0.2)
    assert max(latencies) < 100, latencies
