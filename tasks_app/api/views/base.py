"""The base of every API view: JSON only, auth and permissions from TASKQUEUE."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rest_framework.authentication import BaseAuthentication
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from tasks_app.api.authentication import enabled_authenticators
from tasks_app.api.errors import exception_handler
from tasks_app.api.parsers import BoundedJSONParser, JSONOnlyNegotiation
from tasks_app.api.permissions import IsAdmin, IsClient
from tasks_app.conf import tq_settings
from tasks_app.connection import get_broker
from tasks_app.core.inspect import Inspector


class OwnDRFSettings:
    """JSON in and out and JSON errors whatever the site's ``REST_FRAMEWORK`` says."""

    renderer_classes: ClassVar[list[type[BaseRenderer]]] = [JSONRenderer]
    parser_classes: ClassVar[list[type[BaseParser]]] = [BoundedJSONParser]
    content_negotiation_class = JSONOnlyNegotiation

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Any]:
        """The API's one exception-to-response map."""
        return exception_handler


class ApiView(OwnDRFSettings, APIView):
    """Task endpoints by default; set `admin_only` for the /admin/ ones."""

    admin_only: ClassVar[bool] = False

    def get_authenticators(self) -> list[BaseAuthentication]:
        """Whatever the settings enable for this request."""
        return enabled_authenticators()

    def get_permissions(self) -> list[BasePermission]:
        """Any client, or an admin principal for admin views; then the site's
        PERMISSION_CLASSES, every one of which must also allow the request."""
        ours: BasePermission = IsAdmin() if self.admin_only else IsClient()
        return [ours, *(permission() for permission in tq_settings.PERMISSION_CLASSES or ())]

    def get_authenticate_header(self, request: Request) -> str | None:
        """One challenge per enabled method, so a 401 says how to authenticate."""
        challenges = [auth.authenticate_header(request) for auth in self.get_authenticators()]
        return ", ".join(c for c in challenges if c) or None


def inspector() -> Inspector:
    """Admin operations on the shared broker."""
    return Inspector(get_broker())
