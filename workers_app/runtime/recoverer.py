"""Recoverer: puts back tasks whose worker died and drops dead workers."""

from __future__ import annotations

import logging
import random

from tasks_app.core.broker import Broker

from .loops import Loop

log = logging.getLogger("taskqueue.worker")


class Recoverer(Loop):
    """Every ``recovery_interval``: recover expired leases, reap silent workers."""

    name = "recoverer"

    def __init__(self, broker: Broker) -> None:
        interval = broker.config.recovery_interval
        super().__init__(interval * random.uniform(0.8, 1.2))
        self.broker = broker

    def run_once(self) -> None:
        """One sweep; loops while a full batch came back."""
        while True:
            tasks, workers = self.broker.recover(limit=500)
            for task in tasks:
                log.warning("recovered task %s from lost worker %s -> %s", task.task_id,
                            task.outcome.worker_id, task.outcome.state.value,
                            extra={"task_id": task.task_id})
            for worker_id in workers:
                log.warning("worker %s stopped heartbeating; removed", worker_id)
            if len(tasks) < 500:
                return
