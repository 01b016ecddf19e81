"""Heartbeat: keeps the worker's registry record and its tasks' leases fresh."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tasks_app.core.broker import Beat, Broker

from .loops import Loop

log = logging.getLogger("workers_app.runtime")


class Heartbeat(Loop):
    """Every ``heartbeat_interval``: refresh the record, renew leases, report lost ones."""

    name = "heartbeat"

    def __init__(
        self,
        broker: Broker,
        worker_id: str,
        fields: Callable[[], dict[str, Any]],
        running: Callable[[], list[tuple[str, str, str]]],
        on_lost: Callable[[list[tuple[str, str]]], None],
        on_beat: Callable[[Beat], None] | None = None,
    ) -> None:
        super().__init__(broker.config.heartbeat_interval)
        self.broker = broker
        self.worker_id = worker_id
        self.fields = fields
        self.running = running
        self.on_lost = on_lost
        self.on_beat = on_beat
        self.paused = False
        self.first = True  # this process's first beat: tasks left under our id are a past run's

    def run_once(self) -> None:
        """Send one heartbeat."""
        beat = self.broker.heartbeat(self.worker_id, self.fields(), self.running(),
                                     first=self.first)
        self.first = False
        self.paused = beat.paused
        for task_id in beat.orphans:
            log.warning("task %s was taken by a dequeue whose reply was lost; put back",
                        task_id, extra={"task_id": task_id})
        if beat.lost:
            log.warning("lease lost for %d task(s): %s", len(beat.lost),
                        ", ".join(task_id for task_id, _ in beat.lost))
            self.on_lost(beat.lost)
        if self.on_beat is not None:
            self.on_beat(beat)
