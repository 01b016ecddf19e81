"""ASGI entry points: ``/ws`` routes and a wrapper for a site's ASGI app.

The WebSocket lives next to the HTTP views, under the prefix the site gave
``include("tasks_app.urls")``: with ``path("queue/", include(...))`` it is ``/queue/ws``.
Call these once Django is set up (after ``get_asgi_application()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import URLPattern, URLResolver, get_script_prefix, path, reverse

from tasks_app.api.asgi import DEFAULT_API_PREFIXES, with_threaded_api
from tasks_app.conf import tq_settings
from tasks_app.live.consumer import EventsConsumer
from tasks_app.live.origin import origin_checked
from tasks_app.server import harden_daphne

ASGIApp = Any
Route = URLPattern | URLResolver


def base_path() -> str:
    """The path ``tasks_app.urls`` is included under, with slashes: ``/`` or ``/queue/``."""
    url = reverse("taskqueue:metrics").removesuffix("metrics")
    return "/" + url.removeprefix(get_script_prefix())


def websocket_path() -> str:
    """The live events socket's path for routing, e.g. ``/ws`` or ``/queue/ws``."""
    return base_path() + "ws"


def websocket_url_path() -> str:
    """The socket's path as a browser asks for it (with any ``SCRIPT_NAME``)."""
    return reverse("taskqueue:metrics").removesuffix("metrics") + "ws"


def api_prefixes() -> tuple[str, ...]:
    """The REST API's and admin API's path prefixes."""
    base = base_path()
    return tuple(base + prefix.lstrip("/") for prefix in DEFAULT_API_PREFIXES)


def websocket_urlpatterns() -> list[Route]:
    """Channels routes for a site's own ``URLRouter`` (the events socket)."""
    return [path(websocket_path().lstrip("/"), EventsConsumer.as_asgi(), name="taskqueue-ws")]


def with_taskqueue(http_app: ASGIApp, websocket_routes: Sequence[Route] = (),
                   threaded_api: bool = True) -> ASGIApp:
    """A site's HTTP ASGI app plus taskqueue's events socket (``ws`` next to the include).

    ``websocket_routes`` are the site's own Channels routes, served beside the events socket.
    Browsers' ``Origin`` must be one of ``ALLOWED_HOSTS``. With ``threaded_api`` the REST API's
    requests run the site's middleware synchronously on a thread pool (one thread hop each,
    see ``tasks_app.api.asgi``); pass False if some middleware is async-only.
    With ``TASKQUEUE["HARDEN_SERVER"]`` it also patches daphne (``tasks_app.server``);
    otherwise the site's server is left as it is.
    """
    routes = [*websocket_urlpatterns(), *websocket_routes]
    if tq_settings.HARDEN_SERVER:
        # The body limits go by where the API is mounted, threaded or not (else a site's
        # own /admin/, Django's admin, would get the API's limit and the API a page's).
        harden_daphne(api_prefixes())
    http = with_threaded_api(http_app, prefixes=api_prefixes()) if threaded_api else http_app
    return ProtocolTypeRouter({
        "http": http,
        "websocket": origin_checked(URLRouter(routes)),
    })
