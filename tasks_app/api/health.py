"""Redis health probe on a client of its own: short timeouts, no retries, never hangs."""

from __future__ import annotations

import threading
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tasks_app.conf import tq_settings
from tasks_app.core.redis_policy import EvictionPolicy, eviction_policy
from tasks_app.core.topology import make_client

_lock = threading.Lock()
_clients: dict[tuple[str, float], Any] = {}


def probe_client() -> Any:
    """The cached probe client for the current REDIS_URL and HEALTH_TIMEOUT, on any
    topology (a cluster client is cached only once it could read the slot map)."""
    config = (tq_settings.REDIS_URL, tq_settings.HEALTH_TIMEOUT)
    with _lock:
        client = _clients.get(config)
        if client is None:
            url, timeout = config
            client = make_client(
                url, decode_responses=False, socket_connect_timeout=timeout,
                socket_timeout=timeout, retry=Retry(NoBackoff(), 0),
            )
            _clients[config] = client
        return client


def describe(exc: Exception) -> str:
    """A short lower-case reason, e.g. 'connection refused'."""
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if isinstance(exc, redis.TimeoutError) or "timed out" in text or "timeout" in text:
        return "timed out"
    return text.rstrip(".") or exc.__class__.__name__.lower()


def redis_status() -> str | None:
    """None when Redis answers PING; otherwise why not."""
    try:
        probe_client().ping()
    except (redis.RedisError, OSError) as exc:
        return describe(exc)
    return None


def eviction_warning() -> EvictionPolicy | None:
    """The eviction policy when Redis may evict keys, else None (also when it cannot tell)."""
    try:
        found = eviction_policy(probe_client())
    except (redis.RedisError, OSError):
        return None
    return found if found.warning else None
