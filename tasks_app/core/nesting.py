"""How deeply JSON nests, measured without recursion and in linear time.

A list or an object is one level; a scalar is none: ``{"a": [1]}`` nests 2 levels.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from .errors import ValidationError

DEFAULT_MAX_DEPTH = 64
CONTAINERS = (dict, list, tuple)

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b'[]{}"')
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` (lists, tuples and dicts) nests more than ``limit`` levels.

    Walks the tree one level at a time and stops at the first level past the limit
    (so a value that contains itself ends too).
    """
    if not isinstance(value, CONTAINERS):
        return False
    level = [value]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [child for item in level
                 for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, CONTAINERS)]
    return False


def text_depth(text: str | bytes) -> int | None:
    """The deepest nesting of a JSON text, or None when it cannot be JSON (a stray quote).

    Bytes are read as ``json.loads`` reads them (UTF-8, -16 or -32); brackets inside
    strings do not count; nothing is parsed.
    """
    raw = _utf8(text)
    if raw is None:
        return None
    skeleton = _outside_strings(raw).translate(None, _NOT_BRACKETS)
    if b'"' in skeleton:
        return None
    return max(accumulate(map(_STEP.__getitem__, skeleton)), default=0)


def _utf8(text: str | bytes) -> bytes | None:
    """``text`` as UTF-8 bytes (None if its bytes are not in the encoding they announce)."""
    if isinstance(text, str):
        return text.encode("utf-8", "surrogatepass")
    encoding = json.detect_encoding(text)
    if encoding.startswith("utf-8"):
        return text
    try:
        return text.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
    except UnicodeError:
        return None


def _outside_strings(raw: bytes) -> bytes:
    """``raw`` without its string literals (a stray quote is left in place)."""
    if b"\\" not in raw:  # no escapes: every other quote closes a string
        parts = raw.split(b'"')
        return b'"' if len(parts) % 2 == 0 else b"".join(parts[::2])
    return _STRING.sub(b"", raw)


def check_depth(name: str, value: Any, limit: int) -> Any:
    """``value`` itself, or :class:`ValidationError` naming ``name`` if it nests too deeply."""
    if too_deep(value, limit):
        raise ValidationError(too_deep_message(name, limit), name)
    return value


BODY_ENVELOPE_DEPTH = 8
"""Levels a request body (or a workflow tree given to ``tq``) may nest beyond
MAX_JSON_DEPTH: room for the batch envelope (``{"tasks": [{"payload": ...}]}``), so that a
field just past the limit is refused by name."""


def too_deep_message(name: str, limit: int) -> str:
    """The one wording of this refusal."""
    return f"{name} is nested too deeply (more than {limit} levels)"
