"""ASGI entry point: Django over HTTP and the live events WebSocket at ``/ws``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_project.settings")

django_asgi_app = get_asgi_application()

# Imported once Django is set up.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from tasks_app.api.asgi import with_threaded_api  # noqa: E402
from tasks_app.consumers import EventsConsumer  # noqa: E402
from tasks_app.ws_origin import origin_checked  # noqa: E402

websocket_routes = [path("ws", EventsConsumer.as_asgi())]

# Static files (the dashboard's and the admin's) are served by daphne itself, DEBUG or not.
application = ProtocolTypeRouter(
    {
        "http": with_threaded_api(ASGIStaticFilesHandler(django_asgi_app)),
        "websocket": origin_checked(URLRouter(websocket_routes)),
    }
)
