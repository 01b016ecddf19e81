"""Plain configuration the core and the worker runtime read (no Django)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .limits import TypeLimit
    from .schedules import ScheduleSpec


def _default_concurrency() -> int:
    """Two slot processes per CPU: slots wait on Redis and I/O, so one per CPU idles."""
    return 2 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class Config:
    """Every tunable of the engine; the Django edge builds it from ``TASKQUEUE``."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "default"
    retry_backoff_base: float = 1.0
    retry_backoff_factor: float = 2.0
    retry_backoff_max: float = 600.0
    lease_seconds: float = 30.0
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 15.0
    recovery_interval: float = 5.0
    result_ttl: float = 7 * 24 * 3600.0
    max_pending: int = 1_000_000
    shutdown_grace: float = 30.0
    concurrency: int = field(default_factory=_default_concurrency)
    events_channel: str = ""
    """Redis pub/sub channel the scripts publish events to ('' = none)."""
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0
    accept_unknown_types: bool = False
    """Tasks of types with no handler may be submitted: a worker fails them for good."""
    dlq_max_entries: int | None = 100_000
    """Dead-letter entries kept; the janitor deletes the oldest beyond (None: no bound)."""
    dlq_max_age: float | None = 30 * 86400.0
    """Seconds a dead-letter entry is kept (None: no bound)."""
    prefetch: int = 16
    """Tasks a worker slot may take in one call while its tasks are short (see slot.py)."""
    durability: str = "local"
    """"local": a write is done when the master has it; "replica": also once a replica
    confirms it (WAIT), for creates, cancels, outcomes and dead-letter operations."""
    replica_timeout: float = 1.0
    """Seconds a "replica" write waits for a replica before it is reported unconfirmed."""
    queues: tuple[tuple[str, int], ...] = ()
    """The configured queues and their number of shards (others have one)."""
    schedules: tuple[ScheduleSpec, ...] = ()
    """The periodic schedules of TASKQUEUE["SCHEDULES"], synced when a worker starts."""
    type_limits: tuple[tuple[str, TypeLimit], ...] = ()
    """The per-type limits of TASKQUEUE["TYPE_LIMITS"], written when a worker starts."""
    max_queues: int = 1000
    """Queues the namespace's registry may hold: a create naming a new one past it is
    refused (any client may name a queue, and each one costs everyone who lists them)."""
    max_queues_per_client: int = 50
    """New queues one caller scope may bring into existence (configured queues and the
    site's own code, ``keys.CODE_SCOPE``, count against nobody), so one key cannot take
    every place."""

    def queue_shards(self, queue: str) -> int:
        """How many shards the configuration gives a queue."""
        return next((n for name, n in self.queues if name == queue), 1)

