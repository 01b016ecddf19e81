"""The REST API's body limit under any ASGI server: the threaded API handler reads at most
``API_MAX_BODY_BYTES`` of a request's body (``tasks_app.server.body_limits`` refuses it
earlier, in daphne itself, when the site hardens its server)."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Any

from django.core.exceptions import RequestAborted


class BodyTooLarge(Exception):
    """The request body passed the limit while it was being read."""


def declared_too_large(scope: dict[str, Any], limit: int) -> bool:
    """True when the request's Content-Length header is over ``limit``."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value) > limit
            except ValueError:
                return False
    return False


async def read_limited_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int,
                            memory_size: int) -> IO[bytes]:
    """Django's ``read_body``, raising :class:`BodyTooLarge` once past ``limit`` bytes."""
    body_file = tempfile.SpooledTemporaryFile(max_size=memory_size, mode="w+b")  # noqa: SIM115
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            body_file.write(chunk)
            if not message.get("more_body", False):
                break
    except BaseException:
        body_file.close()
        raise
    body_file.seek(0)
    return body_file


def with_content_length(scope: dict[str, Any], body_file: IO[bytes]) -> dict[str, Any]:
    """``scope`` with a Content-Length header for a body that came chunked.

    DRF takes a request without CONTENT_LENGTH for one without a body, so a
    chunked JSON body would be silently read as empty ("task type is required").
    """
    headers = scope.get("headers", [])
    if any(name.lower() == b"content-length" for name, _ in headers):
        return scope
    size = body_file.seek(0, 2)
    body_file.seek(0)
    if not size:
        return scope
    kept = [(n, v) for n, v in headers if n.lower() != b"transfer-encoding"]
    return {**scope, "headers": [*kept, (b"content-length", str(size).encode())]}
