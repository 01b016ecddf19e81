"""A slot process: takes tasks, runs them one at a time, records their outcomes.

A busy slot records the outcomes of the tasks it ran and takes its next tasks in one
script call.  While its tasks are short it takes up to PREFETCH at once and records their
outcomes together (at most MAX_REPORT_DELAY after the first of them ended), so Redis sees one
call per batch; a task that is not short is recorded at once, and the slot then takes one
task at a time again, so a long task never holds others back.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tasks_app.core import broker as brokermod
from tasks_app.core.broker import Broker, Ended
from tasks_app.core.config import Config
from tasks_app.core.errors import BrokerUnavailable
from tasks_app.core.progress import Reporter
from tasks_app.core.registry import HandlerRegistry
from tasks_app.core.task import Job

from .backoff import Backoff
from .executor import Executor, Report
from .hooks import Hook
from .slots import Slot

log = logging.getLogger("workers_app.runtime")
IDLE_WAIT = 1.0
SHORT_TASK = 0.005
"""A task whose handler ran shorter than this (seconds) is short."""
SHORT_STREAK = 3
"""Short tasks in a row after which a slot takes PREFETCH tasks per call."""
MAX_REPORT_DELAY = 0.05
"""Seconds the outcome of a finished task may wait to be recorded with later ones."""
WATCH_POLL = 0.01
"""How often (seconds) the watchdog looks at the running task while the slot holds others:
a task running long is acted on between MAX_REPORT_DELAY and that plus WATCH_POLL."""


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
    broker: Broker | None = None  # built before the fork and shared; None: build one


class SlotProcess:
    """The loop of one slot process."""

    def __init__(self, spec: SlotSpec) -> None:
        self.spec = spec
        self.broker = spec.broker or Broker.from_config(spec.config)
        self.executor = Executor(spec.registry, spec.config.accept_unknown_types,
                                 progress=self._progress_reporter)
        self._delays = Backoff(0.1)
        self.held: deque[Job] = deque()  # taken, not started yet
        self.done: list[tuple[Job, Report]] = []  # run, outcome not recorded yet
        self._done_since = 0.0
        self._short_streak = 0
        self._fresh = False  # the held tasks are a take none of which has started yet
        self._taken_idle = False  # ... taken behind a wake-up from the worker's wake list
        # held, done and the broker calls that record outcomes are shared with
        # the watchdog thread, which records them when a task turns out long (see _watch).
        self._lock = threading.RLock()
        # What the watchdog reads, written without a lock or a wake-up per task: set while
        # the slot works through tasks it holds others with; the start (monotonic) of the
        # watched task running now (0: none), and a count of watched tasks.
        self._batch = threading.Event()
        self._run_started = 0.0
        self._run_seq = 0
        # The pid recorded before the fork: a supervisor that died between the fork and
        # here would otherwise make the reaper that adopted us look like our supervisor.
        self.supervisor = spec.supervisor_pid or os.getppid()

    def _progress_reporter(self, job: Job) -> Reporter:
        """Where the handler's ctx.progress() of this attempt goes (fenced, throttled)."""
        return Reporter(lambda done, total, message: self.broker.progress(job, done, total,
                                                                          message))

    def orphaned(self) -> bool:
        """True once the supervisor is gone (this process was re-parented)."""
        return os.getppid() != self.supervisor

    def run(self) -> None:
        """Take and run tasks until told to stop."""
        threading.Thread(target=self._watch, name="slot-watchdog", daemon=True).start()
        self._loop()

    def _loop(self) -> None:
        while True:
            if self.orphaned():
                # The supervisor died (the pipe watcher has not ended us yet): start nothing
                # more; what was taken and not run goes back in line uncounted, as a graceful
                # shutdown would.  Only if that fails (Redis away, or the watcher ends us
                # first) is it left to its lease: one lost attempt each.
                self._settle(requeue=True, patient=False)
                _exit_orphaned()
            if self.spec.stop.value:
                # A slot finishes its task: the first of what it took last, if it has not
                # started on that batch yet (unless the worker's own wake list woke it to
                # take it: a stop does that); what it took ahead goes back in line uncounted.
                if self._fresh and self.held and not self._taken_idle:
                    self._run(self.held.popleft(), watch=False)
                self._settle(requeue=True)
                return
            if not self.held:
                if self._batch.is_set():
                    self._batch.clear()  # the watchdog sleeps until the next batch
                self._settle()
                got = self._take()
                if got is None:
                    return  # the --max-tasks budget is spent
                if isinstance(got, str):
                    if got == brokermod.EMPTY and self.spec.burst:
                        return
                    self._idle_until_work(got)
                continue
            with self._lock:
                if not self.held:
                    continue  # the watchdog put them back while the last task ran long
                job = self.held.popleft()
                watch = bool(self.held or self.done)
            self._run(job, watch)
            if self.held and self._report_now():
                self._settle()
            elif not self.held and not self.spec.stop.value:
                self._settle(take=True)

    def _want(self) -> int:
        """How many tasks to take in one call: PREFETCH while the last few tasks were short
        (each shorter than SHORT_TASK), else one, so a long task never holds others back."""
        return self.spec.config.prefetch if self._short_streak >= SHORT_STREAK else 1

    def _take(self) -> list[Job] | str | None:
        """Take the next tasks (start their attempts), or say why none ('' after a Redis
        error); None when the --max-tasks budget is spent."""
        n = self._take_tickets(self._want())
        if n == 0:
            return None
        try:
            got = self.broker.take(self.spec.worker_id, self.spec.priorities, n)
        except BrokerUnavailable as exc:
            self._return_tickets(n)
            self._backoff(exc)
            return ""
        self._delays.reset()
        self._accept(got, n)
        return got

    def _accept(self, got: list[Job] | str, asked: int, idle: bool = False) -> None:
        """Hold the tasks a take handed out; give back the tickets it did not use."""
        jobs = got if isinstance(got, list) else []
        self._return_tickets(asked - len(jobs))
        if jobs:
            self.spec.slot.hold(jobs)
            self.held.extend(jobs)
            self._fresh, self._taken_idle = True, idle

    def _run(self, job: Job, watch: bool) -> None:
        """Run one job; its outcome waits in ``done`` until it is recorded.  With ``watch``
        (the slot holds other attempts) the watchdog looks on while it runs."""
        self._fresh = False
        self.spec.slot.begin(job)
        self.spec.hooks.task_started(self.spec.worker_id, job)
        if watch:
            self._run_seq += 1
            self._run_started = time.monotonic()
            if not self._batch.is_set():
                self._batch.set()
        try:
            report = self.executor.run(job)
        finally:
            self._run_started = 0.0
        self.spec.slot.reporting()
        self.spec.slot.count(report.ok)
        with self._lock:
            self._short_streak = self._short_streak + 1 if report.duration < SHORT_TASK else 0
            if not self.done:
                self._done_since = time.monotonic()
            self.done.append((job, report))
        self.spec.slot.clear()

    def _watch(self) -> None:
        """The watchdog: when a task runs longer than MAX_REPORT_DELAY while the slot holds
        other attempts, record the outcomes waiting in ``done`` and put the tasks taken ahead
        back in line (uncounted, at their old place), so a long task holds nothing back."""
        acted = 0  # the watched task it last acted on
        while True:
            self._batch.wait()  # sleeps while the slot holds nothing besides its task
            time.sleep(WATCH_POLL)  # polls while it does: no wake-up per task
            started, seq = self._run_started, self._run_seq
            if not started or seq == acted or time.monotonic() - started < MAX_REPORT_DELAY:
                continue
            acted = seq
            with self._lock:
                if self._run_seq == seq and self._run_started and (self.held or self.done):
                    self._settle(requeue=True)

    def _report_now(self) -> bool:
        """Record the outcomes run so far now, though more tasks are held: when the last task
        was not short, or the oldest unrecorded outcome has waited MAX_REPORT_DELAY."""
        return (self._short_streak == 0
                or time.monotonic() - self._done_since >= MAX_REPORT_DELAY)

    def _settle(self, take: bool = False, requeue: bool = False, patient: bool = True) -> None:
        """Record the outcomes in ``done`` (with ``requeue``, also put the held tasks back in
        line uncounted) and, with ``take``, take the next tasks in the same call.

        Retries while Redis is away (unless not ``patient``: one try); an outcome whose
        lease was taken over is discarded.
        """
        with self._lock:
            why = self._settle_locked(take, requeue, patient)
        if why is not None:
            self._idle_until_work(why)

    def _settle_locked(self, take: bool, requeue: bool, patient: bool) -> str | None:
        """_settle's work; returns why no task was handed out when the slot should idle."""
        done, self.done = self.done, []
        back = list(self.held) if requeue else []
        if requeue:
            self.held.clear()
        ended = [Ended(job, _kind(report), _value(report), report.duration)
                 for job, report in done] + [Ended(job, "requeue", "", None) for job in back]
        n = self._take_tickets(self._want()) if take else 0
        if not ended and not n:
            return None
        while True:
            try:
                outcomes, nxt = self.broker.finish(self.spec.worker_id, ended, n,
                                                   self.spec.priorities)
                break
            except BrokerUnavailable as exc:
                self._return_tickets(n)
                n = 0  # the retried call only records
                if not patient:
                    return None
                self._backoff(exc)
        self._delays.reset()
        # Claim the next tasks in the shared record before anything else (hooks are user
        # code and may be slow): the heartbeat must report every task this slot holds, or
        # it would put one back as orphaned while the slot goes on to run it.
        self.spec.slot.release((e.job.id, e.job.fence) for e in ended)
        self._accept(nxt, n)
        for (job, report), outcome in zip(done, outcomes, strict=False):
            if outcome is None:
                _outcome_discarded(job)
            else:
                self.spec.hooks.task_finished(self.spec.worker_id, job, report, outcome)
        if n and isinstance(nxt, str) and not (nxt == brokermod.EMPTY and self.spec.burst):
            return nxt
        return None

    def _idle_until_work(self, why: str) -> None:
        """Wait until a task is held, or something needs the loop (stop, orphaned, Redis
        away): an idle wait that takes nothing comes back with why, and waits again."""
        while True:
            again = self._idle(why)
            if again not in (brokermod.EMPTY, brokermod.PAUSED) or self.spec.stop.value \
                    or self.orphaned():
                return
            why = again

    def _idle(self, why: str) -> str | None:
        """Wait for work; returns why the take behind the wait got nothing (None when it
        took tasks, or when the loop should look again)."""
        if why == brokermod.UNREGISTERED:
            time.sleep(0.2)
            return None
        if why == "":
            return None  # a Redis error, already waited for
        paused = why == brokermod.PAUSED
        try:
            if self.spec.budget is None:  # wait, and take what woke us in the same trip
                by_worker, got = self.broker.wait_and_take(
                    self.spec.worker_id, self.spec.priorities, IDLE_WAIT, self._want(),
                    paused=paused)
                with self._lock:
                    self._accept(got, 0, idle=by_worker)
                return got if isinstance(got, str) else None
            else:  # a --max-tasks budget: reserve tickets only when there is work
                self.broker.wait_for_work(self.spec.worker_id, self.spec.priorities, IDLE_WAIT,
                                          paused=paused)
        except BrokerUnavailable as exc:
            self._backoff(exc)
        return None

    def _take_tickets(self, n: int) -> int:
        """Reserve up to n tasks of the --max-tasks budget (all n without one)."""
        budget = self.spec.budget
        if budget is None:
            return n
        with budget.get_lock():
            granted = int(max(0, min(n, budget.value)))
            budget.value -= granted
        return granted

    def _return_tickets(self, n: int) -> None:
        if n > 0 and self.spec.budget is not None:
            with self.spec.budget.get_lock():
                self.spec.budget.value += n

    def _backoff(self, exc: Exception) -> None:
        delay = self._delays.next_delay()
        log.warning("redis unavailable (%s); retrying in %.1fs", exc, delay)
        time.sleep(delay)


def _kind(report: Report) -> str:
    if report.ok:
        return "ok"
    return "permanent" if report.permanent else "retry"


def _value(report: Report) -> str:
    return report.result_json if report.ok else report.error


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

