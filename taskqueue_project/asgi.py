"""ASGI entry point: Django over HTTP and the live events WebSocket at ``/ws``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_project.settings")

django_asgi_app = get_asgi_application()

# Imported once Django is set up.
from taskqueue_project.static_files import StaticFilesHandler  # noqa: E402
from tasks_app.routing import with_taskqueue  # noqa: E402

# Static files (the dashboard's and the admin's) are served by daphne itself, DEBUG or not.
application = with_taskqueue(StaticFilesHandler(django_asgi_app))
