"""What a WebSocket client asked to receive: ``?types=task.*,worker.*&task_id=...&queue=...``."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from urllib.parse import parse_qs

from tasks_app.core.events import Event

MAX_PATTERNS = 32
"""The most ``types`` patterns one socket may ask for: each is matched against every event
the process forwards, so a URL full of patterns would make one client cost a thousand."""
MAX_PATTERN_LENGTH = 64
"""The longest ``types`` pattern (event type names are under 32 characters)."""


class FilterTooLarge(ValueError):
    """A socket asked for more ``types`` patterns, or longer ones, than the bounds allow."""


def _values(query: dict[str, list[str]], name: str) -> tuple[str, ...]:
    items = [part.strip() for value in query.get(name, []) for part in value.split(",")]
    return tuple(item for item in items if item)


@dataclass(frozen=True)
class EventFilter:
    """Event type patterns (globs) and task ids; empty means everything.  ``owner`` (set by
    the server, see visibility.py) keeps only the task events of that owner's tasks;
    ``workflow_owner`` likewise the workflow events of that owner's workflows;
    ``schedules`` False drops schedule events."""

    types: tuple[str, ...] = ()
    task_ids: frozenset[str] = frozenset()
    priorities: frozenset[str] = frozenset()
    owner: str | None = None
    queues: frozenset[str] = frozenset()
    workflow_owner: str | None = None
    schedules: bool = True

    @classmethod
    def from_query_string(cls, raw: bytes) -> EventFilter:
        """Parse ``types``, ``task_id``, ``priority`` and ``queue`` (each repeatable or
        comma-separated)."""
        query = parse_qs(raw.decode("latin-1"))
        types = _values(query, "types")
        if len(types) > MAX_PATTERNS or any(len(t) > MAX_PATTERN_LENGTH for t in types):
            raise FilterTooLarge(f"at most {MAX_PATTERNS} types patterns of at most "
                                 f"{MAX_PATTERN_LENGTH} characters")
        return cls(types, frozenset(_values(query, "task_id")),
                   frozenset(_values(query, "priority")),
                   queues=frozenset(_values(query, "queue")))

    def match(self, event: Event) -> bool:
        """True when the client wants this event."""
        kind = event["type"]
        if self.types and not any(fnmatch.fnmatchcase(kind, p) for p in self.types):
            return False
        data = event.get("data", {})
        if self.owner is not None and kind.startswith("task.") and data.get("owner") != self.owner:
            return False
        if kind.startswith("schedule.") and (self.owner is not None or not self.schedules):
            return False  # schedules are the operators' business (their tasks have no owner)
        if (self.workflow_owner is not None and kind.startswith("workflow.")
                and data.get("owner") != self.workflow_owner):
            return False
        if self.task_ids and data.get("task_id") not in self.task_ids:
            return False
        if self.queues and kind.startswith("task.") and data.get("queue") not in self.queues:
            return False
        wrong_priority = kind.startswith("task.") and data.get("priority") not in self.priorities
        return not (self.priorities and wrong_priority)
