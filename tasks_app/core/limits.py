"""Per-type concurrency and rate limits: their form, where they are kept, and the
operations on them.

The namespace's limits (type -> spec) live in its home slot (``Keys.type_limits``); every
queue shard holds a copy (``Keys.limits``) that its take enforces (``admit`` in lib.lua),
written by the ``limits`` script whenever a limit changes and when a queue is registered.
Scripts touch one slot, so a type's running count and token bucket are per queue shard:
a limit is exact for a type whose tasks go to one queue shard, and a type spread over N
shards can run up to N times its limit (docs/architecture.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import errors
from .broker import redis_errors
from .validation import TYPE_PATTERN

if TYPE_CHECKING:
    from .broker import Broker
    from .keys import Keys

RATE = re.compile(r"[1-9][0-9]{0,8}/[smh]")
"""A rate: N starts per second, minute or hour."""
WINDOW_MS = {"s": 1000, "m": 60_000, "h": 3_600_000}
MAX_CONCURRENCY = 1_000_000
FIELDS = ("concurrency", "rate")


@dataclass(frozen=True)
class TypeLimit:
    """A type's limits: at most ``concurrency`` attempts running, at most ``rate`` starts
    (a token bucket of N tokens refilled at N per window); None: no such limit."""

    concurrency: int | None = None
    rate: str | None = None

    def spec(self) -> str:
        """The form the scripts read: ``concurrency|n|window_ms``."""
        n, w = "", ""
        if self.rate:
            count, unit = self.rate.split("/")
            n, w = count, str(WINDOW_MS[unit])
        return f"{self.concurrency or ''}|{n}|{w}"

    @classmethod
    def from_spec(cls, spec: str) -> TypeLimit:
        """The limit a :meth:`spec` string describes."""
        c, n, w = spec.split("|")
        unit = next((u for u, ms in WINDOW_MS.items() if str(ms) == w), "s")
        return cls(int(c) if c else None, f"{n}/{unit}" if n else None)


@dataclass(frozen=True)
class TypeLimitState:
    """A limited type as the API shows it: its limits, and its attempts running and tasks
    parked (waiting for the limit), summed over the queue shards."""

    type: str
    limit: TypeLimit
    running: int
    parked: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON representation (``GET /admin/types/{type}/limits``)."""
        return {"type": self.type, "concurrency": self.limit.concurrency,
                "rate": self.limit.rate, "running": self.running, "parked": self.parked}


def check_type(value: Any) -> str:
    """A task type named in a limit (the form task types have)."""
    if not isinstance(value, str) or not TYPE_PATTERN.fullmatch(value):
        raise errors.ValidationError("type must be 1 to 255 visible ASCII characters", "type")
    return value


def parse_limit(body: Any) -> TypeLimit:
    """The limit a request body or a TYPE_LIMITS entry gives: ``concurrency`` (an integer
    >= 1) and/or ``rate`` ("N/s", "N/m" or "N/h", N >= 1); other fields are refused.
    Raises :class:`ValidationError` naming the field."""
    if not isinstance(body, Mapping):
        raise errors.ValidationError("body must be an object with concurrency and/or rate",
                                     "body")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise errors.ValidationError(f"unknown field '{unknown[0]}'", unknown[0])
    if not body:
        raise errors.ValidationError("concurrency or rate (or both) is required", "concurrency")
    concurrency, rate = body.get("concurrency"), body.get("rate")
    if "concurrency" in body and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_CONCURRENCY):
        raise errors.ValidationError(
            f"concurrency must be an integer from 1 to {MAX_CONCURRENCY}", "concurrency")
    if "rate" in body and (not isinstance(rate, str) or not RATE.fullmatch(rate)):
        raise errors.ValidationError(
            'rate must be "N/s", "N/m" or "N/h" with N a whole number from 1', "rate")
    return TypeLimit(concurrency, rate)


class TypeLimits:
    """The limits of a namespace's task types: read, set, clear, and sync from settings."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.keys = broker.keys

    def specs(self) -> dict[str, str]:
        """Every limited type's spec (the namespace's source of truth)."""
        with redis_errors():
            return dict(self.broker.client.hgetall(self.keys.type_limits))

    def all(self) -> list[TypeLimitState]:
        """Every limited type with its counts, by type name."""
        specs = self.specs()
        return self._states(sorted(specs), specs)

    def get(self, task_type: str) -> TypeLimitState:
        """One type's limits and counts; raises :class:`TypeLimitNotFound`."""
        with redis_errors():
            spec = self.broker.client.hget(self.keys.type_limits, task_type)
        if spec is None:
            raise errors.TypeLimitNotFound(task_type)
        return self._states([task_type], {task_type: spec})[0]

    def set(self, task_type: str, limit: TypeLimit) -> TypeLimitState:
        """Set a type's limits, in every queue shard (its parked tasks go back in line and
        are parked again by what the new limit allows)."""
        with redis_errors():
            self.broker.client.hset(self.keys.type_limits, task_type, limit.spec())
        self._copy(self.broker.all_shards(), {task_type: limit.spec()})
        return self.get(task_type)

    def clear(self, task_type: str) -> TypeLimitState:
        """Remove a type's limits (its parked tasks go back in line); returns the type with
        no limits and its counts.  Raises :class:`TypeLimitNotFound`."""
        self.get(task_type)
        with redis_errors():
            self.broker.client.hdel(self.keys.type_limits, task_type)
        self._copy(self.broker.all_shards(), {task_type: ""})
        return self._states([task_type], {task_type: "||"})[0]

    def sync(self, limits: Mapping[str, TypeLimit]) -> list[str]:
        """Write TASKQUEUE["TYPE_LIMITS"]: each type whose setting differs from what the
        settings last wrote (so a change at run time lasts until the setting changes).
        Returns the types written."""
        with redis_errors():
            seeded = self.broker.client.hgetall(self.keys.type_limits_seeded)
        changed = [t for t, limit in limits.items() if seeded.get(t) != limit.spec()]
        for task_type in changed:
            self.set(task_type, limits[task_type])
            with redis_errors():
                self.broker.client.hset(self.keys.type_limits_seeded, task_type,
                                        limits[task_type].spec())
        return changed

    def copy_to(self, shards: Iterable[Keys]) -> None:
        """Give queue shards the namespace's limits (a queue registered after they were
        set)."""
        specs = self.specs()
        if specs:
            self._copy(list(shards), specs)

    def _copy(self, shards: list[Keys], specs: Mapping[str, str]) -> None:
        for keys in shards:
            for task_type, spec in specs.items():
                self.broker.run_script("limits", keys.limits, [task_type, spec])

    def _states(self, types: list[str], specs: Mapping[str, str]) -> list[TypeLimitState]:
        shards = self.broker.all_shards()
        with redis_errors():
            pipe = self.broker.client.pipeline(transaction=False)
            for task_type in types:
                for keys in shards:
                    pipe.hget(keys.type_running, task_type)
                    pipe.zcard(keys.parked(task_type))
            replies = iter(pipe.execute())
        out = []
        for task_type in types:
            running = parked = 0
            for _ in shards:
                running += int(next(replies) or 0)
                parked += int(next(replies))
            out.append(TypeLimitState(task_type, TypeLimit.from_spec(specs[task_type]),
                                      running, parked))
        return out
