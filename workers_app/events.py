"""The worker's own live events (worker.* and queue.depth), published to the Channels layer.

Task events are not published here: the Lua scripts publish them in the same
atomic step as each transition (see docs/architecture.md, "Live events").
"""

from __future__ import annotations

from typing import Any

from tasks_app.core import events as ev
from tasks_app.live import publisher
from workers_app.runtime.hooks import Hook

WORKER_EVENTS = {"joined": ev.WORKER_JOINED, "left": ev.WORKER_LEFT,
                 "paused": ev.WORKER_PAUSED, "resumed": ev.WORKER_RESUMED,
                 "heartbeat": ev.WORKER_HEARTBEAT}


class EventsHook(Hook):
    """Publishes worker.joined/left/paused/resumed/heartbeat, queue.depth and queue.stats."""

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

    def queue_totals(self, totals: dict[str, int]) -> None:
        publisher.publish(ev.event(ev.QUEUE_STATS, totals))
