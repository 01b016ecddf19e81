"""The project's settings plus tests.signal_recorder (for workers started by the tests)."""

from taskqueue_project.settings import *  # noqa: F403
from taskqueue_project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.signal_recorder"]
