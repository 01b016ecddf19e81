"""ASGI entry point: Django over HTTP and the live events WebSocket at ``/ws``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_project.settings")

django_asgi_app = get_asgi_application()

# Imported once Django is set up.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from tasks_app.consumers import EventsConsumer  # noqa: E402
from tasks_app.ws_origin import origin_checked  # noqa: E402

websocket_routes = [path("ws", EventsConsumer.as_asgi())]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": origin_checked(URLRouter(websocket_routes)),
    }
)
