"""Janitor: keeps the dead-letter queue within DLQ_MAX_ENTRIES and DLQ_MAX_AGE."""

from __future__ import annotations

import logging
import random

from tasks_app.core.broker import Broker

from .loops import Loop

log = logging.getLogger("workers_app.runtime")
INTERVAL = 60.0
BATCH = 500
MAX_BATCHES = 20
"""Most batches one round deletes; the rest waits for the next round (or another worker)."""


class Janitor(Loop):
    """Every minute or so: delete the oldest dead-letter entries beyond the bounds."""

    name = "janitor"

    def __init__(self, broker: Broker) -> None:
        super().__init__(INTERVAL * random.uniform(0.8, 1.2))
        self.broker = broker

    @property
    def enabled(self) -> bool:
        """False when the dead-letter queue has no bound at all."""
        config = self.broker.config
        return bool(config.dlq_max_entries or config.dlq_max_age)

    def run_once(self) -> None:
        """One round of :meth:`trim`."""
        self.trim()

    def trim(self) -> int:
        """Trim in batches of BATCH until within bounds or MAX_BATCHES ran; return how
        many entries were deleted."""
        total = 0
        for _ in range(MAX_BATCHES if self.enabled else 0):
            by_count, by_age = self.broker.trim_dlq(BATCH)
            total += by_count + by_age
            if by_count + by_age < BATCH:
                break
        if total:
            log.info("dead-letter queue trimmed: %d oldest entries deleted", total)
        return total
