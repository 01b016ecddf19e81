"""The taskqueue Django project: settings, URLs, ASGI/WSGI entry points and the launcher."""
