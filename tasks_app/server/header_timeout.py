"""A deadline for request headers in daphne, so slow clients cannot hold connections forever.

Twisted's HTTP channel only has an idle timeout (60 s), restarted by every byte
received: a "slowloris" client that sends a header byte every few seconds keeps
its connection (and a descriptor) for as long as it likes.

:func:`install` gives every daphne HTTP connection a deadline of
``HTTP_HEADER_TIMEOUT`` seconds (30 by default; None turns it off): a request's
headers must be complete that long after the connection opened or, on a
keep-alive connection, after the previous response.  When the deadline passes:

- a client that has started a request gets ``408 Request Timeout`` (the API's
  JSON error) and the connection is closed;
- an idle keep-alive connection (nothing sent since the last response) is closed
  without a reply, as browsers expect.

The deadline stops when the headers are complete: a long-running request, a body
that keeps arriving and an upgraded WebSocket connection are not affected (a body
that stops for 60 s still meets twisted's idle timeout).
"""

from __future__ import annotations

import json
from typing import Any

from tasks_app.server.body_limits import reply_and_close

REQUEST_TIMEOUT = "Request Timeout"


def timeout_body(seconds: float) -> bytes:
    """The JSON error body of a 408."""
    return json.dumps({"error": REQUEST_TIMEOUT,
                       "message": f"request headers not received within {seconds:g} s"}).encode()


def install() -> None:
    """Make daphne's HTTP connections enforce ``HTTP_HEADER_TIMEOUT`` (once per process)."""
    try:
        from daphne import http_protocol
    except ImportError:  # another ASGI server: its own timeouts apply
        return
    factory = http_protocol.HTTPFactory
    if getattr(factory, "header_deadline", False):
        return
    build = factory.buildProtocol

    def build_protocol(self: Any, addr: Any) -> Any:
        from tasks_app.conf import tq_settings

        protocol = build(self, addr)
        seconds = tq_settings.HTTP_HEADER_TIMEOUT
        channel = getattr(protocol, "_channel", None)  # twisted's HTTP/1.1 channel in its wrapper
        if protocol is not None and channel is not None and seconds is not None:
            HeaderDeadline(protocol, channel, float(seconds))
        return protocol

    factory.buildProtocol = build_protocol
    factory.header_deadline = True


class HeaderDeadline:
    """Watches one connection: armed while the next request's headers are awaited."""

    def __init__(self, protocol: Any, channel: Any, seconds: float) -> None:
        self.protocol = protocol  # what the transport delivers to, until an upgrade
        self.channel = channel
        self.seconds = seconds
        self.call: Any = None
        self.request_started = False
        self._wrap("connectionMade", before=self.arm)
        self._wrap("dataReceived", before=self.saw_data)
        self._wrap("allHeadersReceived", before=self.disarm)
        self._wrap("requestDone", before=self.rearm)
        self._wrap("connectionLost", before=self.disarm)

    def _wrap(self, name: str, before: Any) -> None:
        original = getattr(self.channel, name)

        def wrapped(*args: Any) -> Any:
            before()
            return original(*args)

        setattr(self.channel, name, wrapped)

    def arm(self) -> None:
        from twisted.internet import reactor as twisted_reactor

        reactor: Any = twisted_reactor
        self.disarm()
        self.request_started = False
        self.call = reactor.callLater(self.seconds, self.expire)

    def disarm(self, *_: Any) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None

    def saw_data(self) -> None:
        if self.call is not None:
            self.request_started = True

    def rearm(self) -> None:
        """A response is done: on a connection that stays HTTP, wait for the next headers.

        Armed before twisted handles the requests a client pipelined, whose complete
        headers then disarm it at once.
        """
        if self.channel.persistent and self.still_http():
            self.arm()

    def still_http(self) -> bool:
        transport = self.channel.transport
        if transport is None or not getattr(transport, "connected", True):
            return False
        if getattr(self.protocol, "_channel", self.channel) is not self.channel:
            return False  # negotiated HTTP/2: twisted's H2 connection has its own rules
        receiver = getattr(transport, "wrappedProtocol", getattr(transport, "protocol", None))
        return receiver is None or receiver is self.protocol  # not upgraded to a WebSocket

    def expire(self) -> None:
        self.call = None
        if not self.still_http():
            return
        transport = self.channel.transport
        self.channel.persistent = False
        # Whatever the client sends from now on is dropped: the rest of a request it
        # was told timed out must not reach the application (nor a new one).
        self.channel.dataReceived = _ignore
        if not self.request_started:
            # Idle: close quietly.  The channel's own close also unregisters it as the
            # transport's producer, which a TLS close waits for.
            self.channel.loseConnection()
            return
        reply_and_close(transport, 408, REQUEST_TIMEOUT, timeout_body(self.seconds))


def _ignore(data: bytes) -> None:
    """A timed-out connection's further bytes: read and dropped until it closes."""
