"""App config for the worker runtime's Django edge."""

from django.apps import AppConfig


class WorkersAppConfig(AppConfig):
    """Hosts the runworker_tq management command."""

    name = "workers_app"
    verbose_name = "Task queue workers"
    default_auto_field = "django.db.models.BigAutoField"
