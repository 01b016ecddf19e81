"""App config for the task queue's Django edge."""

from django.apps import AppConfig


class TasksAppConfig(AppConfig):
    """Imports every app's task handler module once the registry is ready."""

    name = "tasks_app"
    verbose_name = "Task queue"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks; discover task handlers; expose the queue's metrics."""
        from tasks_app import checks, security_checks  # noqa: F401  (registers them)
        from tasks_app.discovery import autodiscover
        from tasks_app.metrics import register_collector

        autodiscover()
        register_collector()
