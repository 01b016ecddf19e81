"""A slot process: takes one task at a time, runs it, reports the outcome."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from tasks_app.core import broker as brokermod
from tasks_app.core.broker import Broker, Outcome
from tasks_app.core.config import Config
from tasks_app.core.errors import BrokerUnavailable, StaleLease
from tasks_app.core.registry import HandlerRegistry
from tasks_app.core.task import Job

from .backoff import Backoff
from .executor import Executor, Report
from .hooks import Hook
from .slots import Slot

log = logging.getLogger("workers_app.runtime")
IDLE_WAIT = 1.0


@dataclass
class SlotSpec:
    """Everything a slot process needs, inherited through fork."""

    index: int
    config: Config
    worker_id: str
    priorities: list[int]
    registry: HandlerRegistry
    hooks: Hook
    slot: Slot
    stop: Any  # multiprocessing.Value('b'): set by the supervisor
    budget: Any  # multiprocessing.Value('q') tasks left, or None
    burst: bool
    parent_fd: int  # read end of the supervisor's life pipe
    parent_write_fd: int  # its write end, closed in the slot
    supervisor_pid: int = 0  # the supervisor's pid, taken before the fork (0: our parent)


class SlotProcess:
    """The loop of one slot process."""

    def __init__(self, spec: SlotSpec) -> None:
        self.spec = spec
        self.broker = Broker.from_config(spec.config)
        self.executor = Executor(spec.registry, spec.config.accept_unknown_types)
        self._delays = Backoff(0.1)
        self._ticket = False
        # The pid recorded before the fork: a supervisor that died between the fork and
        # here would otherwise make the reaper that adopted us look like our supervisor.
        self.supervisor = spec.supervisor_pid or os.getppid()

    def orphaned(self) -> bool:
        """True once the supervisor is gone (this process was re-parented)."""
        return os.getppid() != self.supervisor

    def run(self) -> None:
        """Take and run tasks until told to stop."""
        got: Job | str | None = None
        while True:
            if got is None:
                if self.orphaned():
                    _exit_orphaned()
                if self.spec.stop.value or not self._take_ticket():
                    return
                got = self._dequeue()
            elif isinstance(got, Job):
                if self.orphaned():
                    # The supervisor died after this task was taken (the pipe watcher has
                    # not ended us yet): do not start it, put it back in line uncounted, as
                    # a graceful shutdown would.  Only if that fails (Redis away, or the
                    # watcher ends us first) is it left to its lease: one lost attempt.
                    self._put_back(got)
                    _exit_orphaned()
                got = self._run(got)
            else:
                self._return_ticket()
                if got == brokermod.EMPTY and self.spec.burst:
                    return
                self._idle(got)
                got = None

    def _dequeue(self) -> Job | str | None:
        try:
            got = self.broker.dequeue(self.spec.worker_id, self.spec.priorities)
        except BrokerUnavailable as exc:
            self._return_ticket()
            self._backoff(exc)
            return None
        self._delays.reset()
        if isinstance(got, Job):
            self.spec.slot.take(got)
        return got

    def _put_back(self, job: Job) -> None:
        """Return a taken, unstarted task to its place in line (attempt not counted)."""
        try:
            self.broker.requeue(job.id, self.spec.worker_id, job.fence)
        except Exception as exc:  # noqa: BLE001  (exiting anyway: recovery has it)
            log.warning("could not put back task %s (%s); its lease will expire", job.id, exc,
                        extra={"task_id": job.id})

    def _idle(self, why: str) -> None:
        if why == brokermod.UNREGISTERED:
            time.sleep(0.2)
            return
        try:
            self.broker.wait_for_work(self.spec.worker_id, self.spec.priorities, IDLE_WAIT,
                                      paused=why == brokermod.PAUSED)
        except BrokerUnavailable as exc:
            self._backoff(exc)

    def _run(self, job: Job) -> Job | str | None:
        """Run one job, record its outcome and (in the same round trip) take the next."""
        self._ticket = False
        self.spec.slot.begin()
        self.spec.hooks.task_started(self.spec.worker_id, job)
        report = self.executor.run(job)
        self.spec.slot.reporting()
        fetch = not self.spec.stop.value and self._take_ticket()
        outcome, nxt = self._record(job, report, fetch)
        if isinstance(nxt, Job):
            self.spec.slot.take(nxt)  # before the hooks run, however long they take
        else:
            self.spec.slot.clear()
        self.spec.slot.count(report.ok)
        if outcome is not None:
            self.spec.hooks.task_finished(self.spec.worker_id, job, report, outcome)
        if nxt is None:
            self._return_ticket()
        return nxt

    def _record(self, job: Job, report: Report, fetch: bool
                ) -> tuple[Outcome | None, Job | str | None]:
        """Report the outcome, retrying while Redis is away; None when the lease was lost."""
        value = report.result_json if report.ok else report.error
        while True:
            try:
                if fetch:
                    done = self.broker.finish_and_dequeue(
                        job, self.spec.worker_id, report.ok, value, report.permanent,
                        self.spec.priorities, report.duration)
                    if done.outcome is None:
                        _outcome_discarded(job)
                    return done.outcome, done.next
                if report.ok:
                    return self.broker.ack(job, self.spec.worker_id, value, report.duration), None
                return self.broker.fail(job, self.spec.worker_id, value,
                                        permanent=report.permanent,
                                        duration=report.duration), None
            except StaleLease:
                _outcome_discarded(job)
                return None, None
            except BrokerUnavailable as exc:
                fetch = False
                self._backoff(exc)

    def _take_ticket(self) -> bool:
        """Reserve one task of the --max-tasks budget (always granted without one)."""
        budget = self.spec.budget
        if budget is not None:
            with budget.get_lock():
                if budget.value <= 0:
                    return False
                budget.value -= 1
        self._ticket = True
        return True

    def _return_ticket(self) -> None:
        if self._ticket and self.spec.budget is not None:
            with self.spec.budget.get_lock():
                self.spec.budget.value += 1
        self._ticket = False

    def _backoff(self, exc: Exception) -> None:
        delay = self._delays.next_delay()
        log.warning("redis unavailable (%s); retrying in %.1fs", exc, delay)
        time.sleep(delay)


def _outcome_discarded(job: Job) -> None:
    log.warning("lease of task %s was taken over; outcome discarded", job.id,
                extra={"task_id": job.id})


def _exit_orphaned() -> None:
    """End a slot whose supervisor died (the same exit as the pipe watcher's)."""
    os._exit(70)


def _watch_parent(fd: int) -> None:
    """Exit at once when the supervisor dies (its end of the pipe closes)."""
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    _exit_orphaned()


def slot_main(spec: SlotSpec) -> None:
    """Entry point of a forked slot process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.close(spec.parent_write_fd)
    threading.Thread(target=_watch_parent, args=(spec.parent_fd,), daemon=True).start()
    spec.hooks.slot_started(spec.worker_id, spec.index)
    SlotProcess(spec).run()

