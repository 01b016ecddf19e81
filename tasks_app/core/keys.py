"""Every Redis key name the queue uses, in one place.

A namespace holds named queues, and a queue may be split into shards.  Every key of
one shard (its task records included) shares one hash tag, so every script touches a
single Redis Cluster slot and different queues land on different slots:

- shard 0 of the queue ``default``: ``{namespace}`` (the layout before named queues, so
  an upgrade moves nothing);
- shard 0 of any other queue: ``{namespace:queue}``;
- shard ``k > 0`` of a queue: ``{namespace:queue:k}``.

The Lua scripts get the same names through :meth:`Keys.lua_header`, never by spelling
them out: a script works out its shard's prefix from its first key (``fresh``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PRIORITIES = (0, 1, 2, 3)
BAND = 1 << 50
"""Pending-set scores: ``(3 - priority) * BAND + sequence`` (see :meth:`Keys.pending`)."""


def pending_band(priority: int) -> tuple[int, int]:
    """The lowest and highest pending-set score a task of that priority can have."""
    low = (3 - priority) * BAND
    return low, low + BAND - 1


DEFAULT_QUEUE = "default"
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""What a queue name may be (matched whole)."""
MAX_SHARDS = 64


def valid_queue_name(name: object) -> bool:
    """True for a string naming a queue."""
    return isinstance(name, str) and QUEUE_NAME.fullmatch(name) is not None


def shard_tag(namespace: str, queue: str, shard: int, salt: str = "") -> str:
    """The hash tag (without braces) every key of one queue shard shares.  ``salt``
    (shards after the first, on a Redis Cluster) moves the shard to a chosen slot."""
    if queue == DEFAULT_QUEUE and shard == 0:
        return namespace
    return f"{namespace}:{queue}" + (f":{shard}" if shard else "") + (f"~{salt}" if salt else "")


def shard_ref(queue: str, shard: int) -> str:
    """A queue shard named in one string: ``""`` for shard 0 of ``default``, else
    ``queue`` (shard 0) or ``queue#shard``."""
    if shard == 0:
        return "" if queue == DEFAULT_QUEUE else queue
    return f"{queue}#{shard}"


def parse_shard_ref(ref: str) -> tuple[str, int]:
    """The (queue, shard) a :func:`shard_ref` names."""
    if not ref:
        return DEFAULT_QUEUE, 0
    queue, _, shard = ref.partition("#")
    return queue, int(shard or 0)


class Keys:
    """Key builders for one shard of one queue of a namespace."""

    def __init__(self, namespace: str = "default", queue: str = DEFAULT_QUEUE,
                 shard: int = 0, salt: str = "") -> None:
        if not namespace or any(c in namespace for c in "{}: \t\n"):
            raise ValueError(f"invalid queue namespace {namespace!r}")
        if not valid_queue_name(queue):
            raise ValueError(f"invalid queue name {queue!r}")
        if not 0 <= shard < MAX_SHARDS:
            raise ValueError(f"invalid shard {shard!r}")
        self.namespace = namespace
        self.queue = queue
        self.shard = shard
        if salt and (shard == 0 or not salt.isdigit()):
            raise ValueError(f"invalid shard salt {salt!r}")
        self.prefix = f"tq:{{{shard_tag(namespace, queue, shard, salt)}}}:"

    @property
    def ref(self) -> str:
        """This shard named in one string (:func:`shard_ref`)."""
        return shard_ref(self.queue, self.shard)

    def of(self, queue: str, shard: int = 0, salt: str = "") -> Keys:
        """The keys of another queue shard of the same namespace."""
        return Keys(self.namespace, queue, shard, salt)

    @property
    def queue_salts(self) -> str:
        """Hash ``queue#shard`` -> salt: where a sharded queue's shards were placed on a Redis
        Cluster (chosen once, when the queue is first used there; never changed)."""
        return f"tq:{{{self.namespace}}}:queue-salts"

    @property
    def queues(self) -> str:
        """Hash of every queue of the namespace: name -> its number of shards (written when
        a producer or worker first uses the queue; the namespace's home slot)."""
        return f"tq:{{{self.namespace}}}:queues"

    @property
    def queue_creators(self) -> str:
        """Hash caller scope -> how many queues that caller brought into existence (bounded
        by ``MAX_QUEUES_PER_CLIENT``; the namespace's home slot)."""
        return f"tq:{{{self.namespace}}}:queue-creators"

    @property
    def paused_named(self) -> str:
        """Set of queue names paused as a whole (the namespace's home slot; each shard's
        own pause set carries the flag its scripts read)."""
        return f"tq:{{{self.namespace}}}:paused-queues"

    def task(self, task_id: str) -> str:
        """Hash holding one task's fields."""
        return f"{self.prefix}task:{task_id}"

    @property
    def pending(self) -> str:
        """Sorted set of every pending task id, scored ``(3 - priority) * BAND + sequence``:
        the lowest score is the oldest task of the highest priority (one ZPOPMIN takes it)."""
        return f"{self.prefix}pending"

    def delayed(self, priority: int) -> str:
        """Sorted set of scheduled and retrying task ids, scored by due time (ms)."""
        return f"{self.prefix}delayed:{priority}"

    def notify(self, priority: int) -> str:
        """List of wake-up tokens idle workers block on."""
        return f"{self.prefix}notify:{priority}"

    def worker(self, worker_id: str) -> str:
        """Hash describing one registered worker."""
        return f"{self.prefix}worker:{worker_id}"

    def worker_active(self, worker_id: str) -> str:
        """Set of task ids a worker is running."""
        return f"{self.prefix}worker:{worker_id}:active"

    def worker_wake(self, worker_id: str) -> str:
        """List a paused worker's slots block on until resumed."""
        return f"{self.prefix}worker:{worker_id}:wake"

    def idempotency(self, key: str, scope: str) -> str:
        """String holding the task ids an Idempotency-Key created, per caller ``scope``."""
        return f"{self.prefix}idem:{scoped(scope, key)}"

    def unique(self, key: str, scope: str) -> str:
        """String holding the id of the task created under a unique key, per caller
        ``scope``; it expires after the task's unique_for (see unique.py)."""
        return f"{self.prefix}unique:{scoped(scope, key)}"

    def rate_limit(self, client: str, window: int) -> str:
        """Counter of one client's requests in one fixed rate-limit window (no hash tag:
        these keys spread over a cluster)."""
        return f"tq:{self.namespace}:ratelimit:{client}:{window}"

    def login_failures(self, kind: str, ident: str) -> str:
        """Counter of failed logins for one username digest or client address (fixed window).
        All share the hash tag ``{namespace/login}`` (no queue can be named so), because one
        login checks both counters of its username and address in one transaction."""
        return f"tq:{{{self.namespace}/login}}:login-failures:{kind}:{ident}"

    @property
    def leases(self) -> str:
        """Sorted set of running task ids of workers that left the registry, scored by lease
        expiry (ms); a running task of a registered worker is in its active set, and its
        lease is the worker's heartbeat."""
        return f"{self.prefix}leases"

    @property
    def workers(self) -> str:
        """Sorted set of worker ids scored by last heartbeat (ms)."""
        return f"{self.prefix}workers"

    @property
    def dlq(self) -> str:
        """Stream of dead-letter entries."""
        return f"{self.prefix}dlq"

    @property
    def paused_queues(self) -> str:
        """Set of the shard's paused priorities, and ``q`` while its queue is paused."""
        return f"{self.prefix}paused"

    @property
    def paused_workers(self) -> str:
        """Set of paused worker ids (outlives a registry record lost in a Redis outage)."""
        return f"{self.prefix}paused-workers"

    @property
    def seq(self) -> str:
        """Counter giving FIFO order inside a priority."""
        return f"{self.prefix}seq"

    @property
    def fence(self) -> str:
        """Counter handing out one fencing token per started attempt."""
        return f"{self.prefix}fence"

    @property
    def schedule_wake(self) -> str:
        """List the promoter blocks on; pushed when a task is delayed."""
        return f"{self.prefix}schedule-wake"

    @property
    def metrics(self) -> str:
        """Hash of cluster-wide counters and histograms (see metrics.py)."""
        return f"{self.prefix}metrics"

    @property
    def depth_lock(self) -> str:
        """Held for a second by the worker reporting queue depths (one per cluster)."""
        return f"{self.prefix}depth-lock"

    @property
    def depth_last(self) -> str:
        """The queue depths last reported, so unchanged depths are not sent again."""
        return f"{self.prefix}depth-last"

    @property
    def totals_last(self) -> str:
        """The totals last reported (queue.stats)."""
        return f"{self.prefix}totals-last"

    def notify_keys(self, priorities: Iterable[int]) -> list[str]:
        """Wake-up lists for the given priorities, highest first."""
        return [self.notify(p) for p in sorted(priorities, reverse=True)]

    def lua_header(self) -> str:
        """Lua definitions of the same key builders, prepended to every script.

        The names depend on the shard, so they are set per call: ``set_prefix`` takes the
        prefix from the script's first key (every script gets a key of its shard first)."""
        names = {
            "K_PENDING": "pending", "K_LEASES": "leases", "K_WORKERS": "workers",
            "K_DLQ": "dlq", "K_PAUSED": "paused", "K_PAUSED_WORKERS": "paused-workers",
            "K_SEQ": "seq", "K_FENCE": "fence", "K_SCHEDULE_WAKE": "schedule-wake",
            "K_METRICS": "metrics", "K_LIMITS": "limits", "K_RUNNING": "type-running",
            "K_TOKENS": "type-tokens", "K_PARKED": "parked", "K_PARKED_DUE": "parked-due",
        }
        assert all(getattr(self, attr).endswith(":" + suffix) for attr, suffix in (
            ("pending", "pending"), ("leases", "leases"), ("workers", "workers"),
            ("dlq", "dlq"), ("paused_queues", "paused"), ("paused_workers", "paused-workers"),
            ("seq", "seq"), ("fence", "fence"), ("schedule_wake", "schedule-wake"),
            ("metrics", "metrics"), ("limits", "limits"), ("type_running", "type-running"),
            ("type_tokens", "type-tokens"), ("parked_all", "parked"),
            ("parked_due", "parked-due")))
        return "\n".join(
            [
                "local PREFIX, QUEUE",
                f"local {', '.join(names)}",
                "local function set_prefix(key)",
                "  local p = string.match(key, '^tq:{[^}]*}:')",
                "  if p == PREFIX then return end",
                "  PREFIX = p",
                "  local rest = string.match(p, '^tq:{[^:}]*:([^:}]*)')",
                f"  QUEUE = rest or {lua_str(DEFAULT_QUEUE)}",
                *(f"  {name} = p .. {lua_str(suffix)}" for name, suffix in names.items()),
                "end",
                "local function k_task(id) return PREFIX .. 'task:' .. id end",
                "local function k_delayed(p) return PREFIX .. 'delayed:' .. p end",
                "local function k_notify(p) return PREFIX .. 'notify:' .. p end",
                "local function k_worker(w) return PREFIX .. 'worker:' .. w end",
                "local function k_worker_active(w)"
                " return PREFIX .. 'worker:' .. w .. ':active' end",
                "local function k_worker_wake(w) return PREFIX .. 'worker:' .. w .. ':wake' end",
                "local function k_idem(key) return PREFIX .. 'idem:' .. key end",
                "local function k_unique(key) return PREFIX .. 'unique:' .. key end",
                "local function k_workflow(id) return PREFIX .. 'workflow:' .. id end",
                "local function k_workflows() return PREFIX .. 'workflows' end",
                "local function k_workflow_idem(key)"
                " return PREFIX .. 'workflow-idem:' .. key end",
                "local function k_parked(t) return PREFIX .. 'parked:' .. t end",
                "",
            ]
        )

    # -- periodic schedules (see schedules.py) ---------------------------------------------

    @property
    def schedule_names(self) -> str:
        """Hash of every schedule of the namespace: name -> its queue (the home slot; keeps
        names unique across queues)."""
        return f"tq:{{{self.namespace}}}:schedule-names"

    @property
    def schedules(self) -> str:
        """Sorted set of the queue's enabled schedules, scored by next tick (ms); shard 0."""
        return f"{self.prefix}schedules"

    def schedule(self, name: str) -> str:
        """Hash holding one schedule's definition and state (shard 0 of its queue)."""
        return f"{self.prefix}schedule:{name}"

    @property
    def schedules_wake(self) -> str:
        """List the scheduler loops block on; pushed when a schedule is created or changed."""
        return f"{self.prefix}schedules-wake"

    # -- workflows: chains and groups (see workflows.py) ------------------------------------

    def workflow(self, workflow_id: str) -> str:
        """Hash holding one workflow: its state, and per step its body, its count of steps
        still to complete before it starts, its result and the steps waiting on it."""
        return f"{self.prefix}workflow:{workflow_id}"

    @property
    def workflows(self) -> str:
        """Sorted set of the shard's workflow ids scored by creation (ms): the listing."""
        return f"{self.prefix}workflows"

    def workflow_idempotency(self, key: str, scope: str) -> str:
        """String holding the id of the workflow an Idempotency-Key created, per caller
        ``scope`` (apart from the tasks' records: one key may name a task and a workflow)."""
        return f"{self.prefix}workflow-idem:{scoped(scope, key)}"
    # -- per-type limits (see limits.py) ----------------------------------------------------

    @property
    def type_limits(self) -> str:
        """Hash type -> limit spec: the namespace's source of truth (home slot), copied to
        every shard's :attr:`limits`."""
        return f"tq:{{{self.namespace}}}:type-limits"

    @property
    def type_limits_seeded(self) -> str:
        """Hash type -> the spec TASKQUEUE["TYPE_LIMITS"] last wrote (home slot)."""
        return f"tq:{{{self.namespace}}}:type-limits-seeded"

    @property
    def limits(self) -> str:
        """Hash type -> ``concurrency|n|window_ms`` (empty parts: no such limit): the limits
        this shard's take enforces."""
        return f"{self.prefix}limits"

    @property
    def type_running(self) -> str:
        """Hash type -> attempts of a limited type running from this shard (their starts
        counted; a type's field is deleted at 0)."""
        return f"{self.prefix}type-running"

    @property
    def type_tokens(self) -> str:
        """Hash type -> ``tokens|ms``: a rate-limited type's token bucket."""
        return f"{self.prefix}type-tokens"

    def parked(self, task_type: str) -> str:
        """Sorted set of a limited type's pending tasks set aside while it is at its limit,
        scored as in :attr:`pending` (so they go back at their place)."""
        return f"{self.prefix}parked:{task_type}"

    @property
    def parked_all(self) -> str:
        """Sorted set of every parked task of the shard, scored as in :attr:`pending`: what
        the depth counts add to the pending set's."""
        return f"{self.prefix}parked"

    @property
    def parked_due(self) -> str:
        """Sorted set of rate-limited types with parked tasks, scored by when their next
        token is due (ms): promote.lua moves them back then."""
        return f"{self.prefix}parked-due"


CODE_SCOPE = "producer"
"""The caller scope of the site's own Python code (``tasks_app.producer`` when not given
one): trusted, so it is charged for no queue under ``MAX_QUEUES_PER_CLIENT``."""


def queue_charge(scope: str) -> str:
    """Who is charged when a create brings a new queue into existence: the caller, unless
    it is trusted code (``""``: nobody)."""
    return "" if scope == CODE_SCOPE else scope


def scoped(scope: str, name: str) -> str:
    """``name`` inside ``scope`` as ``<len(scope)>:<scope>:<name>``: the length prefix
    makes the split unambiguous, so no other (scope, name) pair spells the same string."""
    return f"{len(scope)}:{scope}:{name}"


def lua_str(value: str) -> str:
    """A Lua string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
