"""App config for the task queue's Django edge."""

from typing import Any

from django.apps import AppConfig


def _signed_out(sender: Any, **kwargs: Any) -> None:
    """``user_logged_out``: close that session's dashboard sockets.  The WebSocket side
    (Channels, the JWT stack) is imported at the first sign-out: a worker never loads it."""
    from tasks_app.live.auth import signed_out

    signed_out(sender, **kwargs)


class TasksAppConfig(AppConfig):
    """Imports every app's task handler module once the registry is ready."""

    name = "tasks_app"
    verbose_name = "Task queue"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks; discover task handlers; expose the queue's metrics;
        close a session's sockets when it signs out."""
        from django.contrib.auth.signals import user_logged_out

        from tasks_app import checks, security_checks  # noqa: F401  (registers them)
        from tasks_app.discovery import autodiscover
        from tasks_app.metrics.collector import register_collector

        autodiscover()
        register_collector()
        user_logged_out.connect(_signed_out, dispatch_uid="tasks_app.live.auth.signed_out")
