"""The Redis broker: producer calls and the worker's hot path.

Every state change is one Lua script (see ``scripts/``).  Inspection and
admin operations live in :mod:`.inspect`.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from . import errors
from .config import Config
from .keys import Keys, scoped
from .scripts import UNAVAILABLE_REPLIES, Scripts
from .states import Priority, TaskState
from .task import Attempt, Job, Task, TaskSpec
from .topology import make_blocking_client, make_client

EMPTY = "empty"
PAUSED = "paused"
UNREGISTERED = "unregistered"


@contextmanager
def redis_errors() -> Iterator[None]:
    """Turn connection failures, and replies such as READONLY or MISCONF that mean Redis
    cannot serve writes now, into :class:`BrokerUnavailable`."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise errors.BrokerUnavailable(str(exc) or exc.__class__.__name__) from exc
    except redis.ResponseError as exc:
        if str(exc).startswith(UNAVAILABLE_REPLIES):
            raise errors.BrokerUnavailable(str(exc)) from exc
        raise


def new_task_id() -> str:
    """A fresh task id: a random UUID (version 4), in its canonical lowercase form.

    Built from ``os.urandom`` directly, as ``uuid.uuid4()`` does, without the cost
    of a ``uuid.UUID`` object (a third of the producer's time in a bulk enqueue).
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_uuid(value: object) -> bool:
    """True for a UUID string in its canonical form (either case)."""
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


@dataclass(frozen=True)
class Outcome:
    """What a finished attempt led to (type and priority are set for failed attempts)."""

    state: TaskState
    next_retry_at: int | None = None
    dlq_message_id: str | None = None
    duplicate: bool = False
    type: str = ""
    priority: int = 0
    attempt: int = 0
    worker_id: str = ""


@dataclass(frozen=True)
class Finished:
    """What :meth:`Broker.finish_and_dequeue` did: the attempt's outcome (None when its lease
    was lost and the outcome discarded) and the next task, or why there is none."""

    outcome: Outcome | None
    next: Job | str


@dataclass(frozen=True)
class Beat:
    """What a heartbeat learned."""

    paused: bool
    lost: list[tuple[str, str]]  # (task id, fence) of attempts whose lease was taken over
    orphans: list[str]  # tasks whose dequeue reply never arrived, now pending again


@dataclass(frozen=True)
class Recovered:
    """A task whose lease expired, and what its attempt's failure led to."""

    task_id: str
    outcome: Outcome


@dataclass(frozen=True)
class Submitted:
    """What an enqueue call created, or found when its idempotency key was seen before."""

    tasks: list[Task]
    duplicate: bool


class Broker:
    """Queue operations on one Redis namespace."""

    def __init__(self, client: redis.Redis, config: Config) -> None:
        # Any: redis-py's stubs type replies as bytes | str even with decode_responses.
        self.client: Any = client
        self.config = config
        self.keys = Keys(config.namespace)
        self.scripts = Scripts(client, self.keys, config)
        self._blocking: Any = None

    @classmethod
    def from_config(cls, config: Config) -> Broker:
        """A broker with its own connection pool for ``config.redis_url`` (any topology
        :func:`.topology.parse_redis_url` reads)."""
        with redis_errors():  # a cluster client reads the slot map at once
            client = make_client(
                config.redis_url,
                decode_responses=True,
                socket_timeout=config.socket_timeout,
                socket_connect_timeout=config.connect_timeout,
                health_check_interval=30,
            )
        return cls(client, config)

    def run_script(self, name: str, key: str, args: list[Any]) -> Any:
        """Run one transition script (``scripts/<name>.lua``) with its errors translated:
        the way in for the admin operations of :mod:`.inspect`."""
        with redis_errors():
            return self.scripts(name, key, args)

    @property
    def blocking_client(self) -> Any:
        """A client of its own for blocking waits (longer socket timeout), on the same
        topology as ``client``."""
        if self._blocking is None:
            self._blocking = make_blocking_client(
                self.config.redis_url,
                socket_timeout=self.config.socket_timeout,
                socket_connect_timeout=self.config.connect_timeout,
                health_check_interval=30,
            )
        return self._blocking

    def close(self) -> None:
        """Release every connection."""
        self.client.close()
        if self._blocking is not None:
            self._blocking.close()

    def ping(self) -> bool:
        """True when Redis answers."""
        with redis_errors():
            return bool(self.client.ping())

    # -- producers ---------------------------------------------------------

    def enqueue(self, spec: TaskSpec) -> Task:
        """Create one task (pending, or scheduled when it has a due time)."""
        return self.enqueue_many([spec])[0]

    def enqueue_many(self, specs: Sequence[TaskSpec]) -> list[Task]:
        """Create tasks atomically in one round trip: all are created or none."""
        return self.submit(specs).tasks

    def submit(self, specs: Sequence[TaskSpec], idempotency_key: str | None = None,
               idempotency_ttl: float = 86400.0, scope: str = "") -> Submitted:
        """Create tasks atomically; with an idempotency key, a repeat by the same ``scope``
        within ``idempotency_ttl`` seconds creates nothing and returns the first call's tasks.

        ``scope`` names the caller: idempotency keys are remembered per scope, and a
        non-empty scope is recorded as the tasks' ``owner``.
        """
        if not specs:
            return Submitted([], duplicate=False)
        idem = scoped(scope, idempotency_key) if idempotency_key else ""
        args: list[Any] = [len(specs), idem, int(idempotency_ttl * 1000), scope]
        for spec in specs:
            args.extend(spec.script_args())
        reply = self.run_script("enqueue", self.keys.seq, args)
        if reply[0] == "duplicate":
            return Submitted(self._existing(reply[1:]), duplicate=True)
        now = int(reply[0])
        tasks = [_created(spec, now, scope) if int(created) else self.get(spec.id)
                 for spec, created in zip(specs, reply[1:], strict=True)]
        return Submitted(tasks, duplicate=False)

    def _existing(self, ids: list[str]) -> list[Task]:
        tasks = []
        for task_id in ids:
            try:
                tasks.append(self.get(task_id))
            except errors.TaskNotFound:
                continue  # cleared from the DLQ since: nothing to show
        return tasks

    def get(self, task_id: str) -> Task:
        """The task with that id; raises :class:`TaskNotFound`."""
        if not is_uuid(task_id):
            raise errors.TaskNotFound(task_id)
        with redis_errors():
            raw = self.client.hgetall(self.keys.task(task_id))
        if not raw or "state" not in raw:
            raise errors.TaskNotFound(task_id)
        return Task.from_hash(raw)

    def cancel(self, task_id: str) -> Task:
        """Cancel a pending, scheduled or retrying task and return it."""
        if not is_uuid(task_id):
            raise errors.TaskNotFound(task_id)
        self.run_script("cancel", self.keys.seq, [task_id])
        return self.get(task_id)

    # -- worker hot path ---------------------------------------------------

    def dequeue(self, worker_id: str, priorities: Iterable[int]) -> Job | str:
        """Start the best pending task, or say why not (EMPTY, PAUSED, UNREGISTERED)."""
        got = self.take(worker_id, priorities, 1)
        return got[0] if isinstance(got, list) else got

    def take(self, worker_id: str, priorities: Iterable[int], n: int) -> list[Job] | str:
        """Start up to ``n`` of the best pending tasks (at least one), or say why none."""
        order = sorted(priorities, reverse=True)
        return _taken(self.run_script("dequeue", self.keys.pending, [worker_id, n, *order]))

    def wait_for_work(self, worker_id: str, priorities: Iterable[int], timeout: float,
                      paused: bool = False) -> bool:
        """Block until a wake-up token arrives (or timeout); True when woken."""
        keys = [self.keys.worker_wake(worker_id)]
        if not paused:
            keys = self.keys.notify_keys(priorities) + keys
        with redis_errors():
            return self.blocking_client.blpop(keys, timeout=max(timeout, 0.01)) is not None

    def wait_and_take(self, worker_id: str, priorities: Iterable[int], timeout: float, n: int,
                      paused: bool = False) -> tuple[bool, list[Job] | str]:
        """Block until a wake-up token arrives (or timeout), then take up to ``n`` tasks, in
        one round trip: the take is pipelined behind the blocking pop, so Redis runs it the
        moment the token arrives, without waiting for the client to ask.  Returns whether
        the worker's own wake list (a stop, or a resume) woke it, and what the take got."""
        keys = [self.keys.worker_wake(worker_id)]
        if not paused:
            keys = self.keys.notify_keys(priorities) + keys
        order = sorted(priorities, reverse=True)
        with redis_errors():
            pipe = self.blocking_client.pipeline(transaction=False)
            pipe.blpop(keys, timeout=max(timeout, 0.01))
            self.scripts.queue("dequeue", self.keys.pending, [worker_id, n, *order], pipe)
            popped, reply = pipe.execute(raise_on_error=False)
        by_worker = isinstance(popped, (list, tuple)) and popped[0] == keys[-1]
        if isinstance(reply, Exception):  # e.g. the code is not loaded (Redis restarted)
            if isinstance(reply, (redis.ConnectionError, redis.TimeoutError)):
                raise errors.BrokerUnavailable(str(reply))
            return by_worker, self.take(worker_id, priorities, n)
        return by_worker, _taken(reply)

    def ack(self, attempt: Attempt, worker_id: str, result_json: str,
            duration: float = 0.0) -> Outcome:
        """Complete an attempt; raises :class:`StaleLease` if the lease was lost."""
        args = self._ack_args(attempt, worker_id, result_json, duration)
        return _acked(self.run_script("ack", self.keys.pending, args))

    def fail(self, attempt: Attempt, worker_id: str, error: str, permanent: bool = False,
             duration: float | None = None) -> Outcome:
        """End a failed attempt; the retry policy decides what comes next.

        ``duration`` is the handler's run time, None when unknown (the slot died).
        """
        args = self._fail_args(attempt, worker_id, error, permanent, duration)
        return _failed(self.run_script("fail", self.keys.pending, args))

    def finish_and_dequeue(self, job: Job, worker_id: str, ok: bool, value: str,
                           permanent: bool, priorities: Iterable[int], duration: float = 0.0,
                           ) -> Finished:
        """Ack (ok) or fail an attempt and take the next task, in one script.

        A lost lease discards the outcome (``outcome`` None) and the next task is still
        taken.
        """
        kind = "ok" if ok else ("permanent" if permanent else "retry")
        outcomes, nxt = self.finish(worker_id, [Ended(job, kind, value, duration)], 1,
                                    priorities)
        return Finished(outcomes[0], nxt[0] if isinstance(nxt, list) else nxt)

    def finish(self, worker_id: str, ended: Sequence[Ended], want: int,
               priorities: Iterable[int]) -> tuple[list[Outcome | None], list[Job] | str]:
        """Record the outcomes of attempts a slot ran and take up to ``want`` next tasks
        (0: none), in one script and one round trip.

        Each outcome is an :class:`Outcome`, or None when the attempt's lease was taken over
        (the outcome is discarded).
        """
        order = sorted(priorities, reverse=True)
        args: list[Any] = [worker_id, random.randrange(1 << 30), len(ended)]
        for e in ended:
            spent = "" if e.duration is None else f"{e.duration:.6f}"
            args.extend((e.job.id, e.job.fence, e.kind, e.value, spent))
        args.extend((want, *order))
        replies, nxt = self.run_script("finish", self.keys.pending, args)
        outcomes = [_outcome(e.kind, reply) for e, reply in zip(ended, replies, strict=True)]
        return outcomes, _taken(nxt) if nxt[0] != "none" else []

    @staticmethod
    def _ack_args(attempt: Attempt, worker_id: str, result_json: str, duration: float
                  ) -> list[Any]:
        return [attempt.id, worker_id, attempt.fence, result_json, f"{duration:.6f}"]

    @staticmethod
    def _fail_args(attempt: Attempt, worker_id: str, error: str, permanent: bool,
                   duration: float | None) -> list[Any]:
        kind = "permanent" if permanent else "retry"
        spent = "" if duration is None else f"{duration:.6f}"
        return [attempt.id, worker_id, attempt.fence, error, kind, random.randrange(1 << 30),
                spent]

    def requeue(self, task_id: str, worker_id: str, fence: str) -> None:
        """Put a running task back at its place in line without counting the attempt."""
        self.run_script("requeue", self.keys.pending, [task_id, worker_id, fence])

    def heartbeat(self, worker_id: str, fields: dict[str, Any],
                  running: Sequence[tuple[str, str]], first: bool = False) -> Beat:
        """Refresh the worker's record and its running tasks' leases; put back orphans.

        ``first`` marks a worker process's first beat: tasks still running under its id
        belong to an earlier process with that id, which died; they fail as 'worker lost'.
        """
        args: list[Any] = [worker_id, "1" if first else "0", len(fields)]
        for name, value in fields.items():
            args.extend((name, value))
        for task_id, fence in running:
            args.extend((task_id, fence))
        reply = self.run_script("heartbeat", self.keys.workers, args)
        n_lost = int(reply[1])
        items = [str(x) for x in reply[2:]]
        lost = [tuple(item.split(" ", 1)) for item in items[:n_lost]]
        return Beat(bool(int(reply[0])), lost, items[n_lost:])  # type: ignore[arg-type]

    def is_paused(self, worker_id: str) -> bool:
        """True when an operator paused this worker."""
        with redis_errors():
            return bool(self.client.sismember(self.keys.paused_workers, worker_id))

    def claim_depth_report(self, period: float) -> bool:
        """True for the one caller per period, cluster-wide, that should report depths."""
        with redis_errors():
            return bool(self.client.set(self.keys.depth_lock, "1", nx=True,
                                        px=int(period * 1000)))

    def deregister(self, worker_id: str) -> bool:
        """Remove a worker from the registry; True if it was registered."""
        return bool(self.run_script("deregister", self.keys.workers, [worker_id]))

    # -- background loops --------------------------------------------------

    def promote(self, limit: int = 1000) -> tuple[int, float | None]:
        """Move due scheduled/retrying tasks to pending; return (moved, seconds to next due)."""
        moved, wait_ms = self.run_script("promote", self.keys.schedule_wake, [limit])
        return int(moved), (int(wait_ms) / 1000 if int(wait_ms) >= 0 else None)

    def wait_for_schedule(self, timeout: float) -> None:
        """Block until a task is delayed or retried, or until timeout."""
        with redis_errors():
            self.blocking_client.blpop([self.keys.schedule_wake], timeout=max(timeout, 0.01))

    def recover(self, limit: int = 1000) -> tuple[list[Recovered], list[str]]:
        """Fail attempts whose lease expired and drop dead workers; return both."""
        reply = self.run_script("recover", self.keys.workers,
                                [limit, random.randrange(1 << 30)])
        n_tasks, rest = int(reply[0]), reply[2:]
        tasks = [Recovered(str(rest[i]), _failed(rest[i + 1:i + 7]))
                 for i in range(0, 7 * n_tasks, 7)]
        return tasks, [str(w) for w in rest[7 * n_tasks:]]

    def trim_dlq(self, batch: int = 500) -> tuple[int, int]:
        """Delete the oldest dead-letter entries and their task records beyond
        ``dlq_max_entries`` and ``dlq_max_age``, at most ``batch`` of them; return how many
        went over each bound (count, age)."""
        max_age = self.config.dlq_max_age
        args = [self.config.dlq_max_entries or 0, int(max_age * 1000) if max_age else 0, batch]
        by_count, by_age, _ = self.run_script("dlq_trim", self.keys.dlq, args)
        return int(by_count), int(by_age)

    def wake_worker(self, worker_id: str, slots: int) -> None:
        """Wake a worker's idle slots (used on shutdown so they notice at once)."""
        key = self.keys.worker_wake(worker_id)
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(key, *(["1"] * max(slots, 1)))
            pipe.pexpire(key, 60_000)
            pipe.execute()

    def control(self, target: str, ident: str | int, action: str) -> None:
        """Pause or resume a worker or a priority queue."""
        self.run_script("control", self.keys.workers, [target, ident, action])


@dataclass(frozen=True)
class Ended:
    """The outcome of one attempt a slot ran, as :meth:`Broker.finish` records it: kind 'ok'
    (value is the result JSON), 'retry' or 'permanent' (value is the error), or 'requeue'
    (never started: back in line, uncounted)."""

    job: Job
    kind: str
    value: str = ""
    duration: float | None = 0.0


def _taken(reply: list[Any]) -> list[Job] | str:
    """The tasks a dequeue handed out, or why none."""
    if reply[0] != "task":
        return str(reply[0])
    return [Job.from_reply(["task", *reply[2 + 11 * i:13 + 11 * i]])
            for i in range(int(reply[1]))]


def _outcome(kind: str, reply: list[Any]) -> Outcome | None:
    status = reply[0]
    if status in ("stale", "missing"):
        return None
    if kind == "ok":
        return _acked(reply)
    if status == "requeued":
        return Outcome(TaskState.PENDING)
    return _failed(reply)


def _acked(reply: list[Any]) -> Outcome:
    return Outcome(TaskState.COMPLETED, duplicate=reply[0] == "already")


def _failed(reply: list[Any]) -> Outcome:
    if reply[0] == "already":
        return Outcome(TaskState(reply[1]), duplicate=True)
    state, extra, ttype, priority, attempt, worker = reply
    return Outcome(
        TaskState(state),
        next_retry_at=int(extra) if state == TaskState.RETRYING else None,
        dlq_message_id=extra if state == TaskState.DEAD_LETTER else None,
        type=ttype,
        priority=int(priority),
        attempt=int(attempt),
        worker_id=worker or "",
    )


def _created(spec: TaskSpec, now: int, owner: str) -> Task:
    due = spec.scheduled_at_ms
    if due is None and spec.delay_ms is not None:
        due = now + spec.delay_ms
    scheduled = due is not None and due > now
    return Task(
        id=spec.id,
        type=spec.type,
        payload=spec.payload,
        priority=Priority(spec.priority),
        state=TaskState.SCHEDULED if scheduled else TaskState.PENDING,
        attempts=0,
        max_retries=spec.max_retries,
        timeout=spec.timeout,
        metadata=spec.metadata,
        created_at=now,
        updated_at=now,
        scheduled_at=due,
        owner=owner or None,
    )

