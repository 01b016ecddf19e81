"""Make Django's own error pages (unknown URL, 405, 500, bad Host) JSON like the API's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from tasks_app.api.errors import json_error, phrase

# Pages that stay HTML: the Django admin and static files.
HTML_PREFIXES = ("/django-admin/", "/static/")
# Headers an error keeps when its body is replaced.
KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")

GetResponse = Callable[[HttpRequest], Any]


def needs_json(request: HttpRequest, response: HttpResponseBase) -> bool:
    """True for an error response outside the HTML pages that is not JSON yet."""
    if response.status_code < 400 or request.path.startswith(HTML_PREFIXES):
        return False
    return not str(response.get("Content-Type", "")).startswith("application/json")


def as_json(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """The JSON twin of a non-JSON error response, keeping its status and auth headers."""
    if not needs_json(request, response):
        return response
    status = response.status_code
    replacement = json_error(status, phrase(status).lower())
    for name in KEPT_HEADERS:
        if response.has_header(name):
            replacement[name] = response[name]
    return replacement


def json_errors_middleware(get_response: GetResponse) -> Callable[[HttpRequest], Any]:
    """Middleware (sync and async) applying :func:`as_json` to every response."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            response = await get_response(request)
            return as_json(request, response)

        return markcoroutinefunction(async_middleware)

    def middleware(request: HttpRequest) -> HttpResponseBase:
        return as_json(request, get_response(request))

    return middleware


json_errors_middleware.sync_capable = True  # type: ignore[attr-defined]
json_errors_middleware.async_capable = True  # type: ignore[attr-defined]
