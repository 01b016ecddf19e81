"""This site's configuration of the Django admin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.contrib import admin
from django.contrib.admin.apps import SimpleAdminConfig
from django.contrib.admin.checks import check_admin_app, check_dependencies
from django.core import checks


def check_discovered_admin(app_configs: Sequence[AppConfig] | None = None,
                           **kwargs: Any) -> list[checks.CheckMessage]:
    """The admin's checks of every registered ``ModelAdmin``, once the apps' admin modules
    are imported (whether or not the URL conf was loaded first)."""
    admin.autodiscover()
    return check_admin_app(app_configs, **kwargs)


class AdminConfig(SimpleAdminConfig):
    """``django.contrib.admin`` whose apps' admin modules are imported with the URL conf
    (``urls.py`` calls ``admin.autodiscover()`` before it builds the admin's URLs) and by the
    admin's system checks, not by ``django.setup()``.  A process that serves no page (a
    worker, most management commands) never loads them nor what they import: the admin's
    forms, and django.test and unittest through simplejwt's blacklist admin (about 2.8 MB
    a process)."""

    def ready(self) -> None:
        checks.register(check_dependencies, checks.Tags.admin)
        checks.register(check_discovered_admin, checks.Tags.admin)
