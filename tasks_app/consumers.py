"""``/ws``: live events for browsers and other clients (Channels)."""

from __future__ import annotations

import json
import time
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from tasks_app import events
from tasks_app.conf import tq_settings
from tasks_app.core import events as ev
from tasks_app.ws_auth import authenticate_scope
from tasks_app.ws_filters import EventFilter

SUBPROTOCOL = "taskqueue"
UNAUTHORIZED = 4401
ALWAYS_SENT = ("worker.", "queue.")
DROPPED = "events.dropped"


class EventsConsumer(AsyncWebsocketConsumer):
    """Sends each matching event as one JSON text message.

    A client gets at most ``WS_MAX_EVENTS_PER_SECOND`` task events a second; past
    that, task events are dropped (worker and queue events always pass) and an
    ``events.dropped`` message says how many, once a second.
    """

    async def connect(self) -> None:
        """Check credentials, read filters, join the events group."""
        self.filter = EventFilter.from_query_string(self.scope.get("query_string", b""))
        self.window_start = time.monotonic()
        self.sent_in_window = 0
        self.dropped = 0
        offered = self.scope.get("subprotocols", [])
        chosen = SUBPROTOCOL if SUBPROTOCOL in offered else None
        if not await authenticate_scope(self.scope):
            await self.accept(chosen)
            await self.close(code=UNAUTHORIZED)
            return
        await self.channel_layer.group_add(events.GROUP, self.channel_name)
        self.joined = True
        await self.accept(chosen)

    async def disconnect(self, code: int) -> None:
        """Leave the group."""
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(events.GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Clients only listen; anything they send is ignored."""

    async def events_batch(self, message: dict[str, Any]) -> None:
        """Forward the batch's matching events, within this client's rate."""
        now = time.monotonic()
        if now - self.window_start >= 1.0:
            await self._report_drops()
            self.window_start, self.sent_in_window = now, 0
        limit = tq_settings.WS_MAX_EVENTS_PER_SECOND
        for event in message["events"]:
            if not self.filter.match(event):
                continue
            if not event["type"].startswith(ALWAYS_SENT):
                if self.sent_in_window >= limit:
                    self.dropped += 1
                    continue
                self.sent_in_window += 1
            await self.send(text_data=json.dumps(event))

    async def _report_drops(self) -> None:
        if self.dropped:
            notice = ev.event(DROPPED, {"count": self.dropped})
            self.dropped = 0
            await self.send(text_data=json.dumps(notice))
