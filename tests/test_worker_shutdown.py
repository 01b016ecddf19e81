"""End to end: how a real runworker_tq process stops (signals, --burst, --max-tasks)."""

from __future__ import annotations

import os
import signal
import time

from tasks_app import producer
from tasks_app.core.inspect import Inspector
from tasks_app.core.states import TaskState
from tests.procs import WorkerPool, process_alive, wait_for, wait_for_state


def registered_ids(inspector: Inspector) -> set[str]:
    return {w.id for w in inspector.workers()}


def test_idle_worker_exits_0_promptly_on_sigterm(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(concurrency=2, inspector=inspector)
    slots = worker.slot_pids()
    sent = time.monotonic()
    worker.terminate()
    assert worker.wait(5) == 0
    took = time.monotonic() - sent
    assert took < 3, f"took {took:.2f} s"  # well inside the 5 s grace: nothing to wait for
    assert worker.id not in registered_ids(inspector)
    assert [pid for pid in slots if process_alive(pid)] == []


def test_sigterm_lets_the_running_task_finish_then_exits_0(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(concurrency=2, inspector=inspector)
    task = producer.enqueue("sleep", {"seconds": 2})
    wait_for_state(task.id, "running", timeout=5)

    worker.terminate()
    wait_for(lambda: (info := worker.info(inspector)) is not None and info.state == "stopping",
             timeout=2, message="the registry to show the worker stopping")
    assert worker.wait(8) == 0

    done = producer.get(task.id)
    assert (done.state, done.attempts, done.result) == (TaskState.COMPLETED, 1, {"slept": 2})
    assert len(worker.log_lines(f"started sleep {task.id}")) == 1
    assert worker.id not in registered_ids(inspector)
    assert inspector.running_count() == 0


def test_ctrl_c_in_a_terminal_drains_like_sigterm(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(concurrency=2, inspector=inspector)
    task = producer.enqueue("sleep", {"seconds": 1})
    wait_for_state(task.id, "running", timeout=5)

    os.killpg(worker.pid, signal.SIGINT)  # a terminal signals the whole foreground group
    assert worker.wait(6) == 0

    done = producer.get(task.id)
    assert (done.state, done.attempts, done.result) == (TaskState.COMPLETED, 1, {"slept": 1})
    assert worker.id not in registered_ids(inspector)


def test_sigterm_past_the_grace_period_puts_the_task_back_uncounted(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start("--grace", "0.5", concurrency=1, inspector=inspector)
    task = producer.enqueue("sleep", {"seconds": 10})
    wait_for_state(task.id, "running", timeout=5)

    sent = time.monotonic()
    worker.terminate()
    assert worker.wait(5) == 0
    assert time.monotonic() - sent < 3

    back = producer.get(task.id)
    assert (back.state, back.attempts) == (TaskState.PENDING, 0)
    assert back.worker_id is None and back.started_at is None
    assert inspector.queue_depths()[back.priority.label] == 1
    assert inspector.running_count() == 0
    assert worker.id not in registered_ids(inspector)


def test_second_sigterm_forces_a_prompt_exit(pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start("--grace", "30", concurrency=1, inspector=inspector)
    task = producer.enqueue("sleep", {"seconds": 20})
    wait_for_state(task.id, "running", timeout=5)

    worker.terminate()
    time.sleep(0.5)
    assert worker.alive, "the first SIGTERM must wait for the running task"
    sent = time.monotonic()
    worker.signal(signal.SIGTERM)
    worker.wait(5)
    assert time.monotonic() - sent < 2

    back = producer.get(task.id)
    assert (back.state, back.attempts) == (TaskState.PENDING, 0)
    assert worker.id not in registered_ids(inspector)


def test_burst_exits_0_once_the_queue_is_empty(pool: WorkerPool, inspector: Inspector) -> None:
    tasks = producer.enqueue_many([{"type": "echo", "payload": {"n": i}} for i in range(10)])
    worker = pool.start("--burst", concurrency=2)

    assert worker.wait(15) == 0
    assert all(producer.get(t.id).state == TaskState.COMPLETED for t in tasks)
    assert worker.id not in registered_ids(inspector)


def test_burst_on_an_empty_queue_exits_at_once(pool: WorkerPool) -> None:
    worker = pool.start("--burst", concurrency=2)
    assert worker.wait(10) == 0


def test_max_tasks_exits_after_that_many_tasks(pool: WorkerPool, inspector: Inspector) -> None:
    tasks = producer.enqueue_many([{"type": "echo", "payload": {"n": i}} for i in range(8)])
    worker = pool.start("--max-tasks", "5", concurrency=2)

    assert worker.wait(15) == 0
    states = [producer.get(t.id).state for t in tasks]
    assert states.count(TaskState.COMPLETED) == 5
    assert states.count(TaskState.PENDING) == 3
    assert inspector.running_count() == 0


def test_priorities_option_leaves_other_priorities_alone(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start("--priorities", "high,critical", concurrency=2, inspector=inspector)
    info = worker.info(inspector)
    assert info is not None and sorted(info.priorities) == [2, 3]
    low = producer.enqueue("echo", {"p": "low"}, priority="low")
    normal = producer.enqueue("echo", {"p": "normal"}, priority="normal")
    high = producer.enqueue("echo", {"p": "high"}, priority="high")
    critical = producer.enqueue("echo", {"p": "critical"}, priority="critical")

    wait_for_state(high.id, "completed", timeout=5)
    wait_for_state(critical.id, "completed", timeout=5)
    time.sleep(1.2)  # longer than an idle slot's wait: it would have taken them by now
    assert producer.get(low.id).state == TaskState.PENDING
    assert producer.get(normal.id).state == TaskState.PENDING
    assert worker.alive
