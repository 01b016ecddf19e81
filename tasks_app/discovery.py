"""Find task handlers the way django.contrib.admin finds admin modules."""

from importlib import import_module
from importlib.util import find_spec

from django.utils.module_loading import autodiscover_modules

from tasks_app.conf import tq_settings
from tasks_app.core.registry import registry

DEMO_HANDLERS_MODULE = "taskqueue_project.demo_handlers"
DEMO_DJANGO_TASKS_MODULE = "taskqueue_project.demo_tasks"


def autodiscover() -> None:
    """Import HANDLER_MODULE from every installed app, plus the demo handlers if enabled;
    let the registry find Django tasks (``@task`` functions) by their paths."""
    autodiscover_modules(tq_settings.HANDLER_MODULE)
    if tasks_framework_available():
        from tasks_app.tasks_framework.runner import resolve

        registry.add_resolver(resolve)
    if tq_settings.DEMO_HANDLERS:
        import_demo_modules()


def import_demo_modules() -> None:
    """Register the demo handlers of taskqueue_project (and its demo Django tasks)."""
    import_module(DEMO_HANDLERS_MODULE)
    if tasks_framework_available():
        import_module(DEMO_DJANGO_TASKS_MODULE)


def tasks_framework_available() -> bool:
    """True with Django 6's django.tasks or the django-tasks backport installed."""
    return any(find_spec(name) is not None for name in ("django.tasks", "django_tasks"))


BACKEND_PATHS = ("tasks_app.tasks_framework.TaskQueueBackend",
                 "tasks_app.backends.TaskQueueBackend")  # the first path, still accepted


def django_tasks_configured() -> bool:
    """True when a TASKS alias runs Django tasks on taskqueue (so workers can run them)."""
    from django.conf import settings

    aliases = getattr(settings, "TASKS", {}) or {}
    return tasks_framework_available() and any(
        (config or {}).get("BACKEND") in BACKEND_PATHS for config in aliases.values()
    )
