"""Task records, the messages a worker runs, and their wire formats."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from .keys import shard_ref
from .states import Priority, TaskState

JSON = dict[str, Any]


compact_json = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps(value, separators=(",", ":"))`` with one encoder, not a new one per call."""

script_rows = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                               check_circular=False).encode
"""The one argument the enqueue script takes for all its tasks: a JSON array of each task's
:meth:`TaskSpec.script_row` (lists of strings, so nothing is lost to Lua's numbers).  One
argument encoded in C costs a third of nine per task through the client's encoder."""


_M = TypeVar("_M")


def quick_constructor(cls: type[_M]) -> Callable[..., _M]:
    """A constructor for the frozen dataclass ``cls`` for the hot path: it fills the
    instance's ``__dict__`` in one update instead of one ``object.__setattr__`` per field
    (a frozen dataclass's ``__init__``: about 6 us against 1 us for 24 fields here).

    The caller gives every field without a plain default (``default_factory`` fields
    included); nothing is validated, so it is for values already checked.  The object is as
    frozen as any other (``tests/test_core_validation.py`` checks both agree).
    """
    defaults = {f.name: f.default for f in fields(cls)  # type: ignore[arg-type]
                if f.default is not MISSING}
    new = object.__new__

    def make(**values: Any) -> _M:
        obj = new(cls)
        attrs = obj.__dict__
        attrs.update(defaults)
        attrs.update(values)
        return obj

    return make


def ms_to_datetime(ms: int | None) -> datetime | None:
    """Milliseconds since the epoch as an aware UTC datetime."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def ms_to_iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as ISO-8601 UTC ending in ``Z``."""
    stamp = ms_to_datetime(ms)
    if stamp is None:
        return None
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _int(raw: dict[str, str], name: str) -> int | None:
    value = raw.get(name)
    return int(value) if value not in (None, "") else None


def _json(raw: dict[str, str], name: str) -> Any:
    value = raw.get(name)
    return json.loads(value) if value is not None else None


@dataclass(frozen=True)
class Task:
    """A task as stored in Redis; times are milliseconds since the epoch."""

    id: str
    type: str
    payload: JSON
    priority: Priority
    state: TaskState
    attempts: int
    max_retries: int
    timeout: int
    metadata: JSON
    created_at: int
    updated_at: int
    result: Any = None
    error: str | None = None
    worker_id: str | None = None
    started_at: int | None = None
    completed_at: int | None = None
    scheduled_at: int | None = None
    next_retry_at: int | None = None
    dead_at: int | None = None
    dlq_reason: str | None = None
    has_result: bool = False
    owner: str | None = None  # the creating principal; never in to_dict
    queue: str = "default"
    progress: JSON | None = None  # the last progress report of the latest attempt

    @classmethod
    def from_hash(cls, raw: dict[str, str], queue: str = "default") -> Task:
        """Build a task from its Redis hash (decoded to str); ``queue`` is where it was
        found (the record lives in its queue's keys, so it does not repeat the name)."""
        return cls(
            queue=queue,
            id=raw["id"],
            type=raw["type"],
            payload=_json(raw, "payload") or {},
            priority=Priority(int(raw["priority"])),
            state=TaskState(raw["state"]),
            attempts=int(raw.get("attempts", 0)),
            max_retries=int(raw["max_retries"]),
            timeout=int(raw["timeout"]),
            metadata=_json(raw, "metadata") or {},
            created_at=int(raw["created_at"]),
            updated_at=int(raw["updated_at"]),
            result=_json(raw, "result"),
            has_result="result" in raw,
            error=raw.get("error"),
            worker_id=raw.get("worker_id"),
            started_at=_int(raw, "started_at"),
            completed_at=_int(raw, "completed_at"),
            scheduled_at=_int(raw, "scheduled_at"),
            next_retry_at=_int(raw, "next_retry_at"),
            dead_at=_int(raw, "dead_at"),
            dlq_reason=raw.get("dlq_reason"),
            owner=raw.get("owner"),
            progress=_progress(raw),
        )

    def to_dict(self) -> JSON:
        """The API representation: priority by name, ISO times, optional fields only when set."""
        out: JSON = {
            "id": self.id,
            "type": self.type,
            "payload": self.payload,
            "priority": self.priority.label,
            "queue": self.queue,
            "state": self.state.value,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "metadata": self.metadata,
            "created_at": ms_to_iso(self.created_at),
            "updated_at": ms_to_iso(self.updated_at),
        }
        if self.has_result:
            out["result"] = self.result
        optional = {
            "error": self.error,
            "worker_id": self.worker_id,
            "started_at": ms_to_iso(self.started_at),
            "completed_at": ms_to_iso(self.completed_at),
            "scheduled_at": ms_to_iso(self.scheduled_at),
            "next_retry_at": ms_to_iso(self.next_retry_at),
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.progress is not None:
            out["progress"] = {**self.progress,
                               "updated_at": ms_to_iso(self.progress["updated_at"])}
        return out


def _progress(raw: dict[str, str]) -> JSON | None:
    """The stored progress report, if it belongs to the task's latest attempt (a retry
    starts without one): ``{done, total, message, updated_at}`` (ms)."""
    stored = _json(raw, "progress")
    if not stored or stored.get("attempt") != int(raw.get("attempts", 0)):
        return None
    return {"done": _whole(stored["done"]), "total": _whole(stored.get("total")),
            "message": stored.get("message", ""), "updated_at": int(stored["updated_at"])}


def _whole(value: Any) -> Any:
    """Integral floats as ints (Lua numbers are floats)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


@dataclass(frozen=True)
class Job:
    """One started attempt of a task, as a worker slot receives it.

    ``queue_wait`` is the seconds it waited since it last became pending.
    """

    id: str
    priority: int
    fence: str
    attempt: int
    type: str
    payload: JSON
    metadata: JSON
    max_retries: int
    timeout: int
    queue_wait: float
    started_at: int
    queue: str = "default"
    shard: int = 0
    parent_results: Any = None
    """A workflow step's: the result of the step before it, or a group's results in order
    (workflows.py); None for a task outside a workflow or a workflow's first steps."""

    @property
    def where(self) -> str:
        """The queue shard holding the task, as :func:`keys.shard_ref` spells it."""
        return shard_ref(self.queue, self.shard)

    @classmethod
    def from_reply(cls, reply: list[Any], queue: str = "default", shard: int = 0) -> Job:
        """Parse the ``{'task', ...}`` reply of the dequeue script (run on that shard)."""
        (_, tid, prio, fence, attempt, ttype, payload, meta, retries, timeout, wait, started,
         parents) = reply
        return _quick_job(
            id=_s(tid),
            priority=int(prio),
            fence=_s(fence),
            attempt=int(attempt),
            type=_s(ttype),
            payload=json.loads(payload),
            metadata=json.loads(meta),
            max_retries=int(retries),
            timeout=int(timeout),
            queue_wait=int(wait) / 1_000_000,
            started_at=int(started),
            queue=queue,
            shard=shard,
            parent_results=json.loads(parents) if parents else None,
        )


class Attempt(Protocol):
    """What a fenced call (ack, fail) needs to name one attempt: a :class:`Job` or a
    :class:`Lease` (whose ``where``, when it has one, names the queue shard; none: the
    default queue)."""

    @property
    def id(self) -> str:
        """The task id."""
        ...

    @property
    def fence(self) -> str:
        """The fence the attempt's dequeue handed out."""
        ...


@dataclass(frozen=True)
class Lease:
    """One attempt named by its task id and fence, when the whole job is not at hand."""

    id: str
    fence: str
    where: str = ""


def _s(value: bytes | str | int) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


@dataclass(frozen=True)
class TaskSpec:
    """A validated request to create one task."""

    id: str
    type: str
    payload: JSON = field(default_factory=dict)
    priority: int = 0
    max_retries: int = 3
    timeout: int = 300
    metadata: JSON = field(default_factory=dict)
    scheduled_at_ms: int | None = None
    delay_ms: int | None = None
    queue: str = "default"
    unique_for_ms: int | None = None  # unique tasks (unique.py): how long the key holds
    unique_key: str | None = None  # the caller's key, not yet scoped; None: not unique

    def script_row(self) -> list[str]:
        """The nine values the enqueue script takes per task, as strings."""
        return [
            self.id,
            self.type,
            compact_json(self.payload),
            str(self.priority),
            str(self.max_retries),
            str(self.timeout),
            compact_json(self.metadata) if self.metadata else "{}",
            "" if self.scheduled_at_ms is None else str(self.scheduled_at_ms),
            "" if self.delay_ms is None else str(self.delay_ms),
        ]


_quick_job = quick_constructor(Job)
quick_task = quick_constructor(Task)
"""Task(...) for a task the producer just created (broker._created)."""
quick_spec = quick_constructor(TaskSpec)
"""TaskSpec(...) for fields validation.build_spec has checked."""
