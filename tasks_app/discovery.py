"""Find task handlers the way django.contrib.admin finds admin modules."""

from importlib import import_module

from django.utils.module_loading import autodiscover_modules

from tasks_app.conf import tq_settings

DEMO_HANDLERS_MODULE = "taskqueue_project.demo_handlers"


def autodiscover() -> None:
    """Import HANDLER_MODULE from every installed app, plus the demo handlers if enabled."""
    autodiscover_modules(tq_settings.HANDLER_MODULE)
    if tq_settings.DEMO_HANDLERS:
        import_module(DEMO_HANDLERS_MODULE)
