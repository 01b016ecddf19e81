"""Refuse oversized request bodies before daphne reads them (part of ``harden_daphne()``).

Daphne (twisted) reads a request's whole body before it calls the application:
up to 100 kB in memory, past that into a temporary file, for as long as the
client keeps sending.  A client declaring ``Content-Length: 1000000000`` would
have daphne wait for (and spool to disk) a gigabyte before Django could say no.

:func:`install` makes daphne's request class check the body's size as it
arrives: a declared ``Content-Length`` over the limit is refused at once, with
413 and no ``100 Continue``; a chunked body is refused as soon as the bytes
received pass the limit.  The 413 is the API's JSON error; the connection is
then closed (the rest of the body is read and dropped for at most
``LINGER_SECONDS``, so the client sees the reply rather than a reset).

The limit is ``API_MAX_BODY_BYTES`` for the REST API (``/api/``, ``/admin/``)
and ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django's own, 2.5 MB by default) for every
other page, at least ``API_MAX_BODY_BYTES``, except multipart file uploads there
(Django's limit leaves out file data: an admin upload may be any size).
``tasks_app.api.request_body`` applies the same API limit in the threaded API
handler, under any ASGI server.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from django.conf import settings

from tasks_app.api.asgi import DEFAULT_API_PREFIXES
from tasks_app.conf import tq_settings

"""The REST API's and admin API's path prefixes when taskqueue is mounted at the root."""
API_PREFIXES = [prefix.encode() for prefix in DEFAULT_API_PREFIXES]  # install() sets the site's
LINGER_SECONDS = 2.0
TOO_LARGE = "Content Too Large"


def limit_for(path: bytes, content_type: bytes = b"") -> int | None:
    """The largest body accepted for a request to ``path`` (None: no limit).

    A multipart body to a page outside the API has no limit here: Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE excludes uploaded files, which it streams to disk,
    so a file upload (the Django admin's, a site's own form) may be any size.
    """
    api_limit = int(tq_settings.API_MAX_BODY_BYTES)
    path = unquote_to_bytes(path.split(b"?", 1)[0])  # as daphne decodes it for the scope
    if path.startswith(tuple(API_PREFIXES)):
        return api_limit
    if content_type.strip().lower().startswith(b"multipart/form-data"):
        return None
    django_limit = getattr(settings, "DATA_UPLOAD_MAX_MEMORY_SIZE", None)
    return None if django_limit is None else max(int(django_limit), api_limit)


def too_large_body(limit: int) -> bytes:
    """The JSON error body of a 413."""
    return json.dumps({"error": TOO_LARGE,
                       "message": f"request body exceeds {limit} bytes"}).encode()


def install(api_prefixes: tuple[str, ...] | None = None) -> None:
    """Make daphne refuse oversized bodies early.

    ``api_prefixes`` are the REST API's path prefixes where the site mounts it.
    """
    if api_prefixes:
        API_PREFIXES[:] = [prefix.encode() for prefix in api_prefixes]
    try:
        from daphne import http_protocol
    except ImportError:  # another ASGI server: the API wrapper still applies the limit
        return
    if getattr(http_protocol.WebRequest, "body_limited", False):
        return
    http_protocol.WebRequest = _limited_request_class(http_protocol.WebRequest)


def _limited_request_class(base: Any) -> type:
    """A subclass of daphne's WebRequest that counts body bytes as they arrive."""

    class LimitedWebRequest(base):
        body_limited = True
        refused = False
        body_received = 0
        body_limit: int | None = None

        def gotLength(self, length: int | None) -> None:  # noqa: N802 (twisted's name)
            content_type = (self.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
            self.body_limit = limit_for(getattr(self.channel, "_path", b"") or b"", content_type)
            if self.body_limit is not None and length is not None and length > self.body_limit:
                base.gotLength(self, 0)
                self.refuse()
                return
            base.gotLength(self, length)

        def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 (twisted's name)
            if self.refused:
                return
            self.body_received += len(data)
            if self.body_limit is not None and self.body_received > self.body_limit:
                self.refuse()
                return
            base.handleContentChunk(self, data)

        def process(self) -> Any:
            if self.refused:
                return None
            return base.process(self)

        def refuse(self) -> None:
            """Send the 413 straight to the socket, then close the connection."""
            self.refused = True
            self.requestHeaders.removeHeader(b"Expect")  # no 100 Continue after the 413
            assert self.body_limit is not None
            self.channel.persistent = False
            reply_and_close(self.channel.transport, 413, TOO_LARGE,
                            too_large_body(self.body_limit))

    return LimitedWebRequest


def reply_and_close(transport: Any, status: int, reason: str, body: bytes) -> None:
    """Write a JSON error response straight to a twisted transport, then close it.

    The client's further bytes are read and dropped for ``LINGER_SECONDS`` (so it
    sees the reply rather than a reset), then the connection is aborted.
    """
    from twisted.internet import reactor as twisted_reactor
    from twisted.protocols.policies import ProtocolWrapper

    reactor: Any = twisted_reactor
    transport.write(f"HTTP/1.1 {status} {reason}\r\n".encode() +
                    b"Content-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                    b"Connection: close\r\n\r\n" + body)
    if isinstance(transport, ProtocolWrapper):
        # TLS: loseWriteConnection would half-close the socket beneath it, before
        # the (buffered, encrypted) reply is out.  Its own close sends the reply and
        # close_notify, and reads on until the client's; HTTP's channel is its
        # producer and holds the close back until unregistered.
        transport.unregisterProducer()
        transport.loseConnection()
    else:
        transport.loseWriteConnection()
    reactor.callLater(LINGER_SECONDS, abort, transport)


def abort(transport: Any) -> None:
    """Drop a closed connection the client has not closed yet."""
    if getattr(transport, "connected", False):
        transport.abortConnection()
