"""Unique tasks: ``unique_for`` and ``unique_key`` on create, checked and created in one
script (``enqueue.lua``, its unique-key section).

While a task created under a unique key less than ``unique_for`` seconds ago has not
ended ``failed``, ``dead_letter`` or ``cancelled`` (and its record still exists), another
create with that key returns it and creates nothing.  A ``unique_key`` with no
``unique_for`` holds until its task ends in any state, ``completed`` included (at most
``MAX_UNIQUE_FOR``): "one of these at a time".  The key is scoped to the caller, as
an Idempotency-Key is, and lives in the queue shard the task is created in.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .errors import ValidationError

MAX_UNIQUE_FOR = 30 * 86400
"""The longest unique_for (seconds): 30 days."""
UNTIL_ENDED = 0
"""TaskSpec.unique_for_ms of a key given with no unique_for: it holds until the task ends."""
MAX_UNIQUE_KEY = 200
UNIQUE_KEY_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{MAX_UNIQUE_KEY}}}")
"""What a unique_key may be (matched whole): 1 to 200 visible ASCII characters."""


def default_key(queue: str, type: str, payload: Any) -> str:
    """The unique key of a task that names none: a SHA-256 of its queue, type and payload as
    canonical JSON (keys sorted, no spaces)."""
    canonical = json.dumps([queue, type, payload], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check(unique_for: Any, unique_key: Any, queue: str, type: str, payload: Any
          ) -> tuple[int | None, str | None]:
    """The (unique_for in ms, unique key) of a create; (None, None) when it asks for none;
    (UNTIL_ENDED, key) for a key that holds until its task ends."""
    if unique_for is None:
        if unique_key is None:
            return None, None
        return UNTIL_ENDED, _valid_key(unique_key)
    if (isinstance(unique_for, bool) or not isinstance(unique_for, int)
            or not 1 <= unique_for <= MAX_UNIQUE_FOR):
        raise ValidationError(
            f"unique_for must be an integer number of seconds from 1 to {MAX_UNIQUE_FOR}",
            "unique_for")
    if unique_key is None:
        return unique_for * 1000, default_key(queue, type, payload)
    return unique_for * 1000, _valid_key(unique_key)


def _valid_key(unique_key: Any) -> str:
    if not isinstance(unique_key, str) or not UNIQUE_KEY_PATTERN.fullmatch(unique_key):
        raise ValidationError(
            f"unique_key must be 1 to {MAX_UNIQUE_KEY} visible ASCII characters", "unique_key")
    return unique_key


def script_window(unique_for_ms: int) -> int:
    """What enqueue.lua gets for a key's window: its ms, or minus the longest window for a
    key that holds until its task ends (the script then releases it on ``completed`` too)."""
    return -MAX_UNIQUE_FOR * 1000 if unique_for_ms == UNTIL_ENDED else unique_for_ms
