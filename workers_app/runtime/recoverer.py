"""Recoverer: puts back tasks whose worker died and drops dead workers."""

from __future__ import annotations

import logging
import random

from tasks_app.core.broker import Broker

from .hooks import Hook
from .loops import Loop

log = logging.getLogger("workers_app.runtime")


class Recoverer(Loop):
    """Every ``recovery_interval``: recover expired leases, reap silent workers."""

    name = "recoverer"

    def __init__(self, broker: Broker, hooks: Hook | None = None) -> None:
        interval = broker.config.recovery_interval
        super().__init__(interval * random.uniform(0.8, 1.2))
        self.broker = broker
        self.hooks = hooks or Hook()

    def run_once(self) -> None:
        """One sweep; loops while a full batch came back."""
        while True:
            tasks, workers = self.broker.recover(limit=500)
            for task in tasks:
                self.hooks.attempt_lost(task.task_id, "worker lost", task.outcome)
            for worker_id in workers:
                log.warning("worker %s stopped heartbeating; removed", worker_id)
                self.hooks.worker_event(worker_id, "left", reason="heartbeat timeout")
            if len(tasks) < 500:
                return
