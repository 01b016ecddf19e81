"""Loads the Lua scripts in ``scripts/`` and turns their replies into results.

Each script is sent as: the key header from :class:`Keys`, the config header,
``lib.lua``, then the script itself.  ``TQ:<CODE>`` error replies become the
typed exceptions of :mod:`.errors` here and nowhere else.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from . import errors, metrics
from .config import Config
from .keys import Keys, lua_str

NAMES = (
    "enqueue",
    "dequeue",
    "ack",
    "fail",
    "finish",
    "requeue",
    "cancel",
    "promote",
    "recover",
    "heartbeat",
    "deregister",
    "control",
    "dlq_retry",
    "dlq_delete",
    "purge",
    "retry",
    "queue_stats",
    "dlq_trim",
)
NOTIFY_CAP = 64

_ERRORS: dict[str, type[errors.TaskQueueError]] = {
    "NOT_FOUND": errors.TaskNotFound,
    "STALE": errors.StaleLease,
    "QUEUE_FULL": errors.QueueFull,
    "NOT_CANCELLABLE": errors.NotCancellable,
    "WORKER_NOT_FOUND": errors.WorkerNotFound,
}


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text()


def config_header(config: Config) -> str:
    """Lua constants for the tunables the scripts use."""
    values = {
        "CFG_LEASE_MS": int(config.lease_seconds * 1000),
        "CFG_RESULT_TTL_MS": int(config.result_ttl * 1000),
        "CFG_BACKOFF_BASE_MS": int(config.retry_backoff_base * 1000),
        "CFG_BACKOFF_FACTOR": config.retry_backoff_factor,
        "CFG_BACKOFF_MAX_MS": int(config.retry_backoff_max * 1000),
        "CFG_MAX_PENDING": int(config.max_pending),
        "CFG_HEARTBEAT_TIMEOUT_MS": int(config.heartbeat_timeout * 1000),
        "CFG_NOTIFY_CAP": NOTIFY_CAP,
        "CFG_EVENTS_CHANNEL": config.events_channel,
    }
    return "".join(f"local {name} = {_lua(value)}\n" for name, value in values.items())


def _lua(value: object) -> str:
    return lua_str(value) if isinstance(value, str) else repr(value)


def source(name: str, keys: Keys, config: Config) -> str:
    """The full text sent to Redis for one script."""
    header = keys.lua_header() + config_header(config) + metrics.lua_header()
    return header + _read("lib") + "\n" + _read(name)


class Scripts:
    """The registered scripts of one namespace and config, callable by name."""

    def __init__(self, client: redis.Redis, keys: Keys, config: Config) -> None:
        self._scripts: dict[str, Script] = {
            name: client.register_script(source(name, keys, config)) for name in NAMES
        }

    def __call__(
        self,
        name: str,
        key: str,
        args: list[Any],
        client: Any = None,
    ) -> Any:
        """Run a script (EVALSHA, loading it on NOSCRIPT) and map TQ errors."""
        try:
            return self._scripts[name](keys=[key], args=args, client=client)
        except redis.ResponseError as exc:
            raise translate(exc) from None

    def queue(self, name: str, key: str, args: list[Any], pipe: Any) -> None:
        """Add an EVALSHA to a pipeline (no SCRIPT EXISTS round trip).

        A ``NoScriptError`` reply (Redis restarted or flushed its scripts) is
        the caller's to handle: :meth:`rerun` loads and runs the script.
        """
        pipe.evalsha(self._scripts[name].sha, 1, key, *args)

    def rerun(self, name: str, key: str, args: list[Any]) -> Any:
        """Run a script whose pipelined EVALSHA met NOSCRIPT (this call loads it)."""
        return self(name, key, args)


UNAVAILABLE_REPLIES = ("READONLY", "MISCONF", "OOM", "LOADING", "MASTERDOWN", "NOREPLICAS",
                       "CLUSTERDOWN", "BUSY", "TRYAGAIN")
"""Error replies meaning Redis cannot take writes now: retried like a lost connection."""


def translate(exc: Exception) -> Exception:
    """Turn a ``TQ:<CODE> detail`` error reply into the matching typed exception, and the
    replies of a Redis that cannot serve writes now into :class:`BrokerUnavailable`."""
    message = str(exc)
    if message.startswith(UNAVAILABLE_REPLIES):
        return errors.BrokerUnavailable(message)
    if not message.startswith("TQ:"):
        return exc
    code, _, detail = message[3:].partition(" ")
    if code == "NOT_CANCELLABLE":
        return errors.NotCancellable("task cannot be cancelled in current state", detail)
    if code == "NOT_RETRYABLE":
        return errors.NotRetryable("task cannot be retried in current state", detail)
    cls = _ERRORS.get(code, errors.TaskQueueError)
    return cls(detail or code)
