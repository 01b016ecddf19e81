"""Validation of task fields, shared by the Python producer API and the REST API."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from . import unique
from .errors import ValidationError
from .keys import DEFAULT_QUEUE, valid_queue_name
from .nesting import DEFAULT_MAX_DEPTH, check_depth
from .registry import HandlerRegistry
from .states import Priority
from .task import TaskSpec, quick_spec

MAX_RETRIES_RANGE = (0, 100)
TIMEOUT_RANGE = (1, 86400)
MAX_DELAY_SECONDS = 366 * 86400
MAX_TYPE_LENGTH = 255
TYPE_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{MAX_TYPE_LENGTH}}}")
"""The form of a task type no handler is registered for (with accept_unknown)."""
LATEST_MS = int(datetime(9999, 12, 31, tzinfo=UTC).timestamp() * 1000)
"""The latest due time ``clamp_time`` lets through (ms)."""


def _int_in(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{name} must be an integer from {low} to {high}", name)
    return value


def _object(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{name} must be a JSON object", name)
    return value


def _type(value: Any, registry: HandlerRegistry, accept_unknown: bool) -> str:
    if value is None:
        raise ValidationError("task type is required", "type")
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("task type must be a non-empty string", "type")
    if value in registry:
        return value
    if not accept_unknown:
        raise ValidationError(f"unknown task type '{value}'", "type")
    if not TYPE_PATTERN.fullmatch(value):
        raise ValidationError(
            f"task type must be 1 to {MAX_TYPE_LENGTH} visible ASCII characters", "type")
    return value


def parse_time(value: Any, name: str = "scheduled_at") -> int:
    """An ISO-8601 time (or a datetime) as milliseconds since the epoch, UTC."""
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValidationError(f"{name} must be an ISO-8601 time", name) from None
    else:
        raise ValidationError(f"{name} must be an ISO-8601 time", name)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def _clamped(ms: int) -> int | None:
    """A due time a task can hold: before 1970 means now (None), past 9999-12-31 is capped."""
    return None if ms < 0 else min(ms, LATEST_MS)


def _delay(value: Any) -> int:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0 <= value <= MAX_DELAY_SECONDS:
        raise ValidationError(f"delay must be a number of seconds from 0 to {MAX_DELAY_SECONDS}",
                              "delay")
    return int(value * 1000)


def check_queue(value: Any) -> str:
    """A queue name (None: the default queue)."""
    if value is None:
        return DEFAULT_QUEUE
    if not valid_queue_name(value):
        raise ValidationError("queue must be 1 to 64 characters from A-Z a-z 0-9 _ . -, "
                              "starting with a letter or digit", "queue")
    return str(value)


def build_spec(
    registry: HandlerRegistry,
    task_id: str,
    type: Any = None,
    payload: Any = None,
    priority: Any = None,
    max_retries: Any = None,
    timeout: Any = None,
    metadata: Any = None,
    scheduled_at: Any = None,
    delay: Any = None,
    queue: Any = None,
    defaults: tuple[int, int, int] = (0, 3, 300),
    accept_unknown: bool = False,
    max_depth: int = DEFAULT_MAX_DEPTH,
    clamp_time: bool = False,
    unique_for: Any = None,
    unique_key: Any = None,
) -> TaskSpec:
    """Validate one task's fields; raise :class:`ValidationError` naming the bad field.

    ``accept_unknown`` lets through a type no handler is registered for (here), if it is
    1 to MAX_TYPE_LENGTH visible ASCII characters. ``payload`` and ``metadata`` may nest at
    most ``max_depth`` levels. ``clamp_time`` (the REST API's rule) reads a ``scheduled_at``
    before 1970 as none given and caps one past 9999-12-31.
    """
    default_priority, default_retries, default_timeout = defaults
    if clamp_time and scheduled_at is not None:  # parsed first: milliseconds from here on
        scheduled_at = _clamped(parse_time(scheduled_at))
    if scheduled_at is not None and delay is not None:
        raise ValidationError("give either scheduled_at or delay, not both", "delay")
    try:
        prio = Priority.parse(default_priority if priority is None else priority)
    except ValueError as exc:
        raise ValidationError(str(exc), "priority") from None
    spec = quick_spec(
        id=task_id,
        type=_type(type, registry, accept_unknown),
        payload=check_depth("payload", _object("payload", payload), max_depth),
        priority=int(prio),
        max_retries=_int_in("max_retries", default_retries if max_retries is None else max_retries,
                            *MAX_RETRIES_RANGE),
        timeout=_int_in("timeout", default_timeout if timeout is None else timeout,
                        *TIMEOUT_RANGE),
        metadata=check_depth("metadata", _object("metadata", metadata), max_depth),
        scheduled_at_ms=scheduled_at if clamp_time or scheduled_at is None
        else parse_time(scheduled_at),
        delay_ms=None if delay is None else _delay(delay),
        queue=check_queue(queue),
    )
    if unique_for is None and unique_key is None:
        return spec
    unique_ms, key = unique.check(unique_for, unique_key, spec.queue, spec.type, spec.payload)
    return replace(spec, unique_for_ms=unique_ms, unique_key=key)
