"""Every Redis key name the queue uses, in one place.

All keys of one namespace share the hash tag ``{namespace}`` so that every
script touches a single Redis Cluster slot.  The Lua scripts get the same
names through :meth:`Keys.lua_header`, never by spelling them out.
"""

from __future__ import annotations

from collections.abc import Iterable

PRIORITIES = (0, 1, 2, 3)
BAND = 1 << 50
"""Pending-set scores: ``(3 - priority) * BAND + sequence`` (see :meth:`Keys.pending`)."""


def pending_band(priority: int) -> tuple[int, int]:
    """The lowest and highest pending-set score a task of that priority can have."""
    low = (3 - priority) * BAND
    return low, low + BAND - 1


class Keys:
    """Key builders for one queue namespace."""

    def __init__(self, namespace: str = "default") -> None:
        if not namespace or any(c in namespace for c in "{}: \t\n"):
            raise ValueError(f"invalid queue namespace {namespace!r}")
        self.namespace = namespace
        self.prefix = f"tq:{{{namespace}}}:"

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

    def rate_limit(self, client: str, window: int) -> str:
        """Counter of one client's requests in one fixed rate-limit window."""
        return f"{self.prefix}ratelimit:{client}:{window}"

    def login_failures(self, kind: str, ident: str) -> str:
        """Counter of failed logins for one username digest or client address (fixed window)."""
        return f"{self.prefix}login-failures:{kind}:{ident}"

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
        """Set of paused priorities."""
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
        """Lua definitions of the same key builders, prepended to every script."""
        p = self.prefix
        return "\n".join(
            [
                f"local PREFIX = {lua_str(p)}",
                "local function k_task(id) return PREFIX .. 'task:' .. id end",
                "local function k_delayed(p) return PREFIX .. 'delayed:' .. p end",
                "local function k_notify(p) return PREFIX .. 'notify:' .. p end",
                "local function k_worker(w) return PREFIX .. 'worker:' .. w end",
                "local function k_worker_active(w)"
                " return PREFIX .. 'worker:' .. w .. ':active' end",
                "local function k_worker_wake(w) return PREFIX .. 'worker:' .. w .. ':wake' end",
                "local function k_idem(key) return PREFIX .. 'idem:' .. key end",
                f"local K_PENDING = {lua_str(self.pending)}",
                f"local K_LEASES = {lua_str(self.leases)}",
                f"local K_WORKERS = {lua_str(self.workers)}",
                f"local K_DLQ = {lua_str(self.dlq)}",
                f"local K_PAUSED = {lua_str(self.paused_queues)}",
                f"local K_PAUSED_WORKERS = {lua_str(self.paused_workers)}",
                f"local K_SEQ = {lua_str(self.seq)}",
                f"local K_FENCE = {lua_str(self.fence)}",
                f"local K_SCHEDULE_WAKE = {lua_str(self.schedule_wake)}",
                f"local K_METRICS = {lua_str(self.metrics)}",
                "",
            ]
        )


def scoped(scope: str, name: str) -> str:
    """``name`` inside ``scope`` as ``<len(scope)>:<scope>:<name>``: the length prefix
    makes the split unambiguous, so no other (scope, name) pair spells the same string."""
    return f"{len(scope)}:{scope}:{name}"


def lua_str(value: str) -> str:
    """A Lua string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
