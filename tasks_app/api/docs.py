"""The documented responses of each kind of operation, for ``extend_schema``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from tasks_app.api.inputs import IDEMPOTENCY_PATTERN
from tasks_app.api.serializers import Error

WHY = {
    400: "Invalid request body or parameters; the message names the field",
    401: "Missing or invalid credentials",
    403: "Admin credentials required",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body over API_MAX_BODY_BYTES",
    415: "Content-Type is not application/json",
    429: "Rate limit exceeded: submissions, or failed logins (see Retry-After)",
    503: "Redis unreachable, or the queue is full (see Retry-After)",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Error responses, each with the common error body."""
    return {status: OpenApiResponse(Error, description=WHY[status]) for status in statuses}


def reads(ok: Any, *extra: int) -> dict[int, Any]:
    """A task-API operation without a body."""
    return {200: ok, **errors(401, 503, *extra)}


def creates(ok: Any, *extra: int) -> dict[int, Any]:
    """A task-API operation that creates tasks."""
    responses: dict[int, Any] = {
        201: OpenApiResponse(ok, description="Created"),
        200: OpenApiResponse(ok, description="Idempotency-Key seen before: the original"),
    }
    return {**responses, **errors(400, 401, 413, 415, 429, 503, *extra)}


def idempotency_header(created: str) -> OpenApiParameter:
    """The ``Idempotency-Key`` header of an operation that creates ``created``."""
    return OpenApiParameter(
        "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
        pattern=f"^{IDEMPOTENCY_PATTERN.pattern}$",
        description=f"Repeat by the same caller within 24 h returns its first call's {created}"
                    " with 200, creating nothing",
    )


def admin(ok: Any, *extra: int) -> dict[int, Any]:
    """An admin operation."""
    return {200: ok, **errors(401, 403, 503, *extra)}
