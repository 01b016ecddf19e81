"""Depth reporter: tells the hooks the pending counts, at most once a second, cluster-wide."""

from __future__ import annotations

import json

from tasks_app.core.broker import Broker, redis_errors
from tasks_app.core.inspect import Inspector

from .hooks import Hook
from .loops import Loop

PERIOD = 1.0


class DepthReporter(Loop):
    """Every second one worker of the cluster (whoever claims the lock) reports changed depths."""

    name = "depth-reporter"

    def __init__(self, broker: Broker, hooks: Hook) -> None:
        super().__init__(PERIOD)
        self.broker = broker
        self.hooks = hooks
        self.inspector = Inspector(broker)

    def run_once(self) -> None:
        """Report depths if this worker holds the period's lock and they changed."""
        if not self.broker.claim_depth_report(PERIOD * 0.9):
            return
        depths = self.inspector.queue_depths()
        encoded = json.dumps(depths, sort_keys=True)
        key = self.broker.keys.depth_last
        with redis_errors():
            previous = self.broker.client.getset(key, encoded)
        if previous != encoded:
            self.hooks.queue_depths(depths)
