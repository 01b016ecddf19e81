"""Bound what daphne queues for a WebSocket client that does not read.

The consumer keeps at most ``WS_CLIENT_BUFFER`` events for a client (close code
4408 past that), but under daphne its ``send`` never waits: each message goes
straight into the connection's twisted write buffer, which grows without limit
while the client does not read.  So the consumer's buffer is always empty and a
stalled client would hold every event sent since it stopped reading.

:func:`install` gives that write buffer the same bound, in bytes:
``WS_CLIENT_BUFFER * BYTES_PER_EVENT``.  Past it the client is sent close code
4408 (queued behind what it has not read), nothing more is queued for it, and
the connection is dropped ``ABORT_AFTER_SECONDS`` later if it has not closed.

Bytes only leave that buffer when the event loop runs the reactor, so the
consumer's send loop yields every quarter of the bound: a burst it drains in
one go must not count against a client that reads.
"""

from __future__ import annotations

from typing import Any

from tasks_app.conf import tq_settings
from tasks_app.server.body_limits import abort

TOO_SLOW = 4408
BYTES_PER_EVENT = 256  # an event's JSON is ~150-300 bytes
ABORT_AFTER_SECONDS = 5.0


def limit_bytes() -> int:
    """Unsent bytes allowed per WebSocket connection."""
    return int(tq_settings.WS_CLIENT_BUFFER) * BYTES_PER_EVENT


def unsent_bytes(transport: Any) -> int:
    """Bytes written to a twisted TCP transport and not yet taken by the kernel."""
    buffered = getattr(transport, "dataBuffer", b"")
    pending = len(buffered) - int(getattr(transport, "offset", 0))
    return pending + int(getattr(transport, "_tempDataLen", 0))


def install() -> None:
    """Wrap daphne's ``WebSocketProtocol.serverSend`` with the bound (once)."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # not under daphne
        return
    if getattr(WebSocketProtocol, "send_bounded", False):
        return
    original = WebSocketProtocol.serverSend

    def server_send(self: Any, content: Any, binary: bool = False) -> None:
        if getattr(self, "too_slow", False):
            return
        if unsent_bytes(self.transport) > limit_bytes():
            _cut_off(self)
            return
        original(self, content, binary)

    WebSocketProtocol.serverSend = server_send
    WebSocketProtocol.send_bounded = True


def _cut_off(protocol: Any) -> None:
    from twisted.internet import reactor as twisted_reactor

    reactor: Any = twisted_reactor
    protocol.too_slow = True
    protocol.sendClose(code=TOO_SLOW, reason="client too slow: event buffer full")
    reactor.callLater(ABORT_AFTER_SECONDS, abort, protocol.transport)
