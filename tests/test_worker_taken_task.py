"""A task a slot has taken is reported by the heartbeat at once, before it starts (regression).

The heartbeat puts back, as taken by a dequeue whose reply was lost, a task in the
worker's active set that no slot reports once it is older than half a lease.  A slot
used to write its shared record only when the handler started: a dequeue reply that
reached a slot still running the previous task's ``task_finished`` hooks (or a slot
that stalled for half a lease) left the task unreported, so the heartbeat put it back
while the slot went on to run it.  The task then ran twice, and a slot that died
running it was never recorded (its attempt was no longer ``running``).  A slot now
claims the task in its record as soon as the reply arrives.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tasks_app.core.broker import Broker, Outcome
from tasks_app.core.config import Config
from tasks_app.core.registry import HandlerRegistry, TaskContext
from tasks_app.core.states import TaskState
from tasks_app.core.task import Job
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import make_spec, open_broker, register
from workers_app.runtime.executor import Report
from workers_app.runtime.heartbeat import Heartbeat
from workers_app.runtime.hooks import Hook
from workers_app.runtime.slot import SlotProcess, SlotSpec
from workers_app.runtime.slots import MAX_HELD, Held, Slot
from workers_app.runtime.worker import Worker, WorkerOptions, _Child

WORKER = "taken-worker"
_fork = multiprocessing.get_context("fork")


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    with open_broker(redis_server.url) as opened:
        yield opened


class Supervisor:
    """The supervisor's heartbeat over one slot's record, driven by hand."""

    def __init__(self, broker: Broker, slot: Slot) -> None:
        def running() -> list[tuple[str, str, str]]:  # what Worker._running reports
            return [(h.task_id, h.fence, h.where) for h in slot.held()]

        self.heartbeat = Heartbeat(broker, WORKER, dict, running, lambda lost: None,
                                   lambda beat: self.orphans.extend(beat.orphans))
        self.heartbeat.first = False
        self.broker = broker
        self.orphans: list[str] = []

    def beat_half_a_lease_after(self, task_id: str) -> None:
        """Beat as if ``task_id`` had been taken more than half a lease ago."""
        self.broker.client.hset(self.broker.keys.task(task_id), "started_at", 0)
        self.heartbeat.run_once()


def make_slot(broker: Broker, ran: list[str], hook: Hook) -> SlotProcess:
    registry = HandlerRegistry()

    def record(payload: dict[str, Any], ctx: TaskContext) -> None:
        ran.append(ctx.task_id)

    registry.register("record", record)
    stop = _fork.Value("b", 0, lock=False)
    read_fd, write_fd = os.pipe()
    spec = SlotSpec(0, broker.config, WORKER, [0, 1, 2, 3], registry, hook, Slot(), stop, None,
                    True, read_fd, write_fd)
    return SlotProcess(spec)


class AfterFinishing(Hook):
    """Calls ``then`` from the task_finished hook of one task."""

    def __init__(self, task_id: str, then: Callable[[], None]) -> None:
        self.task_id, self.then = task_id, then

    def task_finished(self, worker_id: str, job: Job, report: Report, outcome: Outcome) -> None:
        if job.id == self.task_id:
            self.then()


def test_the_next_task_taken_with_an_ack_is_reported_while_hooks_run(broker: Broker) -> None:
    register(broker, WORKER)
    first, second = make_spec("record"), make_spec("record", max_retries=0)
    broker.enqueue(first)
    broker.enqueue(second)
    ran: list[str] = []
    hook = AfterFinishing(first.id, lambda: supervisor.beat_half_a_lease_after(second.id))
    slot = make_slot(broker, ran, hook)
    supervisor = Supervisor(broker, slot.spec.slot)

    slot.run()  # burst: the first task's ack takes the second; a slow hook; a heartbeat

    assert supervisor.orphans == []
    assert ran == [first.id, second.id]  # the second ran once, not once more after a put-back
    done = broker.get(second.id)
    assert (done.state, done.attempts) == (TaskState.COMPLETED, 1)
    slot.broker.close()


def test_a_task_taken_by_a_dequeue_is_reported_before_it_starts(
        broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    register(broker, WORKER)
    spec = make_spec("record", max_retries=0)
    broker.enqueue(spec)
    ran: list[str] = []
    slot = make_slot(broker, ran, Hook())
    supervisor = Supervisor(broker, slot.spec.slot)
    checks = iter([lambda: None, lambda: supervisor.beat_half_a_lease_after(spec.id)])

    def orphaned() -> bool:  # checked before the dequeue, then between it and the start
        next(checks, lambda: None)()
        return False

    monkeypatch.setattr(slot, "orphaned", orphaned)
    slot.run()

    assert supervisor.orphans == []
    assert ran == [spec.id]
    done = broker.get(spec.id)
    assert (done.state, done.attempts) == (TaskState.COMPLETED, 1)
    slot.broker.close()


def test_a_slot_that_dies_before_starting_a_taken_task_puts_it_back_uncounted(
        redis_server: EmbeddedRedis, broker: Broker) -> None:
    register(broker, WORKER)
    spec = make_spec("record", max_retries=0)
    broker.enqueue(spec)
    job = broker.dequeue(WORKER, [0, 1, 2, 3])
    assert isinstance(job, Job)
    slot = Slot()
    slot.hold([job])
    # a slot process that died (spawned: forking this threaded test process is unsafe)
    dead = multiprocessing.get_context("spawn").Process(target=os._exit, args=(9,))
    dead.start()
    dead.join()
    worker = Worker(Config(redis_url=redis_server.url), WorkerOptions(worker_id=WORKER))
    worker.children = [_Child(0, slot, dead)]

    worker._check_children(respawn=False)

    task = broker.get(spec.id)
    assert (task.state, task.attempts, task.error) == (TaskState.PENDING, 0, None)
    assert slot.snapshot() is None
    worker.broker.close()


def test_the_shared_record_lists_what_a_slot_holds_and_which_one_started() -> None:
    """What the supervisor reads to settle a dead slot: every attempt held, in order, with
    the one whose handler started flagged (an attempt that never started goes back
    uncounted); a slot holds at most MAX_HELD, and recorded attempts leave the list."""
    def job(n: int) -> Job:
        return Job(id=f"{n:036d}", priority=1, fence=f"17000-{n}", attempt=1, type="echo",
                   payload={}, metadata={}, max_retries=3, timeout=30, queue_wait=0.0,
                   started_at=1, queue="mail", shard=1)

    slot = Slot()
    first = [job(1), job(2), job(3)]
    slot.hold(first)
    slot.begin(first[1])
    assert slot.held() == [Held(j.id, j.fence, "mail#1", j is first[1]) for j in first]
    running = slot.snapshot()
    assert running is not None and running.task_id == first[1].id
    slot.hold([job(n) for n in range(4, 4 + MAX_HELD)])
    assert [h.task_id for h in slot.held()] == [job(n).id for n in range(1, MAX_HELD + 1)]
    slot.release([(first[0].id, first[0].fence), (first[1].id, first[1].fence)])
    held = slot.held()
    assert [h.task_id for h in held[:2]] == [job(3).id, job(4).id]
    assert not any(h.started for h in held)
