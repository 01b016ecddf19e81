"""Who may call what: any authenticated client for tasks, an admin principal for /admin/."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tasks_app.conf import tq_settings


def _authenticated(request: Request) -> bool:
    user = request.user
    return bool(user is not None and user.is_authenticated)


class IsClient(BasePermission):
    """Anyone while auth is off; otherwise any authenticated caller."""

    message = "authentication credentials were not provided"

    def has_permission(self, request: Request, view: Any) -> bool:
        """True when auth is off or the caller authenticated."""
        return not tq_settings.AUTH_ENABLED or _authenticated(request)


class IsAdmin(BasePermission):
    """Anyone while auth is off; otherwise a staff user's JWT or an admin API key."""

    message = "admin credentials required"

    def has_permission(self, request: Request, view: Any) -> bool:
        """True when auth is off or the caller is an admin principal."""
        if not tq_settings.AUTH_ENABLED:
            return True
        return _authenticated(request) and bool(getattr(request.user, "is_staff", False))
