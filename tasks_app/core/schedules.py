"""Periodic schedules: cron and interval ticks, each creating exactly one task.

A schedule lives in shard 0 of its queue (``Keys.schedule(name)``, a hash holding its
definition and state, and ``Keys.schedules``, the queue's enabled schedules scored by next
tick), beside the tasks it creates; ``Keys.schedule_names`` (the namespace's home slot)
maps every name to its queue, so names are unique and found in one read.

Every worker runs the scheduler loop over the queues it serves (:meth:`Schedules.fire_due`).
Claiming a due tick and creating its task is one script (``schedule_fire.lua``): a
compare-and-set on the schedule's ``next_run_at`` and definition ``version``, so with any
number of workers each tick creates one task, and a claim racing a change of the
definition creates nothing rather than a task of the old and new definitions mixed.

Cron expressions (5 fields) are evaluated by ``cronsim`` in the schedule's IANA time zone,
with Debian cron's daylight-saving rules: a job whose time falls in the hour skipped by a
spring-forward runs once, right after the change; a job whose time falls in the hour
repeated by a fall-back runs once, the first time.  An ``every`` schedule ticks at
``anchor + n * every`` (the anchor is when its timing was set), so lag never accumulates.

Ticks are computed from the worker's clock (the ``now`` callable; keep hosts in sync).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from . import errors
from .broker import Broker, new_task_id, redis_errors
from .errors import ValidationError
from .keys import DEFAULT_QUEUE, Keys, queue_charge, valid_queue_name
from .nesting import DEFAULT_MAX_DEPTH
from .registry import HandlerRegistry
from .states import Priority
from .task import ms_to_iso
from .validation import build_spec

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
"""What a schedule name may be (matched whole)."""
CATCHUP = ("latest", "all", "none")
CATCHUP_ALL_CAP = 100
"""``catchup: "all"`` creates at most this many tasks for the ticks missed while no worker
ran (the newest ones); the older ticks are reported in ``schedule.missed``."""
MISSED_COUNT_LIMIT = 20_000
"""Missed cron ticks are counted exactly up to this many (beyond, the count is a floor)."""
MAX_EVERY = 366 * 86400
MAX_CRON_LENGTH = 255
MAX_PAYLOAD_BYTES = 65_536
"""A schedule's payload, as JSON, is at most this long (it is copied into every task)."""
DUE_BATCH = 100
FIELDS = ("name", "type", "task", "payload", "args", "kwargs", "cron", "every", "timezone",
          "priority", "queue", "max_retries", "timeout", "catchup", "enabled")
"""The fields of a schedule's definition, as the API and TASKQUEUE["SCHEDULES"] take them."""
_STATE_FIELDS = ("next_run_at", "anchor")


@dataclass(frozen=True)
class ScheduleSpec:
    """A validated schedule definition (build one with :func:`parse_schedule`)."""

    name: str
    type: str
    """The task type, or a Django task's path when ``task`` is true."""
    payload: dict[str, Any] = field(default_factory=dict)
    """The task payload; for a Django task ``{"args": [...], "kwargs": {...}}``."""
    cron: str | None = None
    every: int | None = None
    timezone: str = "UTC"
    priority: int = 0
    queue: str = DEFAULT_QUEUE
    max_retries: int = 3
    timeout: int = 300
    catchup: str = "latest"
    enabled: bool = True
    task: bool = False

    @property
    def timing(self) -> tuple[str | None, int | None, str]:
        """What decides the ticks: a change of it restarts the schedule's timing."""
        return self.cron, self.every, self.timezone

    def definition(self) -> dict[str, Any]:
        """The definition in the form :func:`parse_schedule` takes (PUT body, settings)."""
        out: dict[str, Any] = {"name": self.name}
        if self.task:
            out["task"] = self.type
            out["args"] = self.payload.get("args", [])
            out["kwargs"] = self.payload.get("kwargs", {})
        else:
            out["type"] = self.type
            out["payload"] = self.payload
        out.update(cron=self.cron, every=self.every, timezone=self.timezone,
                   priority=Priority(self.priority).label, queue=self.queue,
                   max_retries=self.max_retries, timeout=self.timeout, catchup=self.catchup,
                   enabled=self.enabled)
        return out

    def digest(self) -> str:
        """A fingerprint of the definition (settings sync compares it)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def _fields(self) -> dict[str, str]:
        return {"name": self.name, "kind": "task" if self.task else "type", "type": self.type,
                "payload": json.dumps(self.payload, separators=(",", ":")),
                "cron": self.cron or "", "every": str(self.every or ""),
                "timezone": self.timezone, "priority": str(self.priority),
                "max_retries": str(self.max_retries), "timeout": str(self.timeout),
                "catchup": self.catchup, "enabled": "1" if self.enabled else "0"}

    @classmethod
    def _from_fields(cls, queue: str, f: Mapping[str, str]) -> ScheduleSpec:
        return cls(name=f["name"], type=f["type"], payload=json.loads(f.get("payload") or "{}"),
                   cron=f.get("cron") or None, every=int(f["every"]) if f.get("every") else None,
                   timezone=f.get("timezone") or "UTC", priority=int(f.get("priority", 0)),
                   queue=queue, max_retries=int(f.get("max_retries", 3)),
                   timeout=int(f.get("timeout", 300)), catchup=f.get("catchup") or "latest",
                   enabled=f.get("enabled") == "1", task=f.get("kind") == "task")


@dataclass(frozen=True)
class Schedule:
    """A stored schedule: its definition and its state (times in ms since the epoch)."""

    spec: ScheduleSpec
    version: int
    next_run_at: int | None
    anchor: int
    last_run_at: int | None = None
    last_task_id: str | None = None
    last_tick: int | None = None
    error: str | None = None
    created_at: int = 0
    updated_at: int = 0
    origin: str = "api"
    """"settings" for a schedule TASKQUEUE["SCHEDULES"] defines, else "api"."""

    @property
    def name(self) -> str:
        """The schedule's name."""
        return self.spec.name

    @property
    def paused(self) -> bool:
        """True while disabled (paused, or defined with ``enabled: false``)."""
        return not self.spec.enabled

    def to_dict(self) -> dict[str, Any]:
        """The one wire shape of a schedule (API, CLI, admin and dashboard)."""
        return {**self.spec.definition(), "paused": self.paused,
                "next_run_at": None if self.paused else ms_to_iso(self.next_run_at),
                "last_run_at": ms_to_iso(self.last_run_at), "last_task_id": self.last_task_id,
                "last_scheduled_for": ms_to_iso(self.last_tick), "error": self.error,
                "origin": self.origin, "version": self.version,
                "created_at": ms_to_iso(self.created_at), "updated_at": ms_to_iso(self.updated_at)}

    @classmethod
    def from_hash(cls, queue: str, f: Mapping[str, str]) -> Schedule:
        """Parse the stored hash (``Keys.schedule``)."""
        def opt(name: str) -> int | None:
            return int(f[name]) if f.get(name) else None

        return cls(spec=ScheduleSpec._from_fields(queue, f), version=int(f["version"]),
                   next_run_at=opt("next_run_at"), anchor=int(f.get("anchor") or 0),
                   last_run_at=opt("last_run_at"), last_task_id=f.get("last_task_id") or None,
                   last_tick=opt("last_tick"), error=f.get("error") or None,
                   created_at=int(f.get("created_at") or 0),
                   updated_at=int(f.get("updated_at") or 0), origin=f.get("origin") or "api")


# -- validation ------------------------------------------------------------------------


def parse_schedule(data: Mapping[str, Any], registry: HandlerRegistry, *,
                   name: str | None = None, accept_unknown: bool = False,
                   max_depth: int = DEFAULT_MAX_DEPTH,
                   defaults: tuple[int, int, int] = (0, 3, 300)) -> ScheduleSpec:
    """Validate a definition (``FIELDS``); raise :class:`ValidationError` naming the field.

    ``name`` overrides (or supplies) the body's name; ``defaults`` are (priority,
    max_retries, timeout) as for tasks.
    """
    if not isinstance(data, Mapping):
        raise ValidationError("a schedule must be a JSON object", None)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValidationError(f"unknown field '{unknown[0]}'", unknown[0])
    sched_name = _name(data.get("name") if name is None else name)
    if name is not None and data.get("name") not in (None, name):
        raise ValidationError("name cannot be changed", "name")
    task = data.get("task") is not None
    ttype, payload = _what(data, task)
    cron, every = _timing(data)
    tz = _timezone(data.get("timezone"))
    if cron is not None:
        _check_cron(cron, tz)
    queue = DEFAULT_QUEUE if data.get("queue") is None else data["queue"]
    if not valid_queue_name(queue):
        raise ValidationError("queue must be 1 to 64 letters, digits, '_', '.' or '-'", "queue")
    catchup = "latest" if data.get("catchup") is None else data["catchup"]
    if catchup not in CATCHUP:
        raise ValidationError("catchup must be 'latest', 'all' or 'none'", "catchup")
    enabled = True if data.get("enabled") is None else data["enabled"]
    if not isinstance(enabled, bool):
        raise ValidationError("enabled must be true or false", "enabled")
    try:
        spec = build_spec(registry, "schedule", type=ttype, payload=payload,
                          priority=data.get("priority"), max_retries=data.get("max_retries"),
                          timeout=data.get("timeout"), defaults=defaults,
                          accept_unknown=accept_unknown, max_depth=max_depth)
    except ValidationError as exc:
        if task and exc.field in ("type", "payload"):
            raise ValidationError(str(exc).replace("task type", "task"), "task") from None
        raise
    if len(json.dumps(spec.payload, separators=(",", ":"))) > MAX_PAYLOAD_BYTES:
        what = "args and kwargs" if task else "payload"
        raise ValidationError(f"{what} must be at most {MAX_PAYLOAD_BYTES} bytes as JSON",
                              "args" if task else "payload")
    return ScheduleSpec(name=sched_name, type=spec.type, payload=spec.payload, cron=cron,
                        every=every, timezone=tz, priority=spec.priority, queue=queue,
                        max_retries=spec.max_retries, timeout=spec.timeout, catchup=catchup,
                        enabled=enabled, task=task)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValidationError("name must be 1 to 128 letters, digits, '_', '.', ':' or '-', "
                              "starting with a letter or digit", "name")
    return value


def _what(data: Mapping[str, Any], task: bool) -> tuple[Any, Any]:
    if task and data.get("type") is not None:
        raise ValidationError("give either type or task, not both", "task")
    if not task:
        if data.get("args") is not None or data.get("kwargs") is not None:
            raise ValidationError("args and kwargs go with task (a Django task's path)", "args")
        if data.get("type") is None:
            raise ValidationError("type (or task) is required", "type")
        return data.get("type"), data.get("payload")
    if data.get("payload") is not None:
        raise ValidationError("a Django task takes args and kwargs, not payload", "payload")
    args = [] if data.get("args") is None else data["args"]
    kwargs = {} if data.get("kwargs") is None else data["kwargs"]
    if not isinstance(args, list):
        raise ValidationError("args must be a JSON array", "args")
    if not isinstance(kwargs, dict):
        raise ValidationError("kwargs must be a JSON object", "kwargs")
    return data["task"], {"args": args, "kwargs": kwargs}


def _timing(data: Mapping[str, Any]) -> tuple[str | None, int | None]:
    cron, every = data.get("cron"), data.get("every")
    if (cron is None) == (every is None):
        raise ValidationError("give exactly one of cron or every", "cron")
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= MAX_EVERY:
            raise ValidationError(f"every must be an integer number of seconds from 1 to "
                                  f"{MAX_EVERY}", "every")
        return None, every
    if not isinstance(cron, str) or len(cron) > MAX_CRON_LENGTH or len(cron.split()) != 5:
        raise ValidationError("cron must be a cron expression of 5 fields", "cron")
    return " ".join(cron.split()), None


def _timezone(value: Any) -> str:
    if value is None:
        return "UTC"
    try:
        if not isinstance(value, str) or not value or len(value) > 64:
            raise ValueError(value)
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValidationError(f"timezone must be an IANA time zone name; unknown: "
                              f"{str(value)[:64]!r}", "timezone") from None
    return value


def _check_cron(cron: str, tz: str) -> None:
    try:
        it = CronSim(cron, datetime.now(ZoneInfo(tz)))
        next(it)
    except (CronSimError, StopIteration, ValueError) as exc:
        raise ValidationError(f"invalid cron expression: {exc}", "cron") from None


# -- ticks -----------------------------------------------------------------------------


def next_tick(spec: ScheduleSpec, anchor_ms: int, after_ms: int) -> int:
    """The schedule's first tick strictly after ``after_ms`` (ms since the epoch)."""
    if spec.every is not None:
        step = spec.every * 1000
        n = max(1, (after_ms - anchor_ms) // step + 1)
        return anchor_ms + n * step
    assert spec.cron is not None
    zone = ZoneInfo(spec.timezone)
    start = datetime.fromtimestamp(after_ms / 1000, UTC).astimezone(zone)
    return int(next(CronSim(spec.cron, start)).timestamp() * 1000)


@dataclass(frozen=True)
class Due:
    """What a due schedule should do now: the ticks to create tasks for (oldest first), the
    ticks it skips (reported as missed) and its next tick after now."""

    ticks: list[int]
    missed: int
    following: int


def due(spec: ScheduleSpec, anchor: int, next_run_at: int, now_ms: int) -> Due:
    """The ticks from ``next_run_at`` to ``now_ms`` and what ``spec.catchup`` makes of them."""
    if next_run_at > now_ms:
        return Due([], 0, next_run_at)
    if spec.every is not None:
        step = spec.every * 1000
        total = (now_ms - next_run_at) // step + 1
        newest = next_run_at + (total - 1) * step
        recent = [newest - k * step for k in range(min(total, CATCHUP_ALL_CAP))][::-1]
        following = newest + step
    else:
        total, recent, following = _cron_ticks(spec, anchor, next_run_at, now_ms)
    keep = {"latest": 1, "all": CATCHUP_ALL_CAP, "none": 0}[spec.catchup]
    ticks = recent[len(recent) - min(keep, len(recent)):] if keep else []
    return Due(ticks, total - len(ticks), following)


def _cron_ticks(spec: ScheduleSpec, anchor: int, first: int, now_ms: int
                ) -> tuple[int, list[int], int]:
    recent: deque[int] = deque([first], maxlen=CATCHUP_ALL_CAP)
    total, t = 1, next_tick(spec, anchor, first)
    while t <= now_ms and total < MISSED_COUNT_LIMIT:
        recent.append(t)
        total, t = total + 1, next_tick(spec, anchor, t)
    if t <= now_ms:  # beyond the count: the newest ticks, from a week back
        restart = max(t, now_ms - 7 * 86400 * 1000)
        t = next_tick(spec, anchor, restart)
        while t <= now_ms:
            recent.append(t)
            total, t = total + 1, next_tick(spec, anchor, t)
    return total, list(recent), t


# -- the store and the engine ------------------------------------------------------------


@dataclass(frozen=True)
class Fired:
    """What one round of :meth:`Schedules.fire_due` did."""

    task_ids: list[str]
    wait: float | None
    """Seconds until the earliest next tick of the queues looked at (None: none)."""
    unhandled: list[str] = field(default_factory=list)
    """Reports of due schedules this process has no handler for (new ones only)."""


class Schedules:
    """Periodic schedules of one namespace: definitions (create, replace, pause, resume,
    delete, trigger, settings sync) and the engine that fires due ticks.

    ``now`` returns the current time in seconds since the epoch (tests inject a clock).
    Writes that change a definition take the version they read and fail with
    :class:`~.errors.ScheduleChanged` when another writer changed it meanwhile.
    """

    def __init__(self, broker: Broker, now: Callable[[], float] = time.time) -> None:
        self.broker = broker
        self.now = now
        self._reported: set[tuple[str, int]] = set()
        self._reports: list[str] = []

    def _now_ms(self) -> int:
        return int(self.now() * 1000)

    def _keys(self, queue: str) -> Keys:
        return self.broker.keys.of(queue, 0)

    # -- reads ---------------------------------------------------------------

    def get(self, name: str) -> Schedule:
        """One schedule; raises :class:`~.errors.ScheduleNotFound`."""
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise errors.ScheduleNotFound(str(name)[:128])
        with redis_errors():
            queue = self.broker.client.hget(self.broker.keys.schedule_names, name)
            stored = self.broker.client.hgetall(self._keys(queue).schedule(name)) if queue else {}
        if not stored:
            raise errors.ScheduleNotFound(name)
        return Schedule.from_hash(queue, stored)

    def all(self, queue: str | None = None) -> list[Schedule]:
        """Every schedule (of one queue), sorted by name; one pipelined read (not atomic)."""
        with redis_errors():
            names = self.broker.client.hgetall(self.broker.keys.schedule_names)
            chosen = sorted((n, q) for n, q in names.items() if queue in (None, q))
            pipe = self.broker.client.pipeline(transaction=False)
            for name, q in chosen:
                pipe.hgetall(self._keys(q).schedule(name))
            found = pipe.execute() if chosen else []
        return [Schedule.from_hash(q, f) for (_, q), f in zip(chosen, found, strict=True) if f]

    def count(self) -> int:
        """How many schedules the namespace has."""
        with redis_errors():
            return int(self.broker.client.hlen(self.broker.keys.schedule_names))

    # -- definition changes --------------------------------------------------------

    def create(self, spec: ScheduleSpec, origin: str = "api", scope: str = "") -> Schedule:
        """Add a schedule; raises :class:`~.errors.ScheduleExists` for a name in use.  Its
        first tick is the first after now.  ``scope`` is the caller charged when its queue
        is new (``MAX_QUEUES_PER_CLIENT``; "" nobody: the settings, ``tq``)."""
        index = self.broker.keys.schedule_names
        with redis_errors():
            if not self.broker.client.hsetnx(index, spec.name, spec.queue):
                raise errors.ScheduleExists(f"a schedule named '{spec.name}' exists")
        try:
            self.broker.register_queue(spec.queue, queue_charge(scope))
            self._put(spec, None, origin)
        except BaseException:
            with redis_errors():  # no half-made schedule: the name goes too
                self.broker.client.hdel(index, spec.name)
            raise
        return self.get(spec.name)

    def replace(self, spec: ScheduleSpec, expected: Schedule | None = None,
                origin: str = "api", scope: str = "") -> Schedule:
        """Replace a schedule's definition (PUT), keeping its state; its timing restarts
        only when ``cron``, ``every`` or ``timezone`` changed.  ``expected`` is the schedule
        as the caller read it (default: read now); ``scope`` as for :meth:`create`."""
        old = expected or self.get(spec.name)
        if old.spec.queue != spec.queue:  # delete, then create: never two live copies
            # the new queue first: a refused one leaves the schedule as it was
            self.broker.register_queue(spec.queue, queue_charge(scope))
            self._run(old.spec.queue, "schedule_save", spec.name, "delete", old.version)
            with redis_errors():
                self.broker.client.hset(self.broker.keys.schedule_names, spec.name, spec.queue)
            self._put(spec, None, origin)
        else:
            self._put(spec, old, origin)
        return self.get(spec.name)

    def delete(self, name: str) -> None:
        """Remove a schedule (its tasks stay)."""
        old = self.get(name)
        self._run(old.spec.queue, "schedule_save", name, "delete", "")
        with redis_errors():
            self.broker.client.hdel(self.broker.keys.schedule_names, name)

    def pause(self, name: str) -> Schedule:
        """Stop creating tasks until resumed."""
        old = self.get(name)
        self._run(old.spec.queue, "schedule_save", name, "set", old.version, "enabled", "0")
        return self.get(name)

    def resume(self, name: str) -> Schedule:
        """Create tasks again from the next tick after now (ticks passed while paused are
        not caught up)."""
        old = self.get(name)
        following = next_tick(old.spec, old.anchor, self._now_ms())
        self._run(old.spec.queue, "schedule_save", name, "set", old.version, "enabled", "1",
                  "next_run_at", following)
        return self.get(name)

    def trigger(self, name: str) -> str:
        """Create one task now (``scheduled_for`` is now; next_run_at unchanged); its id."""
        sched = self.get(name)
        ids = self._fire(sched, "now", [self._now_ms()], 0, sched.next_run_at or 0)
        if ids is None:
            raise errors.ScheduleChanged(name)
        return ids[0]

    def sync(self, specs: Iterable[ScheduleSpec]) -> list[str]:
        """Make the stored schedules match ``specs`` (TASKQUEUE["SCHEDULES"]): create those
        missing, replace those whose settings changed since the last sync (settings win),
        leave the rest alone (so a pause at run time lasts until the settings change).
        Returns the names created or replaced."""
        changed = []
        for spec in specs:
            try:
                old: Schedule | None = self.get(spec.name)
            except errors.ScheduleNotFound:
                old = None
            if old is None:
                try:
                    self.create(spec, origin="settings")
                except errors.ScheduleExists:
                    continue  # another worker synced it first
            elif old.origin == "settings" and self._digest(old) == spec.digest():
                continue
            else:
                try:
                    self.replace(spec, old, origin="settings")
                except (errors.ScheduleChanged, errors.ScheduleNotFound):
                    continue  # another writer is at it
            changed.append(spec.name)
        return changed

    def _digest(self, sched: Schedule) -> str | None:
        with redis_errors():
            found = self.broker.client.hget(self._keys(sched.spec.queue).schedule(sched.name),
                                            "digest")
        return str(found) if found else None

    def _put(self, spec: ScheduleSpec, old: Schedule | None, origin: str) -> None:
        fields: dict[str, Any] = {**spec._fields(), "origin": origin}
        if origin == "settings":
            fields["digest"] = spec.digest()
        if old is None or old.spec.timing != spec.timing:
            now = self._now_ms()
            fields.update(anchor=now, next_run_at=next_tick(spec, now, now))
        elif spec.enabled and old.paused:
            fields["next_run_at"] = next_tick(spec, old.anchor, self._now_ms())
        pairs = [x for item in fields.items() for x in item]
        self._run(spec.queue, "schedule_save", spec.name, "put",
                  "" if old is None else old.version, *pairs)

    def _run(self, queue: str, script: str, name: str, *args: Any) -> Any:
        return self.broker.run_script(script, self._keys(queue).schedule(name), [name, *args])

    # -- the engine ------------------------------------------------------------------

    def fire_due(self, queues: Iterable[str], handles: Callable[[str], bool] | None = None,
                 ) -> Fired:
        """Create the tasks of every due tick of the schedules of ``queues``, per their
        catchup policy.  A schedule whose type ``handles`` says this process cannot run is
        not fired here (a worker that can run it fires it): it is reported once per
        definition version (``error`` field, ``schedule.error`` event, and in
        :attr:`Fired.unhandled` for the caller to log)."""
        created: list[str] = []
        wait: float | None = None
        for queue in queues:
            keys = self._keys(queue)
            now = self._now_ms()
            with redis_errors():
                names = self.broker.client.zrangebyscore(keys.schedules, "-inf", now,
                                                         start=0, num=DUE_BATCH)
                # Every worker reads the same due list: each walks it in its own random
                # order, so they share the work instead of all racing for the same
                # schedule (the loser's claim is a no-op), and reads the definitions in
                # one round trip.
                random.shuffle(names)
                pipe = self.broker.client.pipeline(transaction=False)
                for name in names:
                    pipe.hgetall(keys.schedule(name))
                stored = pipe.execute() if names else []
            for name, raw in zip(names, stored, strict=True):
                created += self.fire_one(queue, name, handles, stored=raw)
            with redis_errors():
                head = self.broker.client.zrange(keys.schedules, 0, 0, withscores=True)
            if head:
                seconds = max(0.0, (head[0][1] - self._now_ms()) / 1000)
                wait = seconds if wait is None else min(wait, seconds)
        reports, self._reports = self._reports, []
        return Fired(created, wait, reports)

    def fire_one(self, queue: str, name: str, handles: Callable[[str], bool] | None = None,
                 stored: dict[str, str] | None = None) -> list[str]:
        """Fire one schedule's due ticks if they are still due and unclaimed; the task ids
        created (none when another worker claimed them or the schedule changed).
        ``stored``: its record as just read (else it is read here)."""
        if stored is None:
            with redis_errors():
                stored = self.broker.client.hgetall(self._keys(queue).schedule(name))
        if not stored or stored.get("enabled") != "1" or not stored.get("next_run_at"):
            return []
        sched = Schedule.from_hash(queue, stored)
        if handles is not None and not handles(sched.spec.type):
            self._report_unhandled(sched)
            return []
        assert sched.next_run_at is not None
        plan = due(sched.spec, sched.anchor, sched.next_run_at, self._now_ms())
        if not plan.ticks and not plan.missed:
            return []
        return self._fire(sched, "tick", plan.ticks, plan.missed, plan.following) or []

    def _fire(self, sched: Schedule, mode: str, ticks: list[int], missed: int,
              following: int) -> list[str] | None:
        spec = sched.spec
        ids = [new_task_id() for _ in ticks]
        args: list[Any] = [mode, sched.next_run_at or "", sched.version, following, missed,
                           spec.type, json.dumps(spec.payload, separators=(",", ":")),
                           spec.priority, spec.max_retries, spec.timeout, len(ticks)]
        for task_id, tick in zip(ids, ticks, strict=True):
            meta = {"schedule": spec.name, "scheduled_for": ms_to_iso(tick)}
            if mode == "now":
                meta["trigger"] = "manual"
            args += [task_id, tick, json.dumps(meta, separators=(",", ":"))]
        reply = self._run(spec.queue, "schedule_fire", spec.name, *args)
        return ids if reply[0] == "fired" else None

    def _report_unhandled(self, sched: Schedule) -> None:
        seen = (sched.name, sched.version)
        if seen in self._reported:
            return
        self._reported.add(seen)
        what = "Django task" if sched.spec.task else "task type"
        message = f"no handler for {what} '{sched.spec.type}' on a worker serving queue " \
                  f"'{sched.spec.queue}'"
        try:
            self._run(sched.spec.queue, "schedule_save", sched.name, "report", "",
                      "error", message)
        except errors.ScheduleNotFound:
            return
        self._reports.append(f"schedule '{sched.name}': {message}")

    def wait(self, queues: Iterable[str], timeout: float) -> None:
        """Block until a schedule of ``queues`` is created or changed, or ``timeout`` passes
        (on a Redis Cluster one blocking pop watches one slot: the first queue's)."""
        lists = [self._keys(q).schedules_wake for q in queues]
        if self.broker.cluster:
            lists = lists[:1]
        if not lists or timeout <= 0:
            return
        with redis_errors():
            self.broker.blocking_client.blpop(lists, timeout=max(timeout, 0.01))

