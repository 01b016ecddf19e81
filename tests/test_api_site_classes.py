"""A site's own DRF authentication and permission classes for the API (TASKQUEUE
AUTHENTICATION_CLASSES and PERMISSION_CLASSES): theirs identify the caller instead of ours,
and their permissions are checked on top of ours (an admin endpoint still needs staff with
the model permissions)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tasks_app import permissions
from tasks_app.conf import tq_settings
from tests.api_support import call, call_on, error

BASIC = "rest_framework.authentication.BasicAuthentication"
SESSION = "rest_framework.authentication.SessionAuthentication"
CLIENT_KEY = "client-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.django_db


class NoDeletes(BasePermission):
    """A site rule: nothing is deleted through the API."""

    message = "deleting is off on this site"

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.method != "DELETE")


def site(**extra: Any) -> dict[str, Any]:
    """TASKQUEUE with auth on, keys of ours configured, and the given site classes."""
    return {"REDIS_URL": tq_settings.REDIS_URL, "AUTH_ENABLED": True,
            "API_KEYS": [CLIENT_KEY], "ADMIN_API_KEYS": [ADMIN_KEY], **extra}


def user(name: str, *granted: str, staff: bool = False) -> User:
    """A user with a password and the given ``app_label.codename`` permissions."""
    made = User.objects.create_user(name, password=PASSWORD, is_staff=staff)
    for dotted in granted:
        app_label, codename = dotted.split(".")
        made.user_permissions.add(Permission.objects.get(
            content_type__app_label=app_label, codename=codename))
    return made


def basic(name: str) -> dict[str, str]:
    """The Authorization header of HTTP Basic for ``name``."""
    token = base64.b64encode(f"{name}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_the_sites_basic_authentication_identifies_the_caller() -> None:
    user("alice")
    with override_settings(TASKQUEUE=site(AUTHENTICATION_CLASSES=[BASIC])):
        created = call("POST", "/api/v1/tasks", {"type": "echo"}, **basic("alice"))
        assert created.status == 201, created
        refused = call("GET", "/api/v1/tasks")
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="api"'


def test_the_sites_classes_replace_ours() -> None:
    """With AUTHENTICATION_CLASSES set, our API keys no longer identify anyone."""
    with override_settings(TASKQUEUE=site(AUTHENTICATION_CLASSES=[BASIC])):
        assert call("GET", "/api/v1/tasks", **{"X-API-Key": CLIENT_KEY}).status == 401
    with override_settings(TASKQUEUE=site()):
        assert call("GET", "/api/v1/tasks", **{"X-API-Key": CLIENT_KEY}).status == 200


def test_a_session_signed_in_user_may_call_the_api_with_session_authentication() -> None:
    user("bob")
    client = Client(HTTP_HOST="localhost", raise_request_exception=False)
    assert client.login(username="bob", password=PASSWORD)
    with override_settings(TASKQUEUE=site(AUTHENTICATION_CLASSES=[SESSION])):
        assert call_on(client, "GET", "/api/v1/tasks").status == 200
        assert call("GET", "/api/v1/tasks").status == 403  # no session: DRF's answer


def test_admin_endpoints_keep_the_model_permission_check() -> None:
    user("clerk")
    user("viewer", permissions.DLQ_VIEW, staff=True)
    user("cleaner", permissions.DLQ_VIEW, permissions.DLQ_DELETE, staff=True)
    with override_settings(TASKQUEUE=site(AUTHENTICATION_CLASSES=[BASIC])):
        assert error(call("GET", "/admin/dlq", **basic("clerk")))[0] == 403
        assert call("GET", "/admin/dlq", **basic("viewer")).status == 200
        assert error(call("DELETE", "/admin/dlq", **basic("viewer"))) == (
            403, "Forbidden", f"missing permission {permissions.DLQ_DELETE}")
        assert call("DELETE", "/admin/dlq", **basic("cleaner")).status == 200


def test_the_sites_permission_classes_are_checked_on_top_of_ours() -> None:
    rule = [f"{__name__}.NoDeletes"]
    with override_settings(TASKQUEUE=site(PERMISSION_CLASSES=rule)):
        admin = {"X-API-Key": ADMIN_KEY}
        assert call("GET", "/admin/dlq", **admin).status == 200
        assert error(call("DELETE", "/admin/dlq", **admin)) == (
            403, "Forbidden", "deleting is off on this site")
        assert call("GET", "/api/v1/tasks").status == 401  # ours still ask for a credential
        assert error(call("GET", "/admin/dlq", **{"X-API-Key": CLIENT_KEY}))[0] == 403


def test_with_auth_off_the_sites_permissions_still_decide() -> None:
    """AUTH_ENABLED off opens our checks; the site's IsAuthenticated closes the API again."""
    user("carol")
    tq = {"REDIS_URL": tq_settings.REDIS_URL, "AUTHENTICATION_CLASSES": [BASIC],
          "PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"]}
    with override_settings(TASKQUEUE=tq):
        assert call("DELETE", "/admin/dlq").status == 401
        assert call("DELETE", "/admin/dlq", **basic("carol")).status == 200


def test_a_composed_drf_permission_is_accepted() -> None:
    with override_settings(TASKQUEUE=site(PERMISSION_CLASSES=[f"{__name__}.READ_ONLY"])):
        assert call("GET", "/api/v1/tasks", **{"X-API-Key": CLIENT_KEY}).status == 200
        assert call("POST", "/api/v1/tasks", {"type": "echo"},
                    **{"X-API-Key": CLIENT_KEY}).status == 403


def test_metrics_admin_check_uses_the_sites_authentication() -> None:
    user("ops", staff=True)
    client = Client(HTTP_HOST="localhost")
    with override_settings(TASKQUEUE=site(AUTHENTICATION_CLASSES=[BASIC])):
        assert client.get("/metrics", headers=basic("ops")).status_code == 200
        assert client.get("/metrics", headers={"X-API-Key": ADMIN_KEY}).status_code == 401


class NoWrites(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.method in ("GET", "HEAD", "OPTIONS"))


READ_ONLY = NoWrites & NoDeletes  # type: ignore[operator]  # a DRF composition, imported by its name
