"""The worker's live events: a runtime hook that publishes to the Channels layer."""

from __future__ import annotations

from typing import Any

from tasks_app import events as publisher
from tasks_app.core import events as ev
from tasks_app.core.broker import Outcome
from tasks_app.core.states import TaskState
from tasks_app.core.task import Job, ms_to_iso
from workers_app.runtime.executor import Report
from workers_app.runtime.hooks import Hook

WORKER_EVENTS = {"joined": ev.WORKER_JOINED, "left": ev.WORKER_LEFT,
                 "paused": ev.WORKER_PAUSED, "resumed": ev.WORKER_RESUMED}


def failure_events(task_id: str, error: str, outcome: Outcome) -> list[ev.Event]:
    """task.failed, then task.retrying or task.dead_lettered, for one failed attempt."""
    base = ev.task_data(task_id, outcome.type, outcome.priority)
    will_retry = outcome.state is TaskState.RETRYING
    out = [ev.event(ev.TASK_FAILED, {**base, "error": error, "attempt": outcome.attempt,
                                     "will_retry": will_retry, "state": outcome.state.value,
                                     "worker_id": outcome.worker_id})]
    if will_retry:
        out.append(ev.event(ev.TASK_RETRYING, {**base, "attempt": outcome.attempt,
                                               "next_retry_at": ms_to_iso(outcome.next_retry_at)}))
    elif outcome.state is TaskState.DEAD_LETTER:
        out.append(ev.event(ev.TASK_DEAD_LETTERED, {**base, "error": error,
                                                    "reason": "max retries exceeded",
                                                    "message_id": outcome.dlq_message_id}))
    return out


class EventsHook(Hook):
    """Publishes task and worker events as they happen."""

    def task_started(self, worker_id: str, job: Job) -> None:
        publisher.publish(ev.event(ev.TASK_STARTED, ev.task_data(
            job.id, job.type, job.priority, worker_id=worker_id, attempt=job.attempt,
            queue_wait=round(job.queue_wait, 6))))

    def task_finished(self, worker_id: str, job: Job, report: Report, outcome: Outcome) -> None:
        if outcome.duplicate:
            return
        if report.ok:
            publisher.publish(ev.event(ev.TASK_COMPLETED, ev.task_data(
                job.id, job.type, job.priority, worker_id=worker_id, attempt=job.attempt,
                duration=round(report.duration, 6))))
            return
        for item in failure_events(job.id, report.error, outcome):
            publisher.publish(item)

    def attempt_lost(self, task_id: str, error: str, outcome: Outcome) -> None:
        for item in failure_events(task_id, error, outcome):
            publisher.publish(item)

    def worker_event(self, worker_id: str, event: str, **info: Any) -> None:
        kind = WORKER_EVENTS.get(event)
        if kind is None:
            return
        state = info.pop("state", event)
        publisher.publish(ev.event(kind, ev.worker_data(worker_id, state, **info)))
        if event in ("joined", "left"):
            # joined: the supervisor forks its slots next; a first send still importing
            # modules in the publisher thread must not be caught mid-import by the fork.
            publisher.flush(2.0)

    def queue_depths(self, depths: dict[str, int]) -> None:
        publisher.publish(ev.event(ev.QUEUE_DEPTH, {"queue_depths": depths,
                                                    "total_pending": sum(depths.values())}))
