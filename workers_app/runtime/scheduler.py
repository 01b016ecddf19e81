"""Scheduler: fires the due ticks of the periodic schedules of the queues a worker serves."""

from __future__ import annotations

import logging

from tasks_app.core.broker import Broker
from tasks_app.core.registry import HandlerRegistry
from tasks_app.core.schedules import Schedules

from .loops import Loop

log = logging.getLogger("workers_app.runtime")
MAX_WAIT = 1.0


class Scheduler(Loop):
    """Every worker runs one: fire what is due (one task per tick, whichever worker gets
    there first), then block until the earliest next tick (at most a second) or until a
    schedule is created or changed."""

    name = "scheduler"

    def __init__(self, broker: Broker, registry: HandlerRegistry,
                 schedules: Schedules | None = None) -> None:
        super().__init__(MAX_WAIT)
        self.broker = broker
        self.registry = registry
        self.schedules = schedules or Schedules(broker)
        self.next_wait = MAX_WAIT

    def queues(self) -> list[str]:
        """The queues served: their schedules live in each one's shard 0."""
        return [keys.queue for keys in self.broker.served() if keys.shard == 0]

    def run_once(self) -> None:
        """Fire every due tick; report schedules this worker has no handler for."""
        fired = self.schedules.fire_due(self.queues(), handles=self.registry.__contains__)
        for report in fired.unhandled:
            log.error("%s", report)
        self.next_wait = MAX_WAIT if fired.wait is None else min(fired.wait, MAX_WAIT)

    def wait(self) -> None:
        """Block on the schedules' wake-up lists instead of sleeping."""
        if self.next_wait > 0 and not self._stop.is_set():
            self.schedules.wait(self.queues(), self.next_wait)
