"""The project's settings plus the ``bench`` app, whose handlers module registers the
``bench_noop`` task type (DJANGO_SETTINGS_MODULE=bench.compare_settings)."""

from taskqueue_project.settings import *  # noqa: F403
from taskqueue_project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
