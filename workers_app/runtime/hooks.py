"""Hooks around task execution: events, metrics and logs hang here, not in the loop."""

from __future__ import annotations

import logging
from typing import Any

from tasks_app.core.broker import Outcome
from tasks_app.core.states import TaskState
from tasks_app.core.task import Job

from .executor import Report

log = logging.getLogger("workers_app.runtime")
FINAL_FAILURES = frozenset({TaskState.FAILED, TaskState.DEAD_LETTER})


class Hook:
    """Override what you need; every method is a no-op by default."""

    def slot_started(self, worker_id: str, index: int) -> None:
        """Runs in a freshly forked slot process (close inherited connections here)."""

    def task_started(self, worker_id: str, job: Job) -> None:
        """A slot started an attempt."""

    def task_finished(self, worker_id: str, job: Job, report: Report, outcome: Outcome) -> None:
        """An attempt ended and the broker recorded it."""

    def attempt_lost(self, task_id: str, error: str, outcome: Outcome) -> None:
        """An attempt ended without its slot reporting: the slot died, was killed at its
        timeout, or its worker vanished (recovered by lease expiry)."""

    def worker_event(self, worker_id: str, event: str, **info: Any) -> None:
        """A worker joined, left, paused or resumed (``left`` also for dead workers)."""

    def queue_depths(self, depths: dict[str, int]) -> None:
        """Pending counts changed (reported at most once a second, cluster-wide)."""

    def queue_totals(self, totals: dict[str, int]) -> None:
        """Cluster-wide totals changed (reported at most once a second)."""


class LogHook(Hook):
    """Logs every attempt with task and worker ids."""

    def task_started(self, worker_id: str, job: Job) -> None:
        log.debug("started %s %s attempt %d", job.type, job.id, job.attempt,
                  extra={"task_id": job.id, "worker_id": worker_id})

    def task_finished(self, worker_id: str, job: Job, report: Report, outcome: Outcome) -> None:
        extra = {"task_id": job.id, "worker_id": worker_id}
        if report.ok:
            log.debug("completed %s %s in %.3fs", job.type, job.id, report.duration, extra=extra)
        else:
            log.log(failure_level(outcome), "attempt %d of %s %s failed (%s) -> %s", job.attempt,
                    job.type, job.id, report.error, outcome.state.value,
                    exc_info=report.exception, extra=extra)

    def attempt_lost(self, task_id: str, error: str, outcome: Outcome) -> None:
        log.log(failure_level(outcome), "attempt %d of %s %s ended: %s -> %s", outcome.attempt,
                outcome.type, task_id, error, outcome.state.value, extra={"task_id": task_id})

    def worker_event(self, worker_id: str, event: str, **info: Any) -> None:
        level = logging.DEBUG if event == "heartbeat" else logging.INFO
        log.log(level, "worker %s %s", worker_id, event, extra={"worker_id": worker_id})


def failure_level(outcome: Outcome) -> int:
    """ERROR for a failed attempt that ended its task (dead-lettered, or failed for good), so
    error trackers' logging integrations report it; WARNING for one that will be retried."""
    return logging.ERROR if outcome.state in FINAL_FAILURES else logging.WARNING


class Hooks(Hook):
    """Calls several hooks in order; a failing hook is logged, never fatal."""

    def __init__(self, hooks: list[Hook]) -> None:
        self.hooks = hooks

    def slot_started(self, worker_id: str, index: int) -> None:
        for hook in self.hooks:
            _safe(hook.slot_started, worker_id, index)

    def task_started(self, worker_id: str, job: Job) -> None:
        for hook in self.hooks:
            _safe(hook.task_started, worker_id, job)

    def task_finished(self, worker_id: str, job: Job, report: Report, outcome: Outcome) -> None:
        for hook in self.hooks:
            _safe(hook.task_finished, worker_id, job, report, outcome)

    def attempt_lost(self, task_id: str, error: str, outcome: Outcome) -> None:
        for hook in self.hooks:
            _safe(hook.attempt_lost, task_id, error, outcome)

    def worker_event(self, worker_id: str, event: str, **info: Any) -> None:
        for hook in self.hooks:
            _safe(hook.worker_event, worker_id, event, **info)

    def queue_depths(self, depths: dict[str, int]) -> None:
        for hook in self.hooks:
            _safe(hook.queue_depths, depths)

    def queue_totals(self, totals: dict[str, int]) -> None:
        for hook in self.hooks:
            _safe(hook.queue_totals, totals)


def _safe(method: Any, *args: Any, **kwargs: Any) -> None:
    try:
        method(*args, **kwargs)
    except Exception:
        log.exception("hook %r failed", method)
