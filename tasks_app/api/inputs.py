"""Reading request bodies, headers and query parameters; every refusal is a ValidationError."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rest_framework.request import Request

from tasks_app.core.errors import ValidationError
from tasks_app.core.states import Priority

MAX_BATCH = 1000
MAX_IDEMPOTENCY_KEY = 255
IDEMPOTENCY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
CURSOR_PATTERN = re.compile(r"\d{1,20}-\d{1,20}")
DLQ_PAGE = (1, 1000, 50)
MAX_STREAM_PART = 2**64 - 1  # min, max, default of ?limit


def body_object(data: Any, name: str = "request body") -> dict[str, Any]:
    """The parsed body, which must be a JSON object."""
    if not isinstance(data, dict):
        raise ValidationError(f"{name} must be a JSON object", None)
    return data


def batch_items(data: Any) -> list[Any]:
    """The ``tasks`` list of a batch body: 1 to 1,000 items (each checked by the caller)."""
    body = body_object(data)
    extra = sorted(set(body) - {"tasks"})
    if extra:
        raise ValidationError(f"unknown field '{extra[0]}'", extra[0])
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not 1 <= len(tasks) <= MAX_BATCH:
        raise ValidationError(f"tasks must be a list of 1 to {MAX_BATCH} tasks", "tasks")
    return tasks


def idempotency_key(request: Request) -> str | None:
    """The Idempotency-Key header, if sent: 1-255 visible ASCII characters."""
    key: str | None = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not IDEMPOTENCY_PATTERN.fullmatch(key):
        raise ValidationError(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters",
            "Idempotency-Key",
        )
    return key


def query_value(request: Request, name: str) -> str | None:
    """A single-valued query parameter; sending it twice is refused, not silently resolved."""
    values: list[str] = request.query_params.getlist(name)
    if len(values) > 1:
        raise ValidationError(f"{name} must be given at most once", name)
    return values[0] if values else None


def page_limit(request: Request) -> int:
    """The DLQ page size from ``?limit`` (1..1000, default 50)."""
    low, high, default = DLQ_PAGE
    text = query_value(request, "limit")
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ValidationError(f"limit must be an integer from {low} to {high}", "limit")
    return int(text)


def page_cursor(request: Request) -> tuple[int, int] | None:
    """The DLQ `?cursor` (the last message_id of the previous page) as (ms, seq)."""
    cursor = query_value(request, "cursor")
    if cursor is None:
        return None
    if not CURSOR_PATTERN.fullmatch(cursor):
        raise ValidationError("cursor must be a message_id such as 1705315200000-0", "cursor")
    ms, seq = (int(part) for part in cursor.split("-"))
    if ms > MAX_STREAM_PART:  # later than any entry: the page starts at the newest
        return MAX_STREAM_PART, MAX_STREAM_PART
    return ms, min(seq, MAX_STREAM_PART)


def priority_of(text: str) -> Priority | None:
    """A queue from its path segment: exactly 0..3 or low/normal/high/critical."""
    for priority in Priority:
        if text in (str(int(priority)), priority.label):
            return priority
    return None


@dataclass(frozen=True)
class RetryTarget:
    """The one dead-lettered task a DLQ retry names, by task id or by entry id."""

    task_id: str = ""
    message_id: str = ""


def retry_request(data: Any) -> RetryTarget | None:
    """The DLQ retry body: ``task_id`` or ``message_id`` of one entry, or None for
    ``retry_all``."""
    body = body_object(data)
    extra = sorted(set(body) - {"task_id", "message_id", "retry_all"})
    if extra:
        raise ValidationError(f"unknown field '{extra[0]}'", extra[0])
    given = [name for name in ("task_id", "message_id", "retry_all") if name in body]
    if len(given) != 1:
        raise ValidationError("give exactly one of task_id, message_id or retry_all", "task_id")
    if "retry_all" in body:
        if body["retry_all"] is not True:
            raise ValidationError("retry_all must be true", "retry_all")
        return None
    if "message_id" in body:
        message_id = body["message_id"]
        if not isinstance(message_id, str) or not CURSOR_PATTERN.fullmatch(message_id):
            raise ValidationError("message_id must be an entry id such as 1705315200000-0",
                                  "message_id")
        return RetryTarget(message_id=message_id)
    task_id = body["task_id"]
    if not isinstance(task_id, str) or not task_id:
        raise ValidationError("task_id must be a non-empty string", "task_id")
    return RetryTarget(task_id=task_id)
