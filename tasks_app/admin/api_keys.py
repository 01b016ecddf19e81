"""Django admin for the REST API's keys (created here, shown once, stored hashed)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey as LibraryAPIKey

from tasks_app.models import APIKey

if admin.site.is_registered(LibraryAPIKey):
    admin.site.unregister(LibraryAPIKey)  # one kind of key: ours, with the admin flag


@admin.register(APIKey)
class TaskQueueAPIKeyAdmin(APIKeyModelAdmin):
    """List, create and revoke API keys; mark admin keys."""

    def get_list_display(self, request: HttpRequest) -> tuple[Any, ...]:
        """The library's columns plus the admin flag."""
        return (*super().get_list_display(request), "is_admin")

    def get_list_filter(self, request: HttpRequest) -> tuple[Any, ...]:
        """Filter by creation date, admin flag and revocation."""
        return ("created", "is_admin", "revoked")
