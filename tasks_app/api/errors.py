"""The one place where exceptions become HTTP error responses.

Every error the API sends is ``{"error": "<reason phrase>", "message": "..."}``.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from tasks_app.core import errors as core

log = logging.getLogger("tasks_app.api")

# RFC 9110 names; Python 3.11's http module still says "Request Entity Too Large".
PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}

# Core exception -> (status, message); None keeps the exception's own text.
CORE_ERRORS: dict[type[core.TaskQueueError], tuple[int, str | None]] = {
    core.ValidationError: (400, None),
    core.UnknownTaskType: (400, None),
    core.TaskNotFound: (404, "task not found"),
    core.WorkerNotFound: (404, "worker not found"),
    core.ScheduleNotFound: (404, "schedule not found"),
    core.WorkflowNotFound: (404, "workflow not found"),
    core.WorkflowNotCancellable: (409, "workflow cannot be cancelled in current state"),
    core.ScheduleExists: (409, None),
    core.ScheduleChanged: (409, "the schedule changed meanwhile: read it again"),
    core.QueueNotFound: (404, "queue not found"),
    core.TypeLimitNotFound: (404, "type limits not found"),
    core.NotInDeadLetterQueue: (404, "task not found in dead letter queue"),
    core.NotCancellable: (409, "task cannot be cancelled in current state"),
    core.NotRetryable: (409, "task cannot be retried in current state"),
    core.InvalidTransition: (409, None),
    core.StaleLease: (409, None),
    core.QueueFull: (503, "queue is full, retry later"),
    core.ReplicaTimeout: (503, "not confirmed by a replica in time: the change may or may not "
                               "have been made; repeat the request (with the same "
                               "Idempotency-Key for a create) to find out"),
    core.BrokerUnavailable: (503, "service unavailable"),
    core.TaskQueueError: (500, "internal server error"),
}

# Retry-After (seconds) sent with these core errors.
RETRY_AFTER = {core.QueueFull: 1, core.BrokerUnavailable: 1}

# DRF exceptions whose stock wording we replace.
DRF_MESSAGES: dict[type[drf.APIException], str] = {
    drf.NotAuthenticated: "authentication credentials were not provided",
    drf.ParseError: "request body is not valid JSON",
    drf.NotFound: "not found",
    drf.NotAcceptable: "only application/json responses are available",
}


class PayloadTooLarge(drf.APIException):
    """The request body is larger than API_MAX_BODY_BYTES."""

    status_code = 413
    default_detail = "request body too large"
    default_code = "payload_too_large"


class Conflict(drf.APIException):
    """The request conflicts with what the server holds."""

    status_code = 409
    default_detail = "conflict"
    default_code = "conflict"


def phrase(status: int) -> str:
    """The HTTP reason phrase of ``status``."""
    return PHRASES.get(status) or HTTPStatus(status).phrase


def error_body(status: int, message: str) -> dict[str, str]:
    """The JSON body of every error response."""
    return {"error": phrase(status), "message": message}


def json_error(status: int, message: str) -> JsonResponse:
    """A plain Django error response (for errors raised outside DRF views)."""
    return JsonResponse(error_body(status, message), status=status)


def core_error(exc: core.TaskQueueError) -> tuple[int, str, dict[str, str]]:
    """Status, message and headers for a queue-core exception."""
    for cls in type(exc).__mro__:
        if cls in CORE_ERRORS:
            status, message = CORE_ERRORS[cls]
            wait = RETRY_AFTER.get(cls)
            headers = {"Retry-After": str(wait)} if wait else {}
            return status, message or str(exc), headers
    raise AssertionError("unreachable: TaskQueueError is in CORE_ERRORS")


def flatten(detail: Any) -> str:
    """One readable line from a DRF error detail (a string, list or dict)."""
    if isinstance(detail, dict):
        if "detail" in detail:
            return flatten(detail["detail"])
        field, value = next(iter(detail.items()))
        if field == "non_field_errors":
            return flatten(value)
        return f"{field}: {flatten(value)}"
    if isinstance(detail, list) and detail:
        return flatten(detail[0])
    text = str(detail).strip()
    return text[:1].lower() + text[1:].rstrip(".") if text else "error"


def drf_error(exc: drf.APIException) -> tuple[int, str, dict[str, str]]:
    """Status, message and headers for a DRF exception."""
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    wait = getattr(exc, "wait", None)
    if isinstance(exc, drf.Throttled):
        seconds = max(1, math.ceil(wait or 1))
        headers["Retry-After"] = str(seconds)
        return 429, f"rate limit exceeded, retry in {seconds} s", headers
    if isinstance(exc, drf.UnsupportedMediaType):
        return 415, "unsupported media type, send application/json", headers
    own_words = exc.detail != exc.default_detail
    message = flatten(exc.detail) if own_words else DRF_MESSAGES.get(type(exc), "")
    return int(exc.status_code), message or flatten(exc.detail), headers


def classify(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    """Map any exception to (status, message, headers)."""
    if isinstance(exc, core.TaskQueueError):
        return core_error(exc)
    if isinstance(exc, Http404):
        return 404, "not found", {}
    if isinstance(exc, DjangoPermissionDenied):
        return 403, "permission denied", {}
    if isinstance(exc, drf.APIException):
        return drf_error(exc)
    log.exception("unhandled error in the API", exc_info=exc)
    return 500, "internal server error", {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception a view raises becomes a JSON error."""
    status, message, headers = classify(exc)
    return Response(error_body(status, message), status=status, headers=headers)
