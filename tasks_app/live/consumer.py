"""``/ws``: live events for browsers and other clients (Channels)."""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import replace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from tasks_app.api.authentication import principal_id
from tasks_app.conf import tq_settings
from tasks_app.live import groups
from tasks_app.live.auth import Grant, authenticate_scope, recheck
from tasks_app.live.filters import EventFilter, FilterTooLarge
from tasks_app.live.hub import DROPPED, Encoded, hub
from tasks_app.server import backpressure
from tasks_app.visibility import event_scopes

log = logging.getLogger("tasks_app.ws")

SUBPROTOCOL = "taskqueue"
UNAUTHORIZED = 4401
BAD_FILTER = 4400
TOO_MANY_SOCKETS = 4429

_open_sockets: collections.Counter[str] = collections.Counter()
"""Open sockets per principal in this process (with auth on): WS_MAX_SOCKETS_PER_CLIENT."""


class EventsConsumer(AsyncWebsocketConsumer):
    """Sends each matching event as one JSON text message.

    Events wait in a buffer of ``WS_CLIENT_BUFFER`` events; a client that falls
    that far behind is disconnected with close code 4408.  A client whose credential
    stops holding (revoked, expired, signed out) is disconnected with 4401.
    """

    async def connect(self) -> None:
        """Check credentials, read filters, start receiving from the process's hub."""
        self.buffer: collections.deque[str] = collections.deque()
        self.wake = asyncio.Event()
        self.sender: asyncio.Task[None] | None = None
        self.guard: asyncio.Task[None] | None = None
        self.session_group: str | None = None
        self.counted: str | None = None
        offered = self.scope.get("subprotocols", [])
        chosen = SUBPROTOCOL if SUBPROTOCOL in offered else None
        grant = await authenticate_scope(self.scope)
        if grant is None:
            await self.accept(chosen)
            await self.close(code=UNAUTHORIZED)
            return
        try:
            self.filter = EventFilter.from_query_string(self.scope.get("query_string", b""))
        except FilterTooLarge:
            await self.accept(chosen)
            await self.close(code=BAD_FILTER)
            return
        await self._scope_to(grant)
        if grant.principal is not None:  # auth on: one client cannot hold unbounded sockets
            who = principal_id(grant.principal)
            if _open_sockets[who] >= tq_settings.WS_MAX_SOCKETS_PER_CLIENT:
                await self.accept(chosen)
                await self.close(code=TOO_MANY_SOCKETS)
                return
            _open_sockets[who] += 1  # given back in disconnect
            self.counted = who
        try:
            if grant.session:  # the dashboard's socket: closed when its session signs out
                self.session_group = groups.session_group(grant.session)
                await self.channel_layer.group_add(self.session_group, self.channel_name)
            await hub().join(self)
            await self.accept(chosen)
        except BaseException:
            # Redis away (or the client gone): no disconnect follows a connect that
            # raised, so the socket's count is given back here
            self._uncount()
            raise
        self.sender = asyncio.create_task(self._send_loop())
        self.guard = asyncio.create_task(self._guard(grant))

    def _uncount(self) -> None:
        if self.counted is not None:
            _open_sockets[self.counted] -= 1
            if _open_sockets[self.counted] <= 0:
                del _open_sockets[self.counted]
            self.counted = None

    async def disconnect(self, code: int) -> None:
        """Stop receiving."""
        self._uncount()
        hub().leave(self)
        for task in (self.sender, self.guard):
            if task is not None:
                task.cancel()
        if self.session_group:
            await self.channel_layer.group_discard(self.session_group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Clients only listen; anything they send is ignored."""

    def offer(self, batch: list[Encoded]) -> None:
        """Buffer the events this client asked for; disconnect it past the cap."""
        wanted = [text for event, text in batch
                  if event["type"] == DROPPED or self.filter.match(event)]
        if not wanted:
            return
        if len(self.buffer) + len(wanted) > tq_settings.WS_CLIENT_BUFFER:
            hub().leave(self)
            self.buffer.clear()
            asyncio.ensure_future(self.close(code=backpressure.TOO_SLOW))
            return
        self.buffer.extend(wanted)
        self.wake.set()

    async def _send_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            queued, flush_every = 0, max(1, backpressure.limit_bytes() // 4)
            while self.buffer:
                text = self.buffer.popleft()
                await self.send(text_data=text)
                # daphne's send only queues the bytes: every quarter of the unsent-bytes
                # bound, let the event loop hand them to the socket, or a burst drained in
                # one go would pass the bound (close 4408) even for a client that reads.
                queued += len(text)
                if queued >= flush_every:
                    queued = 0
                    await asyncio.sleep(0)

    async def _guard(self, grant: Grant | None) -> None:
        """Check the credential again at its expiry and every WS_REAUTH_INTERVAL."""
        while grant is not None and (delay := grant.recheck_in()) is not None:
            await asyncio.sleep(delay)
            try:
                grant = await recheck(self.scope, grant)
            except Exception:  # cannot tell (database away): fail closed
                log.exception("could not check a /ws client's credential again")
                grant = None
            if grant is not None:  # e.g. an API key no longer admin: only its own tasks now
                await self._scope_to(grant)
        if grant is None:
            await self._unauthorized()

    async def _scope_to(self, grant: Grant) -> None:
        """Limit the task, workflow and schedule events to what the grant's principal may
        see."""
        owner, workflow_owner, schedules = await database_sync_to_async(event_scopes)(
            grant.principal)
        self.filter = replace(self.filter, owner=owner, workflow_owner=workflow_owner,
                              schedules=schedules)

    async def _unauthorized(self) -> None:
        hub().leave(self)
        self.buffer.clear()
        await self.close(code=UNAUTHORIZED)

    async def session_ended(self, message: dict[str, Any]) -> None:
        """The session this socket was opened with signed out."""
        await self._unauthorized()

    async def events_batch(self, message: dict[str, Any]) -> None:
        """Not used: the hub, not the consumer, is in the group."""
