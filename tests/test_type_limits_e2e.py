"""Per-type limits with real workers (4 workers x 4 slots): a concurrency limit holds over
every attempt's start and end while another type keeps completing, a rate holds within
10% over 10 s, and a worker killed with -9 while holding limited slots gives them back
once its lease runs out."""

from __future__ import annotations

import json

import pytest

from tasks_app import producer
from tasks_app.connection import get_broker
from tasks_app.core.inspect import Inspector
from tasks_app.core.limits import TypeLimit
from tasks_app.core.states import TaskState
from tasks_app.core.task import Task
from tests.procs import WorkerPool, wait_for

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.once]  # the engine under real workers: the newest-Python leg runs it


def start_workers(pool: WorkerPool, n: int = 4, slots: int = 4,
                  env: dict[str, str] | None = None) -> None:
    inspector = Inspector(get_broker())
    for _ in range(n):
        pool.start(concurrency=slots, env=env, inspector=inspector)


def all_done(ids: list[str], timeout: float) -> list[Task]:
    """Wait until every task completed; the tasks."""
    def done() -> list[Task] | None:
        tasks = [producer.get(i) for i in ids]
        return tasks if all(t.state is TaskState.COMPLETED for t in tasks) else None
    found = wait_for(done, timeout, interval=0.2)
    assert found is not None
    return found


def ms(task: Task, field: str) -> int:
    """A task's start or end on the Redis clock (ms)."""
    return int(get_broker().client.hget(get_broker().keys.task(task.id), field))


def most_at_once(tasks: list[Task]) -> int:
    """The most attempts running at one instant (an end at t comes before a start at t)."""
    edges = sorted([(ms(t, "started_at"), 1) for t in tasks] +
                   [(ms(t, "completed_at"), -1) for t in tasks])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_a_concurrency_limit_holds_while_another_type_flows(pool: WorkerPool) -> None:
    limited = [producer.enqueue("sleep", {"seconds": 0.2}).id for _ in range(12)]
    others = [producer.enqueue("echo", {"n": i}).id for i in range(300)]
    # The limit comes from the settings, written by the first worker that starts.
    start_workers(pool, env={"TASKQUEUE_TYPE_LIMITS": json.dumps({"sleep": {"concurrency": 2}})})
    sleeps = all_done(limited, 60)
    echoes = all_done(others, 60)
    assert most_at_once(sleeps) == 2
    # The echo tasks did not wait behind the limited ones: all done before the last
    # limited task even started (12 x 0.2 s at 2 at a time takes >= 1.2 s).
    assert max(ms(t, "completed_at") for t in echoes) < max(ms(t, "started_at") for t in sleeps)
    assert producer.type_limits().get("sleep").to_dict() == {
        "type": "sleep", "concurrency": 2, "rate": None, "running": 0, "parked": 0}


def test_a_rate_holds_within_ten_percent_over_ten_seconds(pool: WorkerPool) -> None:
    producer.type_limits().set("echo", TypeLimit(rate="20/s"))
    ids = [t.id for t in producer.enqueue_many([{"type": "echo"}] * 300)]
    start_workers(pool)
    starts = wait_for(lambda: _starts_after(ids, 12.5), 40, interval=0.5)
    assert starts is not None
    first = starts[0]
    # After the first second (the full bucket's burst of 20), 10 s of starts.
    window = [s for s in starts if first + 1000 <= s < first + 11_000]
    assert 180 <= len(window) <= 220, len(window)
    assert len([s for s in starts if s < first + 1000]) <= 20 + 20 + 1  # burst + refill


def _starts_after(ids: list[str], seconds: float) -> list[int] | None:
    """Every start so far, sorted, once the first is ``seconds`` old."""
    pipe = get_broker().client.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(get_broker().keys.task(task_id), "started_at")
    starts = sorted(int(s) for s in pipe.execute() if s)
    now_ms = int(get_broker().client.time()[0]) * 1000
    return starts if starts and now_ms - starts[0] >= seconds * 1000 else None


def test_a_killed_worker_gives_its_limited_slots_back(pool: WorkerPool) -> None:
    producer.type_limits().set("sleep", TypeLimit(concurrency=2))
    held = [producer.enqueue("sleep", {"seconds": 2}).id for _ in range(2)]
    inspector = Inspector(get_broker())
    victim = pool.start(concurrency=2, inspector=inspector)
    assert wait_for(lambda: producer.type_limits().get("sleep").running == 2 or None, 15)
    waiting = [producer.enqueue("sleep", {"seconds": 0.1}).id for _ in range(2)]
    victim.kill_all()
    start_workers(pool, n=1, slots=4)
    # The lease (1 s) runs out, the recoverer gives both slots back: the waiting tasks
    # run, and the killed worker's tasks are retried and complete too.
    all_done(waiting + held, 30)
    assert producer.type_limits().get("sleep").running == 0
    assert producer.get(held[0]).attempts == 2
