"""``GET /metrics``: Prometheus text format, optionally behind a bearer token."""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from tasks_app.conf import tq_settings


def metrics(request: HttpRequest) -> HttpResponse:
    """Every registered metric: taskqueue's, django-prometheus's and the process's."""
    token = tq_settings.METRICS_TOKEN
    if token:
        offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(offered.encode(), token.encode()):
            reply = JsonResponse({"error": "Unauthorized",
                                  "message": "a valid metrics bearer token is required"},
                                 status=401)
            reply["WWW-Authenticate"] = 'Bearer realm="taskqueue-metrics"'
            return reply
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
