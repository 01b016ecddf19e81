"""Who may call what: any authenticated client for tasks, an admin principal for /admin/."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tasks_app import permissions
from tasks_app.api.authentication import KeyPrincipal
from tasks_app.conf import tq_settings

ADMIN_REQUIRED = "admin credentials required"


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
    """Anyone while auth is off; otherwise an admin API key, or a staff user with the view's
    model permissions (the same ones the Django admin asks for).

    An admin view declares what each HTTP method needs in ``required_permissions``, a
    class attribute mapping a method to the permission names (``"app_label.codename"``,
    from ``tasks_app.permissions``) a user must hold, all of them::

        required_permissions: ClassVar[dict[str, tuple[str, ...]]] = {
            "GET": (permissions.DLQ_VIEW,),
            "DELETE": (permissions.DLQ_VIEW, permissions.DLQ_DELETE),
        }

    An empty tuple means any staff user. HEAD is checked as GET and OPTIONS needs staff
    only (it describes the view, nothing more). A method the view handles but does not
    declare is refused to every user (fail closed); a method it does not handle is left
    to answer 405. Superusers hold every permission; an admin key may do everything; a
    client key or a non-staff user gets 403 "admin credentials required"; a staff user
    missing a permission gets 403 "missing permission <name>".
    """

    message = ADMIN_REQUIRED

    def has_permission(self, request: Request, view: Any) -> bool:
        """True when auth is off, for an admin key, or for staff holding the permissions."""
        if not tq_settings.AUTH_ENABLED:
            return True
        user = request.user
        if not (_authenticated(request) and getattr(user, "is_staff", False)):
            return False
        if isinstance(user, KeyPrincipal):
            return True
        needed = required_permissions(view, request.method or "GET")
        if needed is None:
            self.message = f"no permission is declared for {request.method}"
            return False
        missing = [name for name in needed if not user.has_perm(name)]
        if missing:
            self.message = permissions.missing(missing)
        return not missing


def required_permissions(view: Any, method: str) -> tuple[str, ...] | None:
    """What ``view`` declares for ``method``: () for staff only, None when undeclared."""
    if method == "OPTIONS" or not hasattr(view, method.lower()):
        return ()  # a description of the view, or a 405
    declared: dict[str, tuple[str, ...]] = getattr(view, "required_permissions", {})
    return declared.get("GET" if method == "HEAD" else method)
