"""The task state machine: states, priorities and the allowed transitions.

The Lua scripts enforce these transitions atomically; this table is the
documentation the tests check the scripts against.
"""

from __future__ import annotations

from enum import Enum, StrEnum


class TaskState(StrEnum):
    """Where a task is in its life."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    DEAD_LETTER = "dead_letter"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class Priority(int, Enum):
    """Task priority; higher runs first."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        """The lower-case name the API shows."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: object) -> Priority:
        """Accept 0..3 or low/normal/high/critical; raise ValueError otherwise."""
        if isinstance(value, bool):
            raise ValueError("priority must be 0..3 or low, normal, high, critical")
        if isinstance(value, int) and 0 <= value <= 3:
            return cls(value)
        if isinstance(value, str) and value.lower() in _BY_LABEL:
            return _BY_LABEL[value.lower()]
        raise ValueError("priority must be 0..3 or low, normal, high, critical")


_BY_LABEL = {p.name.lower(): p for p in Priority}

S = TaskState
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.PENDING, S.CANCELLED}),
    S.RUNNING: frozenset({S.COMPLETED, S.RETRYING, S.DEAD_LETTER, S.FAILED, S.PENDING}),
    S.RETRYING: frozenset({S.PENDING, S.CANCELLED}),
    S.DEAD_LETTER: frozenset({S.PENDING}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
"""running -> pending is the graceful-shutdown put-back, which does not count an attempt."""

TERMINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
