"""One events subscription per web process, shared by all its WebSocket clients.

The hub joins the Channels group once, decodes each published batch once, thins
task events past ``WS_MAX_EVENTS_PER_SECOND`` (worker and queue events always
pass; each client is told how many were dropped), and hands the rest to every
client's bounded buffer.  A client whose buffer overflows is disconnected.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from channels.layers import get_channel_layer

from tasks_app import events
from tasks_app.conf import tq_settings
from tasks_app.core import events as ev
from tasks_app.core.events import Event

ALWAYS_SENT = ("worker.", "queue.")
DROPPED = "events.dropped"


class Listener(Protocol):
    """What the hub delivers to: one WebSocket client."""

    def offer(self, batch: list[Event]) -> None:
        """Take a batch of events (never blocks)."""


class Hub:
    """The per-process fan-out point."""

    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self._reader: asyncio.Task[None] | None = None
        self._window_start = time.monotonic()
        self._passed = 0
        self._dropped = 0

    async def join(self, listener: Listener) -> None:
        """Start delivering to a listener (subscribing on the first one)."""
        self.listeners.add(listener)
        if self._reader is None or self._reader.done():
            ready = asyncio.get_running_loop().create_future()
            self._reader = asyncio.create_task(self._read(ready))
            await ready

    def leave(self, listener: Listener) -> None:
        """Stop delivering to a listener (unsubscribing after the last one)."""
        self.listeners.discard(listener)
        if not self.listeners and self._reader is not None:
            self._reader.cancel()
            self._reader = None

    async def _read(self, ready: asyncio.Future[None]) -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(events.GROUP, channel)
        ready.set_result(None)
        try:
            while True:
                message = await layer.receive(channel)
                self.dispatch(message.get("events", []))
        finally:
            await layer.group_discard(events.GROUP, channel)

    def dispatch(self, batch: list[Event]) -> None:
        """Thin the batch to this second's budget and offer it to every listener."""
        now = time.monotonic()
        out: list[Event] = []
        if now - self._window_start >= 1.0:
            if self._dropped:
                out.append(ev.event(DROPPED, {"count": self._dropped}))
            self._window_start, self._passed, self._dropped = now, 0, 0
        budget = tq_settings.WS_MAX_EVENTS_PER_SECOND
        for item in batch:
            if item["type"].startswith(ALWAYS_SENT) or self._passed < budget:
                self._passed += not item["type"].startswith(ALWAYS_SENT)
                out.append(item)
            else:
                self._dropped += 1
        if out:
            for listener in list(self.listeners):
                listener.offer(out)


_hubs: dict[Any, Hub] = {}


def hub() -> Hub:
    """The hub of the running event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]
