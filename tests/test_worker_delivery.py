"""End to end: real runworker_tq processes run tasks exactly once and survive failures."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter

from tasks_app import producer
from tasks_app.core.inspect import Inspector, WorkerInfo
from tasks_app.core.states import TaskState
from tests.procs import (
    HEARTBEAT_TIMEOUT,
    RECOVERY_INTERVAL,
    WorkerPool,
    WorkerProcess,
    process_alive,
    wait_for,
    wait_for_state,
)

STARTED = re.compile(r"started (\w+) ([0-9a-f-]{36}) attempt (\d+)")


def reported_counts(worker: WorkerProcess, inspector: Inspector, processed: int) -> WorkerInfo:
    """The worker's registry record once its heartbeat reports ``processed`` tasks."""

    def reported() -> WorkerInfo | None:
        info = worker.info(inspector)
        return info if info is not None and info.processed == processed else None

    return wait_for(reported, timeout=2, message=f"the heartbeat to report {processed} task(s)")


def started_ids(*logs: str) -> Counter[str]:
    """How many times each task id was started, from the workers' debug logs."""
    return Counter(m.group(2) for log in logs for m in STARTED.finditer(log))


def test_thousand_echo_tasks_through_two_workers_complete_exactly_once(
        pool: WorkerPool, inspector: Inspector) -> None:
    a = pool.start(concurrency=2, inspector=inspector, name="a")
    b = pool.start(concurrency=2, inspector=inspector, name="b")

    tasks = producer.enqueue_many([{"type": "echo", "payload": {"n": i}} for i in range(1000)])
    ids = [t.id for t in tasks]

    def processed() -> int:
        return sum(w.processed for w in inspector.workers() if w.id in (a.id, b.id))

    wait_for(lambda: processed() >= 1000, timeout=30, interval=0.1,
             message="both workers to process 1,000 tasks")
    time.sleep(0.6)  # a few more heartbeats: an over-count would show up now
    by_worker = {w.id: w for w in inspector.workers()}
    assert by_worker[a.id].processed + by_worker[b.id].processed == 1000
    assert by_worker[a.id].processed > 0 and by_worker[b.id].processed > 0
    assert by_worker[a.id].failed == by_worker[b.id].failed == 0

    for i, task_id in enumerate(ids):
        task = producer.get(task_id)
        assert (task.state, task.attempts, task.result) == (TaskState.COMPLETED, 1, {"n": i})
        assert task.worker_id in (a.id, b.id)
    starts = started_ids(a.log(), b.log())
    assert set(starts) == set(ids)
    assert [tid for tid, n in starts.items() if n != 1] == []
    assert sum(q.depth for q in inspector.queue_stats()) == 0
    assert inspector.running_count() == 0


def test_kill_9_of_a_worker_hands_its_task_to_another_worker(
        pool: WorkerPool, inspector: Inspector) -> None:
    doomed = pool.start(concurrency=1, inspector=inspector, name="doomed")
    survivor = pool.start(concurrency=1, inspector=inspector, name="survivor")
    inspector.pause_worker(survivor.id)  # so the task goes to the doomed worker
    task = producer.enqueue("sleep", {"seconds": 1.5})
    wait_for_state(task.id, "running", timeout=5)
    assert producer.get(task.id).worker_id == doomed.id
    inspector.resume_worker(survivor.id)
    slots = doomed.slot_pids()
    assert len(slots) == 1

    doomed.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    doomed.wait(5)

    wait_for(lambda: not any(process_alive(pid) for pid in slots), timeout=2,
             message="the dead supervisor's slot processes to exit")
    # Reaped once its last heartbeat is older than the timeout, at the survivor's next sweep.
    reap_deadline = HEARTBEAT_TIMEOUT + 2 * RECOVERY_INTERVAL + 0.25
    wait_for(lambda: doomed.id not in {w.id for w in inspector.workers()},
             timeout=reap_deadline, message="the dead worker to leave the registry")
    assert time.monotonic() - killed_at < reap_deadline

    done = wait_for_state(task.id, ["completed", "dead_letter", "failed"], timeout=10)
    assert (done.state, done.attempts, done.result) == (TaskState.COMPLETED, 2, {"slept": 1.5})
    assert done.worker_id == survivor.id
    assert survivor.alive


def test_crashing_task_is_dead_lettered_after_three_attempts_and_the_worker_carries_on(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(concurrency=1, inspector=inspector)
    crash = producer.enqueue("crash", {}, max_retries=2)

    dead = wait_for_state(crash.id, "dead_letter", timeout=10)
    assert (dead.attempts, dead.error) == (3, "worker lost")
    entries = [e for e in inspector.dlq_page() if e.task_id == crash.id]
    assert [e.error for e in entries] == ["worker lost"]
    assert len(started_ids(worker.log())) == 1
    assert started_ids(worker.log())[crash.id] == 3

    echo = producer.enqueue("echo", {"after": "crash"})
    done = wait_for_state(echo.id, "completed", timeout=5)
    assert done.result == {"after": "crash"}
    assert worker.alive
    counted = reported_counts(worker, inspector, processed=1)
    assert (counted.pid, counted.processed, counted.failed) == (worker.pid, 1, 3)


def test_task_over_its_timeout_is_stopped_and_the_slot_runs_the_next_task(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(concurrency=1, inspector=inspector)
    slow = producer.enqueue("sleep", {"seconds": 30}, timeout=1, max_retries=0)
    wait_for_state(slow.id, "running", timeout=5)
    began = time.monotonic()

    dead = wait_for_state(slow.id, ["dead_letter", "failed", "completed"], timeout=5)
    assert (dead.state, dead.error, dead.attempts) == (
        TaskState.DEAD_LETTER, "timed out after 1 s", 1)
    assert time.monotonic() - began < 4

    queued_at = time.monotonic()
    echo = producer.enqueue("echo", {"next": True})
    wait_for_state(echo.id, "completed", timeout=3)
    assert time.monotonic() - queued_at < 3
    assert producer.get(slow.id).state == TaskState.DEAD_LETTER
    assert worker.alive
    counted = reported_counts(worker, inspector, processed=1)
    assert (counted.processed, counted.failed) == (1, 1)


def test_retries_until_success_and_permanent_failure_end_to_end(
        pool: WorkerPool, inspector: Inspector) -> None:
    pool.start(concurrency=2, inspector=inspector)
    flaky = producer.enqueue("fail", {"fail_times": 2}, max_retries=3)
    broken = producer.enqueue("fail", {"permanent": True, "message": "bad input"},
                              max_retries=3)

    done = wait_for_state(flaky.id, ["completed", "dead_letter"], timeout=10)
    assert (done.state, done.attempts, done.result) == (TaskState.COMPLETED, 3, {"ok": True})
    assert done.error is None
    failed = wait_for_state(broken.id, ["failed", "dead_letter", "retrying"], timeout=5)
    assert (failed.state, failed.attempts, failed.error) == (TaskState.FAILED, 1, "bad input")
    assert inspector.dlq_size() == 0



def test_worker_restarted_under_its_old_id_counts_the_attempt_its_predecessor_lost(
        pool: WorkerPool, inspector: Inspector) -> None:
    pinned = "pinned-worker"  # e.g. a Kubernetes pod name passed as --worker-id
    first = pool.start(concurrency=1, worker_id=pinned, inspector=inspector)
    task = producer.enqueue("sleep", {"seconds": 1.5}, max_retries=0)
    wait_for_state(task.id, "running", timeout=5)
    # the pod dies: supervisor and slot at once (a slot left alive could still finish the
    # task before the new process's first heartbeat, and complete it)
    first.kill_all()

    second = pool.start(concurrency=1, worker_id=pinned, inspector=inspector)
    done = wait_for_state(task.id, ["completed", "dead_letter", "failed"], timeout=8)
    assert (done.state, done.error, done.attempts) == (TaskState.DEAD_LETTER, "worker lost", 1)
    assert second.log_lines(f"started sleep {task.id}") == []
