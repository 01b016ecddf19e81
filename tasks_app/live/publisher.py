"""Publishing live events to the Channels layer: the one place for the group and its messages.

Events are batched per process and each batch is sent to the group once (one
Redis PUBLISH on the group's channel, in the JSON message format of the
channels-redis pub/sub layer, as the Lua scripts do, whatever the number of
clients); every web process subscribed to the group fans the batch out to its own
WebSocket clients.  Publishing goes through the queue's own Redis client, so a
worker never loads the channel layer (channels-redis and its crypto library).
Publishing never blocks the caller: ``publish`` appends to a bounded
in-memory queue that a background thread drains every few milliseconds.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import threading
import time
from typing import Any

from tasks_app.conf import tq_settings
from tasks_app.core.events import Event
from tasks_app.live.groups import GROUP, group_channel, session_group

log = logging.getLogger("tasks_app.events")

BATCH = "events.batch"
SESSION_ENDED = "session.ended"  # to the sockets of a signed-out session (see live.auth)
FLUSH_INTERVAL = 0.005
MAX_BATCH = 500
MAX_PENDING = 100_000


def batch_message(events: list[Event]) -> dict[str, Any]:
    """The channel-layer message carrying a batch of events."""
    return {"type": BATCH, "events": events}


def end_session(digest: str) -> None:
    """Close the sockets of a session in every web process; best effort (if Redis is away,
    the sockets' periodic re-check closes them)."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    try:
        async_to_sync(get_channel_layer().group_send)(session_group(digest),
                                                      {"type": SESSION_ENDED})
    except Exception as exc:
        log.warning("could not close the signed-out session's sockets: %s", exc)


class EventPublisher:
    """Per-process batching publisher; safe to use from any thread and after fork."""

    def __init__(self, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.flush_interval = flush_interval
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._queue: collections.deque[Event] = collections.deque(maxlen=MAX_PENDING)
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def publish(self, evt: Event) -> None:
        """Queue one event; it reaches the group within a few milliseconds."""
        if self._pid != os.getpid():
            self._reset()
        if self._thread is None:
            self._start()
        if len(self._queue) == MAX_PENDING:
            self.dropped += 1
        self._idle.clear()
        self._queue.append(evt)
        self._wake.set()

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every queued event was sent; False on timeout."""
        if self._thread is None or self._pid != os.getpid():
            return True
        return self._idle.wait(timeout)

    def _start(self) -> None:
        # Build the client (and import its modules) in the calling thread: a fork while
        # another thread holds an import lock would deadlock the child's imports.
        from tasks_app.connection import get_broker

        client, channel = get_broker().client, group_channel(GROUP)
        self._thread = threading.Thread(target=self._run, args=(client, channel),
                                        name="tq-events", daemon=True)
        self._thread.start()

    def _run(self, client: Any, channel: str) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(self.flush_interval)
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                self._send(client, channel, batch)
            if not self._queue:
                self._idle.set()

    def _send(self, client: Any, channel: str, batch: list[Event]) -> None:
        try:
            client.publish(channel, json.dumps(batch_message(batch)))
        except Exception as exc:  # Redis away: live events are best effort
            log.warning("could not publish %d event(s): %s", len(batch), exc)


_publisher = EventPublisher()
atexit.register(_publisher.flush)


def publish(evt: Event) -> None:
    """Publish one event from this process, unless events are turned off."""
    if tq_settings.EVENTS_ENABLED:
        _publisher.publish(evt)


def flush(timeout: float = 2.0) -> bool:
    """Wait until this process's queued events are sent."""
    return _publisher.flush(timeout)
