"""Bounded text for people to read: a dead task's payload, metadata and error, as the DLQ
admin page and ``tq dlq show`` print them, whatever was stored."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tasks_app.conf import tq_settings
from tasks_app.core.nesting import too_deep

SHOWN_CHARS = 100_000
"""The most shown of one payload, metadata or error; the rest is cut with a note."""


def pretty(value: Any) -> str:
    """JSON to read, at most SHOWN_CHARS; indented unless nested past MAX_JSON_DEPTH
    (data stored before the limit), which is shown compact."""
    limit = tq_settings.MAX_JSON_DEPTH
    try:
        if too_deep(value, limit):
            text = json.dumps(value, sort_keys=True, ensure_ascii=False)
            return shown(f"(nested more than {limit} levels: shown without indentation)\n{text}")
        encoder = json.JSONEncoder(indent=2, sort_keys=True, ensure_ascii=False)
        return shown(encoder.iterencode(value))
    except RecursionError:
        return "(nested too deeply to be shown)"


def shown(text: str | Iterable[str]) -> str:
    """At most SHOWN_CHARS of ``text`` (or of the pieces it is made of, read lazily)."""
    pieces: list[str] = []
    size = 0
    for piece in [text] if isinstance(text, str) else text:
        pieces.append(piece)
        size += len(piece)
        if size > SHOWN_CHARS:
            return "".join(pieces)[:SHOWN_CHARS] + f"\n… (cut at {SHOWN_CHARS:,} characters)"
    return "".join(pieces)
