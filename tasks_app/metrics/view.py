"""``GET /metrics``: Prometheus text format, behind a bearer token or, with auth on, admin
credentials.

The metrics carry queue depths and task types, so with ``AUTH_ENABLED`` and no
``METRICS_TOKEN`` they need what the admin API needs: an admin API key
(``X-API-Key``) or a staff user's JWT (``Authorization: Bearer``).  With
``METRICS_TOKEN`` set, that token (``Authorization: Bearer <token>``) is required
whatever AUTH_ENABLED says.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from tasks_app.api.authentication import enabled_authenticators
from tasks_app.conf import tq_settings


def _refused(message: str, challenge: str) -> JsonResponse:
    reply = JsonResponse({"error": "Unauthorized", "message": message}, status=401)
    reply["WWW-Authenticate"] = challenge
    return reply


def _admin_caller(request: HttpRequest) -> bool:
    """True when the request carries an admin API key or a staff user's JWT."""
    drf_request = Request(request, authenticators=enabled_authenticators())
    try:
        user = drf_request.user
    except AuthenticationFailed:
        return False
    return bool(user is not None and user.is_authenticated
                and getattr(user, "is_staff", False))


def metrics(request: HttpRequest) -> HttpResponse:
    """Every registered metric: taskqueue's, django-prometheus's and the process's."""
    token = tq_settings.METRICS_TOKEN
    if token:
        offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(offered.encode(), token.encode()):
            return _refused("a valid metrics bearer token is required",
                            'Bearer realm="taskqueue-metrics"')
    elif tq_settings.AUTH_ENABLED and not _admin_caller(request):
        return _refused("admin credentials required",
                        'ApiKey realm="taskqueue", header="X-API-Key", Bearer realm="taskqueue"')
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
