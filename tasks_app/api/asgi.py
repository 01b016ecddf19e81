"""Serve the REST API's HTTP requests with one thread hop each.

Django's ASGI handler runs a sync view behind async-adapted middleware: every
middleware method, both request signals and ``response.close`` each hop to a
thread created for that request.  On two cores that costs about 4 ms of CPU per
request.  Here the whole request cycle (middleware, view, signals) runs
synchronously, as under WSGI, in a pooled thread: the same Django code, one hop.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import HttpResponseBase
from django.urls import set_script_prefix

from tasks_app.api import request_body
from tasks_app.api.errors import json_error
from tasks_app.conf import tq_settings

DEFAULT_API_PREFIXES = ("/api/", "/admin/")
"""Where the REST API lives unless the site includes it under another prefix."""

log = logging.getLogger("tasks_app.api")

THREADS = 32

Scope = dict[str, Any]
ASGIApp = Any


class ThreadedHandler(ASGIHandler):
    """Django's request cycle in sync mode, each request on a pooled thread."""

    def __init__(self, threads: int = THREADS) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="tq-api")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Read the body (at most API_MAX_BODY_BYTES), respond on a pool thread, send."""
        limit = int(tq_settings.API_MAX_BODY_BYTES)
        if request_body.declared_too_large(scope, limit):  # refused before reading a byte
            await self.send_response(self.too_large(limit), send)
            return
        try:
            body_file = await request_body.read_limited_body(
                receive, limit, settings.FILE_UPLOAD_MAX_MEMORY_SIZE)
        except RequestAborted:
            return
        except request_body.BodyTooLarge:
            await self.send_response(self.too_large(limit), send)
            return
        scope = request_body.with_content_length(scope, body_file)
        loop = asyncio.get_running_loop()
        try:
            try:
                response = await loop.run_in_executor(self.pool, self.respond, scope, body_file)
            except Exception:
                log.exception("request failed outside Django's error handling")
                response = json_error(500, "internal server error")
            await self.send_response(response, send)
            if response.streaming:
                await loop.run_in_executor(self.pool, response.close)
        finally:
            body_file.close()

    @staticmethod
    def too_large(limit: int) -> HttpResponseBase:
        """The 413 for a body over ``limit`` bytes (the connection is not reused)."""
        response = json_error(413, f"request body exceeds {limit} bytes")
        response["Connection"] = "close"
        return response

    def respond(self, scope: Scope, body_file: IO[bytes]) -> HttpResponseBase:
        """The WSGI-style cycle: request_started, middleware and view, request_finished."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response = self.get_response(request) if request is not None else error_response
        assert response is not None, "create_request gives a request or a response"
        if not response.streaming:
            response.close()  # fires request_finished on this thread, as WSGI would
        return response


def is_api(scope: Scope, prefixes: tuple[str, ...] = DEFAULT_API_PREFIXES) -> bool:
    """True for an HTTP request to the REST API or the admin API."""
    return scope["type"] == "http" and str(scope.get("path", "")).startswith(prefixes)


def with_threaded_api(app: ASGIApp, handler: ThreadedHandler | None = None,
                      prefixes: tuple[str, ...] = DEFAULT_API_PREFIXES) -> ASGIApp:
    """An ASGI app sending API requests (paths under ``prefixes``) through
    :class:`ThreadedHandler`, the rest to ``app``."""
    api = handler or ThreadedHandler()

    async def router(scope: Scope, receive: Any, send: Any) -> None:
        target = api if is_api(scope, prefixes) else app
        await target(scope, receive, send)

    return router
