"""Seed and read helpers for the queue-core tests: brokers, specs, workers, tasks in any state."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from tasks_app.core.broker import Broker, new_task_id
from tasks_app.core.config import Config
from tasks_app.core.inspect import Inspector
from tasks_app.core.states import TaskState
from tasks_app.core.task import Job, TaskSpec

ALL_PRIORITIES = (0, 1, 2, 3)
WORKER = "worker-1"
PREFIX = "tq:{default}:"


@contextmanager
def open_broker(url: str, **tunables: Any) -> Iterator[Broker]:
    """A broker of its own on ``url`` with the given Config tunables, closed afterwards."""
    broker = Broker.from_config(Config(redis_url=url, **tunables))
    try:
        yield broker
    finally:
        broker.close()


def make_spec(
    task_type: str = "echo",
    *,
    task_id: str | None = None,
    payload: dict[str, Any] | None = None,
    priority: int = 0,
    max_retries: int = 3,
    delay_ms: int | None = None,
    scheduled_at_ms: int | None = None,
) -> TaskSpec:
    """A valid TaskSpec with a fresh id unless one is given."""
    return TaskSpec(
        id=task_id or new_task_id(),
        type=task_type,
        payload=payload or {},
        priority=priority,
        max_retries=max_retries,
        delay_ms=delay_ms,
        scheduled_at_ms=scheduled_at_ms,
    )


def register(broker: Broker, worker_id: str = WORKER, concurrency: int = 1) -> str:
    """Register (heartbeat) a worker so that it may dequeue; return its id."""
    broker.heartbeat(worker_id, {"concurrency": concurrency, "priorities": "3,2,1,0"}, [])
    return worker_id


def take(broker: Broker, worker_id: str = WORKER,
         priorities: tuple[int, ...] = ALL_PRIORITIES) -> Job:
    """Dequeue and insist that a task came back."""
    job = broker.dequeue(worker_id, priorities)
    assert isinstance(job, Job), f"expected a task, dequeue said {job!r}"
    return job


def drain(broker: Broker, worker_id: str = WORKER,
          priorities: tuple[int, ...] = ALL_PRIORITIES) -> list[Job]:
    """Dequeue until the queue says anything but a task."""
    jobs = []
    while isinstance(job := broker.dequeue(worker_id, priorities), Job):
        jobs.append(job)
    return jobs


def state_of(broker: Broker, task_id: str) -> TaskState:
    """The stored state of a task."""
    return broker.get(task_id).state


def depths(broker: Broker) -> dict[str, int]:
    """Pending depth per priority name, as the inspector reports it."""
    return Inspector(broker).queue_depths()


def zero_depths(**nonzero: int) -> dict[str, int]:
    """The depth dict with every priority at 0 except those given."""
    return {"critical": 0, "high": 0, "normal": 0, "low": 0, **nonzero}


def wait_until(check: Callable[[], bool], timeout: float = 2.0, step: float = 0.005) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(step)


def dead_letter(broker: Broker, count: int, error: str = "boom",
                worker_id: str = WORKER) -> list[str]:
    """Create ``count`` dead-lettered tasks (max_retries=0, one failure each), oldest first.

    Nothing else may be pending: the tasks are taken back by dequeue.
    """
    register(broker, worker_id)
    specs = [make_spec(max_retries=0) for _ in range(count)]
    broker.enqueue_many(specs)
    ids = []
    for _ in specs:
        job = take(broker, worker_id)
        assert job.id in {s.id for s in specs}, "another task was pending"
        outcome = broker.fail(job, worker_id, error)
        assert outcome.state is TaskState.DEAD_LETTER
        ids.append(job.id)
    return ids


def job_for(task_id: str, fence: str) -> Job:
    """A Job as a worker would hold it, for reports on tasks this test never dequeued."""
    return Job(id=task_id, priority=0, fence=fence, attempt=1, type="echo", payload={},
               metadata={}, max_retries=3, timeout=300, queue_wait=0.0, started_at=0)


@dataclass(frozen=True)
class Seeded:
    """A task brought to some state by real operations, with its last attempt if it ran."""

    id: str
    job: Job | None

    @property
    def fence(self) -> str:
        """The fence of the last attempt, or one no attempt ever had."""
        return self.job.fence if self.job else "0"


SEED_DELAY_MS = 30


def _ran(broker: Broker, spec: TaskSpec) -> Seeded:
    broker.enqueue(spec)
    job = take(broker)
    assert job.id == spec.id
    return Seeded(spec.id, job)


def seed(broker: Broker, name: str) -> Seeded:
    """A task in the state called ``name`` (a TaskState value, or ``running_last_attempt``).

    Scheduled and retrying tasks are due within ~SEED_DELAY_MS when the broker's
    backoff base is that small; nothing promotes them unless the test does.
    """
    register(broker)
    if name == "pending":
        return Seeded(broker.enqueue(make_spec()).id, None)
    if name == "scheduled":
        return Seeded(broker.enqueue(make_spec(delay_ms=SEED_DELAY_MS)).id, None)
    if name == "cancelled":
        task = broker.enqueue(make_spec())
        broker.cancel(task.id)
        return Seeded(task.id, None)
    if name == "running":
        return _ran(broker, make_spec(max_retries=1))
    if name == "running_last_attempt":
        return _ran(broker, make_spec(max_retries=0))
    seeded = _ran(broker, make_spec(max_retries=0 if name == "dead_letter" else 1))
    assert seeded.job is not None
    if name == "completed":
        broker.ack(seeded.job, WORKER, '"done"')
    elif name in ("retrying", "dead_letter"):
        broker.fail(seeded, WORKER, "boom")
    elif name == "failed":
        broker.fail(seeded, WORKER, "boom", permanent=True)
    else:
        raise ValueError(f"no seed for {name!r}")
    return seeded


def old_release_enqueue(client: redis.Redis, priority: int, count: int,
                        task_type: str = "echo") -> list[str]:
    """Pending tasks written the way the previous release's enqueue.lua wrote them: the task
    hash (with ``seq`` and ``enqueued_us``) and the id in ``pending:<priority>`` scored by
    its sequence number, taken from the shared ``seq`` counter."""
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    us = f"{int(seconds)}{int(micros):06d}"
    ids = []
    for i in range(count):
        task_id = new_task_id()
        seq = client.incr(PREFIX + "seq")
        client.hset(PREFIX + f"task:{task_id}", mapping={
            "id": task_id, "type": task_type, "payload": json.dumps({"p": priority, "i": i}),
            "priority": priority, "max_retries": 3, "timeout": 300, "metadata": "{}",
            "attempts": 0, "created_at": now_ms, "updated_at": now_ms, "state": "pending",
            "seq": seq, "enqueued_us": us,
        })
        client.zadd(PREFIX + f"pending:{priority}", {task_id: seq})
        ids.append(task_id)
    return ids
