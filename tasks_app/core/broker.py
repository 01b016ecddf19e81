"""The Redis broker: producer calls and the worker's hot path.

Every state change is one Lua script (see ``scripts/``).  Inspection and
admin operations live in :mod:`.inspect`.
"""

from __future__ import annotations

import os
import random
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from . import errors, unique
from .config import Config
from .keys import BAND, DEFAULT_QUEUE, Keys, parse_shard_ref, queue_charge, scoped, shard_ref
from .queues import Serving
from .scripts import UNAVAILABLE_REPLIES, Scripts, translate
from .states import Priority, TaskState
from .task import Attempt, Job, Task, TaskSpec, quick_task, script_rows
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


def idempotency_ttl_ms(seconds: float) -> int:
    """An idempotency key's lifetime as the scripts' ``SET ... PX`` takes it: at least 1 ms,
    so the script's last write never fails after what it created was written."""
    return max(1, int(seconds * 1000))


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
    existing: frozenset[int] = frozenset()
    """Indexes of tasks that were not created: the task returned in their place is the
    existing one their unique key names (unique.py)."""


LIMITS_RECHECK = 2.0
"""Seconds a producer trusts what it read of the namespace's type limits."""

DURABLE_SCRIPTS = frozenset({"enqueue", "cancel", "ack", "fail", "finish", "retry",
                             "dlq_retry", "dlq_delete", "purge",
                             "workflow_create", "workflow_cancel", "schedule_save"})
"""The scripts whose writes a "replica" durability confirms with a replica (WAIT): every
create through the API or the producer (tasks, workflows, schedules), cancel, outcome and
DLQ change, and every change to a schedule.  A schedule's fire is not: it creates the tick's
task and moves the schedule on in one script, so a failover that loses one loses both, and
the tick fires again on the new master."""

QUEUES_TTL = 2.0
"""Seconds a process trusts its copy of the namespace's queue registry."""


class Broker:
    """Queue operations on one Redis namespace: its named queues and their shards.

    ``keys`` are the namespace's home keys (shard 0 of the ``default`` queue, which also
    holds the namespace-wide registry of queues).  A worker sets :attr:`serving` to the
    queues it takes from (None: every queue the namespace knows).
    """

    def __init__(self, client: redis.Redis, config: Config) -> None:
        # Any: redis-py's stubs type replies as bytes | str even with decode_responses.
        self.client: Any = client
        self.config = config
        self.keys = Keys(config.namespace)
        self.scripts = Scripts(client, self.keys, config)
        self._blocking: Any = None
        self._shards: dict[str, Keys] = {"": self.keys}
        self._queues: dict[str, int] = {}
        self._queues_at = -QUEUES_TTL
        self._registered: set[str] = set()
        self._salts: dict[str, str] = {}
        self._limits_known: tuple[float, bool] = (0.0, False)  # (until, any type limited)
        self.serving: Serving | None = None
        self.cluster = type(client).__name__ == "RedisCluster"
        """True on a Redis Cluster: a blocking wait then watches one slot's keys."""

    # -- queues and shards -------------------------------------------------

    def shard(self, ref: str) -> Keys:
        """The keys of the queue shard that ``ref`` (:func:`keys.shard_ref`) names."""
        keys = self._shards.get(ref)
        if keys is None:
            queue, index = parse_shard_ref(ref)
            salt = self._salts.get(ref, "") if index else ""
            if index and self.cluster and not salt:
                salt = self._place(queue, index + 1).get(ref, "")
            keys = self._shards[ref] = self.keys.of(queue, index, salt)
        return keys

    def queue_shards(self, queue: str) -> list[Keys]:
        """The keys of every shard of a queue."""
        n = self.queues().get(queue) or self.config.queue_shards(queue)
        return [self.shard(shard_ref(queue, i)) for i in range(n)]

    def _place(self, queue: str, n: int) -> dict[str, str]:
        """On a Redis Cluster, give shards 1..n-1 of a queue the salts that put them on the
        masters holding the fewest of its shards (the first writer wins; every process then
        reads the same salts).  Returns the salts now registered."""
        from redis.cluster import key_slot

        with redis_errors():
            salts = self.client.hgetall(self.keys.queue_salts)
            missing = [k for k in range(1, n) if shard_ref(queue, k) not in salts]
            if missing:
                owners = _slot_owners(self.client)
                load: dict[str, int] = {owner: 0 for _, _, owner in owners}
                taken = [self.keys.of(queue, 0)] + [
                    self.keys.of(queue, k, salts[shard_ref(queue, k)])
                    for k in range(1, n) if shard_ref(queue, k) in salts]
                for keys in taken:
                    load[_owner(owners, key_slot(keys.pending.encode()))] += 1
                for k in missing:
                    emptiest = min(load.values())
                    for salt in range(1, 100_000):
                        keys = self.keys.of(queue, k, str(salt))
                        owner = _owner(owners, key_slot(keys.pending.encode()))
                        if load[owner] == emptiest:
                            break
                    self.client.hsetnx(self.keys.queue_salts, shard_ref(queue, k), str(salt))
                    load[owner] += 1
                salts = self.client.hgetall(self.keys.queue_salts)
        self._salts = dict(salts)
        return self._salts

    def queues(self, fresh: bool = False) -> dict[str, int]:
        """Every queue of the namespace and its number of shards: the configured ones and
        those a producer or worker registered (re-read at most every QUEUES_TTL seconds)."""
        now = time.monotonic()
        if fresh or now - self._queues_at >= QUEUES_TTL:
            with redis_errors():
                stored = self.client.hgetall(self.keys.queues)
            known = {DEFAULT_QUEUE: self.config.queue_shards(DEFAULT_QUEUE)}
            for name, n in self.config.queues:
                known[name] = n
            for name, n in stored.items():
                known[name] = max(known.get(name, 1), int(n))
            self._queues, self._queues_at = known, now
        return self._queues

    def all_shards(self) -> list[Keys]:
        """The keys of every shard of every known queue (the home shard first)."""
        return [keys for name in sorted(self.queues(), key=lambda q: q != DEFAULT_QUEUE)
                for keys in self.queue_shards(name)]

    def has_type_limits(self) -> bool:
        """Whether the namespace limits any task type (read at most every 2 s): only then do
        creates count parked tasks toward MAX_PENDING (one read saved per create).  A limit
        set in the last 2 s may go uncounted by a producer for that long."""
        until, known = self._limits_known
        now = time.monotonic()
        if now >= until:
            with redis_errors():
                known = bool(self.client.exists(self.keys.type_limits))
            self._limits_known = (now + LIMITS_RECHECK, known)
        return known

    def register_queue(self, queue: str, scope: str = "") -> None:
        """Record a queue (and its configured shard count) in the namespace's registry, once
        per process: workers started without ``--queues`` find it there.  A new queue must
        fit under ``MAX_QUEUES`` and, when ``scope`` (the caller charged for it, see
        :func:`.keys.queue_charge`) is given, under that caller's
        ``MAX_QUEUES_PER_CLIENT``: else :class:`ValidationError`, and nothing is written."""
        if queue in self._registered:
            return
        n = self.config.queue_shards(queue)
        configured = any(name == queue for name, _ in self.config.queues)
        reply = self.run_script("queue_register", self.keys.queues, [
            queue, n, self.config.max_queues, scope, self.config.max_queues_per_client,
            "1" if configured else "", self.keys.queue_creators])
        if reply[0] == "full":
            raise errors.ValidationError(
                f"queue '{queue}' would be a new queue, and there are already "
                f"{self.config.max_queues} (MAX_QUEUES)", "queue")
        if reply[0] == "client":
            raise errors.ValidationError(
                f"queue '{queue}' would be a new queue, and this client has already brought "
                f"{self.config.max_queues_per_client} into existence (MAX_QUEUES_PER_CLIENT)",
                "queue")
        added = reply[0] == 1
        with redis_errors():
            # A priority paused across the namespace (its source of truth is the home
            # shard's set) is paused in a queue that appears later too.
            paused = [p for p in self.client.smembers(self.keys.paused_queues) if p != "q"]
        self._registered.add(queue)
        self._queues_at = -QUEUES_TTL
        if paused and (added or n > 1):
            for keys in self.queue_shards(queue):
                if keys is not self.keys:
                    for p in paused:
                        self.run_script("control", keys.workers, ["queue", p, "pause"])
        if added or n > 1:  # and the namespace's per-type limits
            from .limits import TypeLimits

            TypeLimits(self).copy_to(self.queue_shards(queue))

    def check_fits(self, count: int, what: str) -> None:
        """Raise :class:`QueueFull` for a create of more pending tasks than MAX_PENDING: its
        script would refuse it whatever the backlog, so this says so before a new queue is
        registered for nothing."""
        if count > self.config.max_pending:
            raise errors.QueueFull(f"{count} {what} are more than MAX_PENDING allows")

    def producer_shard(self, queue: str, route: str = "") -> Keys:
        """The shard of ``queue`` a create goes to: the one ``route`` (an idempotency or
        unique key) maps to, so a repeat finds the first call's record; else any."""
        shards = self.queue_shards(queue)
        if len(shards) == 1:
            return shards[0]
        if route:
            return shards[zlib.crc32(route.encode()) % len(shards)]
        return random.choice(shards)

    def locate(self, task_id: str) -> Keys | None:
        """The shard holding a task (None if no shard does), in one round trip."""
        shards = self.all_shards()
        if len(shards) == 1:
            return shards[0]
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for keys in shards:
                pipe.exists(keys.task(task_id))
            found = pipe.execute()
        return next((keys for keys, hit in zip(shards, found, strict=True) if hit), None)

    # -- the shards a worker serves ----------------------------------------

    def served(self) -> list[Keys]:
        """Every shard of the queues this process serves (the primary shard first)."""
        names = self.serving.names if self.serving and self.serving.names else None
        if names is None:
            return self.all_shards()
        return [keys for name in names for keys in self.queue_shards(name)]

    @property
    def primary(self) -> Keys:
        """The first shard served: where a worker's slots wait for a wake-up of their own."""
        if self.serving and self.serving.names:
            return self.shard(shard_ref(self.serving.names[0], 0))
        return self.keys

    def take_order(self, peek: bool = True) -> list[Keys]:
        """The shards to take from, in the order of this call: the queues in the serving
        order (strict, or a weighted draw); a queue's shards by the priority of the task at
        their head (``peek``: one pipelined read, only for queues with several shards, so
        priority holds across shards up to what changes meanwhile), ties at random."""
        names = (self.serving.order() if self.serving and self.serving.names
                 else Serving.every(list(self.queues())).order())
        groups = [self.queue_shards(name) for name in names]
        split = [shards for shards in groups if len(shards) > 1]
        heads: dict[int, float] = {}
        if split and peek:
            with redis_errors():
                pipe = self.client.pipeline(transaction=False)
                for shards in split:
                    for keys in shards:
                        pipe.zrange(keys.pending, 0, 0, withscores=True)
                found = iter(pipe.execute())
            for shards in split:
                for keys in shards:
                    head = next(found)
                    heads[id(keys)] = head[0][1] // BAND if head else 4
        out = []
        for shards in groups:
            if len(shards) > 1:
                shards = sorted(shards, key=lambda k: (heads.get(id(k), 0), random.random()))
            out.extend(shards)
        return out

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
            if self.config.durability == "replica" and name in DURABLE_SCRIPTS:
                return self._replicated(name, key, args)
            return self.scripts(name, key, args)

    def _replicated(self, name: str, key: str, args: list[Any]) -> Any:
        """Run a script and WAIT for one replica on the same connection (WAIT counts the
        writes of its own connection), in one round trip.  A write no replica confirmed in
        time raises :class:`ReplicaTimeout`: it happened on the master, and a retry of a
        fenced or idempotent call is safe."""
        timeout_ms = max(1, int(self.config.replica_timeout * 1000))
        for _ in range(2):
            node = self._node_client(key)
            pipe = node.pipeline(transaction=False)
            self.scripts.queue(name, key, args, pipe)
            pipe.execute_command("WAIT", 1, timeout_ms)
            try:
                reply, acked = pipe.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError):
                self._refresh_slots()  # the node may be gone: find the slot's owner again
                raise
            if isinstance(reply, redis.exceptions.MovedError):
                self._refresh_slots()  # a failover moved the slot: ask its new owner
                continue
            if isinstance(reply, redis.exceptions.NoScriptError) or (
                    isinstance(reply, redis.ResponseError)
                    and "function not found" in str(reply).lower()):
                self.scripts.load(node)  # then once more, as the loaded form
                continue
            if isinstance(reply, Exception):
                raise translate(reply) if isinstance(reply, redis.ResponseError) else reply
            if isinstance(acked, Exception) or int(acked) < 1:
                raise errors.ReplicaTimeout(
                    f"no replica confirmed the write within {self.config.replica_timeout:g}s")
            return reply
        raise errors.BrokerUnavailable("the scripts could not be loaded, or the slot moved")

    def _refresh_slots(self) -> None:
        """On a Redis Cluster, read the slot map again.  ``_replicated`` pipelines go to
        one node directly, so the cluster client never sees their MOVED replies or
        connection errors: without this a failover would leave them on the old master."""
        if self.cluster:
            with suppress(redis.RedisError, RedisClusterException):
                self.client.nodes_manager.initialize()

    def _node_client(self, key: str) -> Any:
        """A client whose pipelines reach the node holding ``key`` (itself, except on a
        Redis Cluster)."""
        if self.cluster:
            return self.client.get_redis_connection(self.client.get_node_from_key(key))
        return self.client

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
        queue = specs[0].queue
        for i, spec in enumerate(specs):
            if spec.queue != queue:
                raise errors.ValidationError(
                    "every task of one call must be in the same queue (a call is created "
                    "atomically, in one queue)", f"tasks[{i}].queue")
        idem = scoped(scope, idempotency_key) if idempotency_key else ""
        self.check_fits(len(specs), "tasks in one call")
        if queue != DEFAULT_QUEUE or self.config.queue_shards(queue) > 1:
            self.register_queue(queue, queue_charge(scope))
        uniques = _unique_keys(specs, scope)
        route = self._unique_route(queue, idem, uniques) if uniques else idem
        keys = self.producer_shard(queue, route)
        args: list[Any] = [len(specs), idem, idempotency_ttl_ms(idempotency_ttl), scope,
                           "1" if self.has_type_limits() else "",
                           script_rows([spec.script_row() for spec in specs])]
        if uniques:
            for spec, key in zip(specs, uniques, strict=True):
                window = spec.unique_for_ms
                args.extend((key, "" if window is None else unique.script_window(window)))
        reply = self.run_script("enqueue", keys.seq, args)
        if reply[0] == "duplicate":
            return Submitted(self._existing(reply[1:]), duplicate=True)
        now = int(reply[0])
        if uniques:
            return self._unique_submitted(specs, reply[1:], now, scope)
        tasks = [_created(spec, now, scope) if int(created) else self.get(spec.id)
                 for spec, created in zip(specs, reply[1:], strict=True)]
        return Submitted(tasks, duplicate=False)

    # -- unique tasks (unique.py) -------------------------------------------

    def _unique_route(self, queue: str, idem: str, uniques: list[str]) -> str:
        """What picks the shard of a call with unique keys: its idempotency key, else its
        first unique key.  On a sharded queue every unique key of the call must map to that
        shard (a later create with the same key must find it there)."""
        route = idem or next(key for key in uniques if key)
        n = len(self.queue_shards(queue))
        if n > 1:
            pick = zlib.crc32(route.encode()) % n
            for i, key in enumerate(uniques):
                if key and zlib.crc32(key.encode()) % n != pick:
                    raise errors.ValidationError(
                        f"tasks[{i}]: unique_key maps to another shard of queue '{queue}' than "
                        "the rest of this call: create it in a call of its own", "unique_key")
        return route

    def _unique_submitted(self, specs: Sequence[TaskSpec], created: list[Any], now: int,
                          scope: str) -> Submitted:
        tasks, existing = [], set()
        for i, (spec, reply) in enumerate(zip(specs, created, strict=True)):
            if isinstance(reply, str) and not reply.isdigit():  # the id its unique key holds
                tasks.append(self.get(reply))
                existing.add(i)
            else:
                tasks.append(_created(spec, now, scope) if int(reply) else self.get(spec.id))
        return Submitted(tasks, duplicate=False, existing=frozenset(existing))

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
        shards = self.all_shards()
        with redis_errors():
            if len(shards) == 1:
                found = [self.client.hgetall(shards[0].task(task_id))]
            else:  # one round trip whatever the number of queues
                pipe = self.client.pipeline(transaction=False)
                for keys in shards:
                    pipe.hgetall(keys.task(task_id))
                found = pipe.execute()
        for keys, raw in zip(shards, found, strict=True):
            if raw and "state" in raw:
                return Task.from_hash(raw, keys.queue)
        raise errors.TaskNotFound(task_id)

    def cancel(self, task_id: str) -> Task:
        """Cancel a pending, scheduled or retrying task and return it."""
        if not is_uuid(task_id):
            raise errors.TaskNotFound(task_id)
        keys = self.locate(task_id)
        if keys is None:
            raise errors.TaskNotFound(task_id)
        self.run_script("cancel", keys.seq, [task_id])
        return self.get(task_id)

    # -- worker hot path ---------------------------------------------------

    def dequeue(self, worker_id: str, priorities: Iterable[int]) -> Job | str:
        """Start the best pending task, or say why not (EMPTY, PAUSED, UNREGISTERED)."""
        got = self.take(worker_id, priorities, 1)
        return got[0] if isinstance(got, list) else got

    def take(self, worker_id: str, priorities: Iterable[int], n: int,
             skip: Keys | None = None) -> list[Job] | str:
        """Start up to ``n`` of the best pending tasks (at least one), or say why none:
        the served queues' shards are asked in :meth:`take_order` until one has work."""
        order = sorted(priorities, reverse=True)
        primary = self.primary
        why = EMPTY
        for keys in self.take_order():
            if keys is skip:
                continue
            got = _taken(self.run_script("dequeue", keys.pending, [worker_id, n, *order]), keys)
            if isinstance(got, list) or got == PAUSED:
                return got
            if got == UNREGISTERED and keys is primary:
                why = UNREGISTERED  # elsewhere: a queue found since the last heartbeat
        return why

    def _wait_keys(self, worker_id: str, priorities: Iterable[int], paused: bool,
                   timeout: float) -> tuple[list[str], float]:
        """The keys an idle slot blocks on (its worker's wake list last), and for how long.

        On a Redis Cluster one blocking pop watches one slot: the primary shard's lists,
        for at most a quarter second when other shards are served too."""
        primary = self.primary
        keys = [primary.worker_wake(worker_id)]
        if paused:
            return keys, timeout
        shards = self.served()
        if self.cluster:
            if len(shards) > 1:
                timeout = min(timeout, 0.25)
            shards = [primary]
        notify = [key for shard in shards for key in shard.notify_keys(priorities)]
        return notify + keys, timeout

    def wait_for_work(self, worker_id: str, priorities: Iterable[int], timeout: float,
                      paused: bool = False) -> bool:
        """Block until a wake-up token arrives (or timeout); True when woken."""
        keys, timeout = self._wait_keys(worker_id, priorities, paused, timeout)
        with redis_errors():
            return self.blocking_client.blpop(keys, timeout=max(timeout, 0.01)) is not None

    def wait_and_take(self, worker_id: str, priorities: Iterable[int], timeout: float, n: int,
                      paused: bool = False) -> tuple[bool, list[Job] | str]:
        """Block until a wake-up token arrives (or timeout), then take up to ``n`` tasks, in
        one round trip: the take is pipelined behind the blocking pop, so Redis runs it the
        moment the token arrives, without waiting for the client to ask.  Returns whether
        the worker's own wake list (a stop, or a resume) woke it, and what the take got."""
        keys, timeout = self._wait_keys(worker_id, priorities, paused, timeout)
        order = self.take_order(peek=False)
        if len(order) > 1 or self.cluster:  # the take asks several shards: after the wait
            with redis_errors():
                popped = self.blocking_client.blpop(keys, timeout=max(timeout, 0.01))
            by_worker = isinstance(popped, (list, tuple)) and popped[0] == keys[-1]
            return by_worker, self.take(worker_id, priorities, n)
        shard = order[0]
        prios = sorted(priorities, reverse=True)
        with redis_errors():
            pipe = self.blocking_client.pipeline(transaction=False)
            pipe.blpop(keys, timeout=max(timeout, 0.01))
            self.scripts.queue("dequeue", shard.pending, [worker_id, n, *prios], pipe)
            popped, reply = pipe.execute(raise_on_error=False)
        by_worker = isinstance(popped, (list, tuple)) and popped[0] == keys[-1]
        if isinstance(reply, Exception):  # e.g. the code is not loaded (Redis restarted)
            if isinstance(reply, (redis.ConnectionError, redis.TimeoutError)):
                raise errors.BrokerUnavailable(str(reply))
            return by_worker, self.take(worker_id, priorities, n)
        return by_worker, _taken(reply, shard)

    def ack(self, attempt: Attempt, worker_id: str, result_json: str,
            duration: float = 0.0) -> Outcome:
        """Complete an attempt; raises :class:`StaleLease` if the lease was lost."""
        args = self._ack_args(attempt, worker_id, result_json, duration)
        return _acked(self.run_script("ack", self._attempt_shard(attempt).pending, args))

    def fail(self, attempt: Attempt, worker_id: str, error: str, permanent: bool = False,
             duration: float | None = None) -> Outcome:
        """End a failed attempt; the retry policy decides what comes next.

        ``duration`` is the handler's run time, None when unknown (the slot died).
        """
        args = self._fail_args(attempt, worker_id, error, permanent, duration)
        return _failed(self.run_script("fail", self._attempt_shard(attempt).pending, args))

    def _attempt_shard(self, attempt: Attempt) -> Keys:
        return self.shard(getattr(attempt, "where", ""))

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
        prios = sorted(priorities, reverse=True)
        groups: dict[str, list[int]] = {}
        for i, e in enumerate(ended):
            groups.setdefault(e.job.where, []).append(i)
        order = self.take_order() if want else []
        # The common case, one shard: its outcomes and the next take in one call.
        first = order[0] if order else None
        together = first is not None and (not groups or list(groups) == [first.ref])
        outcomes: list[Outcome | None] = [None] * len(ended)
        nxt: list[Job] | str = []
        for where, indexes in groups.items():
            keys = self.shard(where)
            args: list[Any] = [worker_id, random.randrange(1 << 30), len(indexes)]
            for i in indexes:
                e = ended[i]
                spent = "" if e.duration is None else f"{e.duration:.6f}"
                args.extend((e.job.id, e.job.fence, e.kind, e.value, spent))
            args.extend((want if together else 0, *prios))
            replies, taken = self.run_script("finish", keys.pending, args)
            for i, reply in zip(indexes, replies, strict=True):
                outcomes[i] = _outcome(ended[i].kind, reply)
            if together and taken[0] != "none":
                nxt = _taken(taken, keys)
        if want and not together:
            nxt = self.take(worker_id, priorities, want)
        elif together and nxt in (EMPTY, UNREGISTERED) and len(order) > 1:
            nxt = self.take(worker_id, priorities, want, skip=first)
        elif together and not groups:
            nxt = self.take(worker_id, priorities, want)
        return outcomes, nxt

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

    # -- progress of running attempts (progress.py) ---------------------------

    def progress(self, attempt: Attempt, done: float, total: float | None,
                 message: str) -> int:
        """Record a running attempt's progress (values checked by :mod:`.progress`) and send
        its task.progress event; returns the time written (ms).  Raises
        :class:`StaleLease` when the attempt lost its lease."""
        from .progress import number_arg

        keys = self._attempt_shard(attempt)
        args = [attempt.id, attempt.fence, number_arg(done), number_arg(total), message]
        return int(self.run_script("progress", keys.task(attempt.id), args))

    def requeue(self, task_id: str, worker_id: str, fence: str, where: str = "") -> None:
        """Put a running task back at its place in line without counting the attempt."""
        self.run_script("requeue", self.shard(where).pending, [task_id, worker_id, fence])

    def heartbeat(self, worker_id: str, fields: dict[str, Any],
                  running: Sequence[tuple[str, ...]], first: bool = False) -> Beat:
        """Refresh the worker's record in every shard it serves and its running tasks'
        leases; put back orphans.  ``running`` holds (task id, fence[, shard ref]).

        ``first`` marks a worker process's first beat: tasks still running under its id
        belong to an earlier process with that id, which died; they fail as 'worker lost'.
        """
        by_shard: dict[str, list[tuple[str, str]]] = {}
        for task_id, fence, *rest in running:
            by_shard.setdefault(rest[0] if rest else "", []).append((task_id, fence))
        shards = {k.ref: k for k in self.served()}
        for where in by_shard:
            shards.setdefault(where, self.shard(where))
        paused = False
        lost: list[tuple[str, str]] = []
        orphaned: list[str] = []
        for where, keys in shards.items():
            args: list[Any] = [worker_id, "1" if first else "0", len(fields)]
            for name, value in fields.items():
                args.extend((name, value))
            for task_id, fence in by_shard.get(where, ()):
                args.extend((task_id, fence))
            reply = self.run_script("heartbeat", keys.workers, args)
            n_lost = int(reply[1])
            items = [str(x) for x in reply[2:]]
            lost += [tuple(item.split(" ", 1)) for item in items[:n_lost]]  # type: ignore[misc]
            orphaned += items[n_lost:]
            paused = paused or bool(int(reply[0]))
        return Beat(paused, lost, orphaned)

    def is_paused(self, worker_id: str) -> bool:
        """True when an operator paused this worker."""
        with redis_errors():
            return bool(self.client.sismember(self.primary.paused_workers, worker_id))

    def claim_depth_report(self, period: float) -> bool:
        """True for the one caller per period, cluster-wide, that should report depths."""
        with redis_errors():
            return bool(self.client.set(self.keys.depth_lock, "1", nx=True,
                                        px=int(period * 1000)))

    def deregister(self, worker_id: str) -> bool:
        """Remove a worker from the registry of every shard; True if it was registered."""
        gone = [bool(self.run_script("deregister", keys.workers, [worker_id]))
                for keys in self.all_shards()]
        return any(gone)

    # -- background loops --------------------------------------------------

    def promote(self, limit: int = 1000) -> tuple[int, float | None]:
        """Move due scheduled/retrying tasks to pending in every served shard; return (moved,
        seconds to the next due task)."""
        total, wait = 0, None
        for keys in self.served():
            moved, wait_ms = self.run_script("promote", keys.schedule_wake, [limit])
            total += int(moved)
            if int(wait_ms) >= 0:
                wait = int(wait_ms) / 1000 if wait is None else min(wait, int(wait_ms) / 1000)
        return total, wait

    def wait_for_schedule(self, timeout: float) -> None:
        """Block until a task is delayed or retried, or until timeout (on a Redis Cluster
        serving several shards, at most a second: one blocking pop watches one slot)."""
        shards = self.served()
        if self.cluster:
            if len(shards) > 1:
                timeout = min(timeout, 1.0)
            shards = shards[:1]
        with redis_errors():
            self.blocking_client.blpop([k.schedule_wake for k in shards],
                                       timeout=max(timeout, 0.01))

    def recover(self, limit: int = 1000) -> tuple[list[Recovered], list[str]]:
        """Fail attempts whose lease expired and drop dead workers, in every served shard;
        return both (a worker dropped from several shards is named once)."""
        tasks: list[Recovered] = []
        workers: list[str] = []
        for keys in self.served():
            reply = self.run_script("recover", keys.workers, [limit, random.randrange(1 << 30)])
            n_tasks, rest = int(reply[0]), reply[2:]
            tasks += [Recovered(str(rest[i]), _failed(rest[i + 1:i + 7]))
                      for i in range(0, 7 * n_tasks, 7)]
            workers += [str(w) for w in rest[7 * n_tasks:] if str(w) not in workers]
        return tasks, workers

    def trim_dlq(self, batch: int = 500) -> tuple[int, int]:
        """Delete the oldest dead-letter entries and their task records beyond
        ``dlq_max_entries`` and ``dlq_max_age``, at most ``batch`` of them; return how many
        went over each bound (count, age)."""
        max_age = self.config.dlq_max_age
        args = [self.config.dlq_max_entries or 0, int(max_age * 1000) if max_age else 0, batch]
        total_count = total_age = 0
        for keys in self.served():  # each queue shard keeps its own dead letters
            by_count, by_age, _ = self.run_script("dlq_trim", keys.dlq, args)
            total_count, total_age = total_count + int(by_count), total_age + int(by_age)
        return total_count, total_age

    def wake_worker(self, worker_id: str, slots: int) -> None:
        """Wake a worker's idle slots (used on shutdown so they notice at once)."""
        key = self.primary.worker_wake(worker_id)
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(key, *(["1"] * max(slots, 1)))
            pipe.pexpire(key, 60_000)
            pipe.execute()

    def control(self, target: str, ident: str | int, action: str) -> None:
        """Pause or resume a worker, a priority (in every queue) or a named queue
        (target ``named``) in every shard it has."""
        if target == "named":
            queue = str(ident)
            with redis_errors():
                if action == "pause":
                    self.client.sadd(self.keys.paused_named, queue)
                else:
                    self.client.srem(self.keys.paused_named, queue)
            for keys in self.queue_shards(queue):
                self.run_script("control", keys.workers, ["queue", "q", action])
            return
        if target == "worker":
            found = False
            for keys in self.all_shards():
                try:
                    self.run_script("control", keys.workers, [target, ident, action])
                    found = True
                except errors.WorkerNotFound:
                    continue  # a worker registers only in the shards it serves
            if not found:
                raise errors.WorkerNotFound(str(ident))
            return
        for keys in self.all_shards():
            self.run_script("control", keys.workers, [target, ident, action])


@dataclass(frozen=True)
class Ended:
    """The outcome of one attempt a slot ran, as :meth:`Broker.finish` records it: kind 'ok'
    (value is the result JSON), 'retry' or 'permanent' (value is the error), or 'requeue'
    (never started: back in line, uncounted)."""

    job: Job
    kind: str
    value: str = ""
    duration: float | None = 0.0


def _slot_owners(client: Any) -> list[tuple[int, int, str]]:
    """The cluster's slot ranges and the address of the master serving each."""
    ranges = client.cluster_slots(target_nodes=client.get_random_node())
    return [(int(low), int(high), "{}:{}".format(*about["primary"]))
            for (low, high), about in ranges.items()]


def _owner(owners: list[tuple[int, int, str]], slot: int) -> str:
    return next((owner for low, high, owner in owners if low <= slot <= high), "")


TAKEN = 12
"""Values per task in a take's reply (see take in scripts/lib.lua)."""


def _taken(reply: list[Any], keys: Keys) -> list[Job] | str:
    """The tasks a dequeue on that shard handed out, or why none."""
    if reply[0] != "task":
        return str(reply[0])
    return [Job.from_reply(["task", *reply[2 + TAKEN * i:2 + TAKEN * (i + 1)]], keys.queue,
                           keys.shard) for i in range(int(reply[1]))]


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


def _unique_keys(specs: Sequence[TaskSpec], scope: str) -> list[str]:
    """Each task's unique key scoped to the caller ('' for none); [] when no task has one."""
    if all(spec.unique_key is None for spec in specs):
        return []
    return [scoped(scope, spec.unique_key) if spec.unique_key is not None else ""
            for spec in specs]


def _created(spec: TaskSpec, now: int, owner: str) -> Task:
    due = spec.scheduled_at_ms
    if due is None and spec.delay_ms is not None:
        due = now + spec.delay_ms
    scheduled = due is not None and due > now
    return quick_task(
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
        queue=spec.queue,
    )

