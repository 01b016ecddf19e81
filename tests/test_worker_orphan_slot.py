"""A slot whose supervisor died does not start a task it already took (regression).

Found by reliability/worker_kills.py: after ``kill -9`` of a supervisor, a slot
lives on for a few milliseconds until its pipe watcher ends it; in that window
it took and *started* a new task, an execution that began after the kill and
then had to be repeated.  The slot now checks its parent before each dequeue
and before starting a task it took; the taken task is put back in line
uncounted (as a graceful shutdown would) without running, so it neither waits
for its lease to run out nor loses an attempt (with ``max_retries=0`` it would
otherwise be dead-lettered without ever having run)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tasks_app.core.broker import Broker
from tasks_app.core.config import Config
from tasks_app.core.errors import BrokerUnavailable
from tasks_app.core.registry import HandlerRegistry, TaskContext
from tasks_app.core.task import Job
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import make_spec, open_broker, register
from workers_app.runtime import slot as slotmod
from workers_app.runtime.hooks import Hook
from workers_app.runtime.slot import SlotProcess, SlotSpec
from workers_app.runtime.slots import Slot

WORKER = "orphan-worker"


class Orphaned(Exception):
    """Raised instead of os._exit so the test process survives."""


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    with open_broker(redis_server.url) as opened:
        yield opened


def make_slot(redis_url: str, ran: list[str], supervisor_pid: int = 0) -> SlotProcess:
    registry = HandlerRegistry()

    def record(payload: dict[str, Any], ctx: TaskContext) -> None:
        ran.append(ctx.task_id)

    registry.register("record", record)
    stop = multiprocessing.get_context("fork").Value("b", 0, lock=False)
    read_fd, write_fd = os.pipe()
    spec = SlotSpec(0, Config(redis_url=redis_url), WORKER, [0, 1, 2, 3], registry, Hook(),
                    Slot(), stop, None, True, read_fd, write_fd, supervisor_pid)
    return SlotProcess(spec)


def test_a_taken_task_is_not_started_once_the_supervisor_is_gone(
        redis_server: EmbeddedRedis, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    register(broker, WORKER)
    spec = make_spec("record")
    broker.enqueue(spec)
    ran: list[str] = []
    slot = make_slot(redis_server.url, ran)
    answers = iter([False, True])  # alive when it dequeues, gone once the task is taken
    monkeypatch.setattr(slot, "orphaned", lambda: next(answers))

    def exit_orphaned() -> None:
        raise Orphaned

    monkeypatch.setattr(slotmod, "_exit_orphaned", exit_orphaned)
    with pytest.raises(Orphaned):
        slot.run()
    assert ran == []
    task = broker.get(spec.id)
    assert (task.state.value, task.attempts) == ("pending", 0)
    again = broker.dequeue(WORKER, [0, 1, 2, 3])  # at once, not after a lease
    assert isinstance(again, Job) and again.id == spec.id
    slot.broker.close()


def test_a_task_that_cannot_be_put_back_is_left_to_its_lease(
        redis_server: EmbeddedRedis, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    register(broker, WORKER)
    spec = make_spec("record", max_retries=0)
    broker.enqueue(spec)
    ran: list[str] = []
    slot = make_slot(redis_server.url, ran)
    answers = iter([False, True])
    monkeypatch.setattr(slot, "orphaned", lambda: next(answers))

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise BrokerUnavailable("connection refused")

    def exit_orphaned() -> None:
        raise Orphaned

    monkeypatch.setattr(slot.broker, "finish", unreachable)
    monkeypatch.setattr(slotmod, "_exit_orphaned", exit_orphaned)
    with pytest.raises(Orphaned):  # the slot still exits; recovery takes over
        slot.run()
    assert ran == []
    task = broker.get(spec.id)
    assert (task.state.value, task.attempts, task.worker_id) == ("running", 1, WORKER)
    slot.broker.close()


def assert_exits_orphaned_taking_nothing(slot: SlotProcess, spec_id: str, ran: list[str],
                                         broker: Broker, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """The slot notices it is orphaned and exits before taking the pending task."""

    def exit_orphaned() -> None:
        raise Orphaned

    monkeypatch.setattr(slotmod, "_exit_orphaned", exit_orphaned)
    with pytest.raises(Orphaned):
        slot.run()
    assert ran == []
    assert broker.get(spec_id).state.value == "pending"
    slot.broker.close()


def test_an_orphaned_slot_takes_nothing(redis_server: EmbeddedRedis, broker: Broker,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    register(broker, WORKER)
    spec = make_spec("record")
    broker.enqueue(spec)
    ran: list[str] = []
    slot = make_slot(redis_server.url, ran)
    slot.supervisor = -1  # our parent is not the process that forked us any more
    assert_exits_orphaned_taking_nothing(slot, spec.id, ran, broker, monkeypatch)


def test_a_live_supervisor_lets_the_slot_run(redis_server: EmbeddedRedis,
                                             broker: Broker) -> None:
    register(broker, WORKER)
    spec = make_spec("record")
    broker.enqueue(spec)
    ran: list[str] = []
    slot = make_slot(redis_server.url, ran)
    slot.run()  # burst: returns once nothing is pending
    assert ran == [spec.id]
    assert broker.get(spec.id).state.value == "completed"
    slot.broker.close()


def test_a_supervisor_that_died_before_the_slot_started_is_noticed(
        redis_server: EmbeddedRedis, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor's pid comes from before the fork: if it died before the slot read its
    parent, the reaper that adopted the slot is not taken for the supervisor."""
    register(broker, WORKER)
    spec = make_spec("record")
    broker.enqueue(spec)
    ran: list[str] = []
    slot = make_slot(redis_server.url, ran, supervisor_pid=os.getpid())  # not our parent
    assert_exits_orphaned_taking_nothing(slot, spec.id, ran, broker, monkeypatch)


def test_the_worker_hands_its_pid_to_its_slots(redis_server: EmbeddedRedis) -> None:
    from workers_app.runtime.worker import Worker, WorkerOptions

    seen: list[SlotSpec] = []

    class Recorder:
        def __init__(self, target: Any, args: tuple[SlotSpec], **kwargs: Any) -> None:
            seen.append(args[0])

        def start(self) -> None:
            pass

    worker = Worker(Config(redis_url=redis_server.url), WorkerOptions(concurrency=1))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("workers_app.runtime.worker._fork.Process", Recorder)
            worker._spawn(0)
    finally:
        worker.broker.close()
    assert [s.supervisor_pid for s in seen] == [os.getpid()]
