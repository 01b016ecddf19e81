"""One events subscription per web process, shared by all its WebSocket clients.

The hub subscribes to two Channels groups: worker and queue events (always)
and task events (published by the Lua scripts).  It decodes each message once
and hands the events to every client's bounded buffer.  Once it has passed
``WS_MAX_EVENTS_PER_SECOND`` task events in the current second it unsubscribes
from task events until the second is over, and tells its clients so
(``events.dropped``).  The scripts publish task events as compact rows, and the hub
builds the JSON events (:func:`tasks_app.core.events.expand`) only while some client
listens, so a flood of tasks costs the web tier little.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Protocol

from channels.layers import get_channel_layer

from tasks_app.conf import tq_settings
from tasks_app.core import events as ev
from tasks_app.core.events import Event
from tasks_app.live import groups

DROPPED = "events.dropped"


Encoded = tuple[Event, str]  # an event and its JSON text, encoded once for all clients


class Listener(Protocol):
    """What the hub delivers to: one WebSocket client."""

    def offer(self, batch: list[Encoded]) -> None:
        """Take a batch of events (never blocks)."""


class Hub:
    """The per-process fan-out point."""

    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._window_start = time.monotonic()
        self._passed = 0
        self._resume: asyncio.TimerHandle | None = None

    async def join(self, listener: Listener) -> None:
        """Start delivering to a listener (subscribing on the first one)."""
        self.listeners.add(listener)
        if not self._readers:
            try:
                await self._subscribe(groups.GROUP)
                await self._subscribe(groups.TASK_GROUP)
            except BaseException:
                self.leave(listener)  # the next listener subscribes again
                raise

    def leave(self, listener: Listener) -> None:
        """Stop delivering to a listener (unsubscribing after the last one)."""
        self.listeners.discard(listener)
        if self.listeners:
            return
        for reader in self._readers.values():
            reader.cancel()
        self._readers.clear()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None

    async def _subscribe(self, group: str) -> None:
        ready = asyncio.get_running_loop().create_future()
        self._readers[group] = asyncio.create_task(self._read(group, ready))
        await ready

    async def _read(self, group: str, ready: asyncio.Future[None]) -> None:
        layer = get_channel_layer()
        try:
            channel = await layer.new_channel()
            await layer.group_add(group, channel)
        except Exception as exc:  # Redis away: the listener joining hears it
            ready.set_exception(exc)
            return
        except BaseException:
            ready.cancel()
            raise
        ready.set_result(None)
        try:
            while True:
                message = await layer.receive(channel)
                if message.get("type") == "events.compact":
                    self.dispatch(ev.expand(message))
                else:
                    self.dispatch(message.get("events", []))
        finally:
            await layer.group_discard(group, channel)

    def dispatch(self, batch: list[Event]) -> None:
        """Pass the batch within this second's task-event budget to every listener."""
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._passed = now, 0
        budget = tq_settings.WS_MAX_EVENTS_PER_SECOND
        out: list[Event] = []
        for item in batch:
            if not item["type"].startswith("task."):
                out.append(item)
            elif self._passed < budget:
                self._passed += 1
                out.append(item)
        if self._passed >= budget and groups.TASK_GROUP in self._readers:
            out.append(self._pause(now, budget))
        self._deliver(out)

    def _deliver(self, out: list[Event]) -> None:
        if out:
            encoded = [(item, json.dumps(public(item))) for item in out]
            for listener in list(self.listeners):
                listener.offer(encoded)

    def _pause(self, now: float, budget: int) -> Event:
        """Stop taking task events until the second is over."""
        self._readers.pop(groups.TASK_GROUP).cancel()
        remaining = max(0.0, 1.0 - (now - self._window_start))
        self._resume = asyncio.get_running_loop().call_later(
            remaining, lambda: asyncio.ensure_future(self._unpause()))
        return ev.event(DROPPED, {"reason": "rate limit", "limit_per_second": budget,
                                  "resume_in": round(remaining, 3)})

    async def _unpause(self) -> None:
        self._resume = None
        self._window_start, self._passed = time.monotonic(), 0
        if self.listeners and groups.TASK_GROUP not in self._readers:
            await self._subscribe(groups.TASK_GROUP)


def public(item: Event) -> Event:
    """The event as clients receive it: without the task's owner, which only the
    server-side visibility filter uses."""
    data = item.get("data")
    if not isinstance(data, dict) or "owner" not in data:
        return item
    return {**item, "data": {k: v for k, v in data.items() if k != "owner"}}


_hubs: dict[Any, Hub] = {}


def hub() -> Hub:
    """The hub of the running event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]
