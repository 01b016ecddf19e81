"""Promoter: moves scheduled and retrying tasks to pending when they are due."""

from __future__ import annotations

from tasks_app.core.broker import Broker

from .loops import Loop

MAX_WAIT = 1.0


class Promoter(Loop):
    """Promotes due tasks, then blocks until the next one is due or a new one is delayed."""

    name = "promoter"

    def __init__(self, broker: Broker) -> None:
        super().__init__(MAX_WAIT)
        self.broker = broker
        self.next_wait = MAX_WAIT

    def run_once(self) -> None:
        """Promote everything due now."""
        moved, wait = self.broker.promote()
        while moved >= 1000:
            moved, wait = self.broker.promote()
        self.next_wait = MAX_WAIT if wait is None else min(wait, MAX_WAIT)

    def wait(self) -> None:
        """Block on the schedule wake-up list instead of sleeping."""
        if self.next_wait > 0 and not self._stop.is_set():
            self.broker.wait_for_schedule(self.next_wait)
