"""Loads the Lua scripts in ``scripts/`` and turns their replies into results.

Each script is sent as: the key header from :class:`Keys`, the config header,
``lib.lua``, then the script itself.  ``TQ:<CODE>`` error replies become the
typed exceptions of :mod:`.errors` here and nowhere else.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import redis
from redis.cluster import RedisCluster
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
    # periodic schedules (schedules.py)
    "schedule_save",
    "schedule_fire",
    # running tasks report progress (progress.py)
    "progress",
    # chains and groups (workflows.py)
    "workflow_create",
    "workflow_cancel",
    # per-type limits (limits.py)
    "limits",
    # the namespace's queue registry (broker.register_queue)
    "queue_register",
)
NOTIFY_CAP = 64
WORKFLOW_MAX_HANDED_ON = 64 * 1024 * 1024
"""The most bytes of results one workflow may copy into the steps after them (a result of
R bytes with N steps waiting on it copies R x N): past it the workflow fails at the step
whose result would pass it (lib.lua, wf_done), before anything is copied."""

_ERRORS: dict[str, type[errors.TaskQueueError]] = {
    "NOT_FOUND": errors.TaskNotFound,
    "STALE": errors.StaleLease,
    "QUEUE_FULL": errors.QueueFull,
    "NOT_CANCELLABLE": errors.NotCancellable,
    "WORKER_NOT_FOUND": errors.WorkerNotFound,
    "SCHEDULE_NOT_FOUND": errors.ScheduleNotFound,
    "SCHEDULE_CHANGED": errors.ScheduleChanged,
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
        "CFG_WF_MAX_HANDED_ON": WORKFLOW_MAX_HANDED_ON,
        "CFG_EVENTS_CHANNEL": config.events_channel,
    }
    return "".join(f"local {name} = {_lua(value)}\n" for name, value in values.items())


def _lua(value: object) -> str:
    return lua_str(value) if isinstance(value, str) else repr(value)


def _header(keys: Keys, config: Config) -> str:
    return keys.lua_header() + config_header(config) + metrics.lua_header() + _read("lib")


def source(name: str, keys: Keys, config: Config) -> str:
    """The full text sent to Redis for one script (EVAL)."""
    return ("redis.replicate_commands()\n" + _header(keys, config) + "\nfresh(KEYS[1])\n"
            + _read(name))


def library(keys: Keys, config: Config) -> tuple[str, str]:
    """The function library holding every script (Redis 7+): its name and its code.

    The name carries a digest of the code, so a namespace or a setting baked into the
    scripts gets its own library and processes with different versions never mix.
    """
    body = [_header(keys, config)]
    digest = hashlib.sha1("".join([body[0], *map(_read, NAMES)]).encode()).hexdigest()[:16]
    name = f"tq_{digest}"
    for script in NAMES:
        body.append(f"redis.register_function('{name}_{script}', function(KEYS, ARGV)\n"
                    f"fresh(KEYS[1])\n{_read(script)}\nend)")
    return name, f"#!lua name={name}\n" + "\n".join(body)


class Scripts:
    """The scripts of one namespace and config, callable by name.

    On Redis 7 and later they are one function library (``FCALL``): the shared helpers are
    defined once when the library loads, not on every call as with ``EVAL``, which takes
    a third off a short script's cost.  On Redis 6.2 (no functions) they run with
    ``EVALSHA``.  Either way the code is loaded on first use and again whenever the server
    lost it (a restart without persistence, ``FUNCTION FLUSH``, ``SCRIPT FLUSH``).

    On a Redis Cluster a call goes to the node of its key (redis-py reads the key of FCALL
    and EVALSHA from ``numkeys``) and the code is loaded on that node when it lacks it.
    """

    def __init__(self, client: Any, keys: Keys, config: Config) -> None:
        self._client = client
        self._keys, self._config = keys, config
        self._scripts: dict[str, Script] | None = None
        self._library: tuple[str, str] | None = None
        self.functions: bool | None = None
        """True once the server ran a function, False if it has none (Redis 6.2)."""

    @property
    def library_name(self) -> str:
        """The name of the function library these scripts load as (Redis 7+)."""
        if self._library is None:
            self._library = library(self._keys, self._config)
        return self._library[0]

    def __call__(self, name: str, key: str, args: list[Any], client: Any = None) -> Any:
        """Run a script (FCALL or EVALSHA, loading it when missing) and map TQ errors."""
        client = client or self._client
        try:
            if self.functions is not False:
                reply = self._fcall(client, name, key, args)
                if reply is not _NO_FUNCTIONS:
                    return reply
            return self._evalsha(name)(keys=[key], args=args, client=client)
        except redis.ResponseError as exc:
            raise translate(exc) from None

    def queue(self, name: str, key: str, args: list[Any], pipe: Any) -> None:
        """Add a call of the script to a pipeline, in the form the server last answered
        (FCALL, or EVALSHA); a reply saying the code is missing is the caller's to handle
        (a direct call loads it)."""
        if self.functions:
            pipe.execute_command("FCALL", f"{self.library_name}_{name}", 1, key, *args)
        else:
            pipe.evalsha(self._evalsha(name).sha, 1, key, *args)

    def _fcall(self, client: Any, name: str, key: str, args: list[Any]) -> Any:
        lib_name = self.library_name
        code = self._library[1] if self._library else ""
        try:
            reply = client.execute_command("FCALL", f"{lib_name}_{name}", 1, key, *args)
        except redis.ResponseError as exc:
            message = str(exc)
            if "unknown command" in message.lower():
                self.functions = False
                return _NO_FUNCTIONS
            if "function not found" not in message.lower():
                raise
            try:
                client.execute_command("FUNCTION", "LOAD", "REPLACE", code, **_at_key(client, key))
            except redis.ResponseError as load_error:
                if "unknown command" in str(load_error).lower():
                    self.functions = False
                    return _NO_FUNCTIONS
                raise
            reply = client.execute_command("FCALL", f"{lib_name}_{name}", 1, key, *args)
        self.functions = True
        return reply

    def load(self, client: Any) -> None:
        """Load the code on the server ``client`` reaches (the library, or each script where
        the server has no functions), so that calls queued in a pipeline find it."""
        if self.functions is not False:
            try:
                client.execute_command("FUNCTION", "LOAD", "REPLACE", self._library_code())
                self.functions = True
                return
            except redis.ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                self.functions = False
        for name in NAMES:
            client.script_load(self._evalsha(name).script)

    def _library_code(self) -> str:
        self.library_name  # noqa: B018  (builds the library)
        assert self._library is not None
        return self._library[1]

    def _evalsha(self, name: str) -> Script:
        if self._scripts is None:
            self._scripts = {n: self._client.register_script(source(n, self._keys, self._config))
                             for n in NAMES}
        return self._scripts[name]


_NO_FUNCTIONS = object()


def _at_key(client: Any, key: str) -> dict[str, Any]:
    """On a Redis Cluster, send to the node serving ``key`` (the one that lacks the code):
    redis-py would send FUNCTION LOAD to every primary and fail if one is down."""
    if isinstance(client, RedisCluster):
        return {"target_nodes": client.get_node_from_key(key)}
    return {}


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
