"""WSGI entry point (the launcher serves ASGI through daphne; this is for plain WSGI hosts)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_project.settings")

application = get_wsgi_application()
