"""Does the Redis server keep every key?  The queue's state lives only in Redis, so a server
that evicts keys under memory pressure (``maxmemory-policy`` other than ``noeviction``) can
silently drop tasks, leases or the DLQ.  Used by the worker at startup and by /admin/health."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

SAFE_POLICY = "noeviction"


@dataclass(frozen=True)
class EvictionPolicy:
    """What the server said: its policy ('unknown' when it will not tell) and a warning."""

    policy: str
    warning: str | None


def eviction_policy(client: Any) -> EvictionPolicy:
    """Read ``maxmemory-policy``: ``CONFIG GET`` first, ``INFO memory`` where CONFIG is
    disabled or renamed (managed Redis), 'unknown' when neither answers.  Connection errors
    propagate: the caller knows how it reports an unreachable Redis."""
    policy = _from_config(client) or _from_info(client)
    if policy is None:
        return EvictionPolicy("unknown", None)
    if policy == SAFE_POLICY:
        return EvictionPolicy(policy, None)
    return EvictionPolicy(policy, (
        f"redis maxmemory-policy is {policy}: under memory pressure Redis evicts keys and "
        f"tasks can be lost; set maxmemory-policy {SAFE_POLICY}"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _from_config(client: Any) -> str | None:
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.ResponseError:  # unknown command, NOPERM: CONFIG is off limits
        return None
    for key, value in (reply or {}).items():
        if _text(key) == "maxmemory-policy" and value:
            return _text(value)
    return None


def _from_info(client: Any) -> str | None:
    try:
        info = client.info("memory")
    except redis.ResponseError:
        return None
    value = info.get("maxmemory_policy") if isinstance(info, dict) else None
    return _text(value) if value else None
