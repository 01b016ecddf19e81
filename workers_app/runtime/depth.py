"""Depth reporter: tells the hooks the pending counts, at most once a second, cluster-wide."""

from __future__ import annotations

import json

from tasks_app.core.broker import Broker, redis_errors
from tasks_app.core.inspect import Inspector

from .hooks import Hook
from .loops import Loop

PERIOD = 1.0


class DepthReporter(Loop):
    """Every second one worker of the cluster (whoever claims the lock) reports changed
    depths and totals."""

    name = "depth-reporter"

    def __init__(self, broker: Broker, hooks: Hook) -> None:
        super().__init__(PERIOD)
        self.broker = broker
        self.hooks = hooks
        self.inspector = Inspector(broker)

    def run_once(self) -> None:
        """Report depths and totals if this worker holds the period's lock and they changed."""
        if not self.broker.claim_depth_report(PERIOD * 0.9):
            return
        depths = self.inspector.queue_depths()
        if self._changed(self.broker.keys.depth_last, depths):
            self.hooks.queue_depths(depths)
        totals = self.inspector.totals()
        if self._changed(self.broker.keys.totals_last, totals):
            self.hooks.queue_totals(totals)

    def _changed(self, key: str, value: dict[str, int]) -> bool:
        encoded = json.dumps(value, sort_keys=True)
        with redis_errors():
            return bool(self.broker.client.getset(key, encoded) != encoded)
