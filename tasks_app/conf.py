"""The one settings object: ``settings.TASKQUEUE`` read lazily over DEFAULTS."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from tasks_app.core.config import Config
from tasks_app.core.topology import URL_PREFIXES, parse_redis_url
from tasks_app.live.groups import group_channel

DEFAULTS: dict[str, Any] = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "NAMESPACE": "default",
    "DEFAULT_PRIORITY": 0,
    "DEFAULT_MAX_RETRIES": 3,
    "DEFAULT_TIMEOUT": 300,
    "RETRY_BACKOFF_BASE": 1.0,
    "RETRY_BACKOFF_FACTOR": 2.0,
    "RETRY_BACKOFF_MAX": 600.0,
    "LEASE_SECONDS": 30.0,
    "HEARTBEAT_INTERVAL": 5.0,
    "HEARTBEAT_TIMEOUT": 15.0,
    "RECOVERY_INTERVAL": 5.0,
    "RESULT_TTL": 604800.0,
    "MAX_PENDING": 1_000_000,
    "SHUTDOWN_GRACE": 30.0,
    "CONCURRENCY": None,
    "DEMO_HANDLERS": False,  # taskqueue_project turns them on; the package does not ship them
    "HANDLER_MODULE": "handlers",
    "AUTH_ENABLED": False,
    "AUTH_API_KEYS": True,
    "AUTH_JWT": True,
    "API_KEYS": [],
    "ADMIN_API_KEYS": [],
    "API_MAX_BODY_BYTES": 1_048_576,
    "HTTP_HEADER_TIMEOUT": 30.0,
    "IDEMPOTENCY_TTL": 86400.0,
    "SUBMIT_RATE_LIMIT": None,
    "HEALTH_TIMEOUT": 1.0,
    "EVENTS_ENABLED": True,
    "WS_MAX_EVENTS_PER_SECOND": 500,
    "WS_CLIENT_BUFFER": 5000,
    "METRICS_TOKEN": None,
    "TASK_VISIBILITY": "all",
    "PUBLIC_HEALTH": False,
    "ACCEPT_UNKNOWN_TYPES": False,
    "CORS_ALLOWED_ORIGINS": [],
    "WS_REAUTH_INTERVAL": 30.0,
    "MAX_JSON_DEPTH": 64,
    "LOGIN_MAX_FAILURES_PER_USERNAME": 10,
    "LOGIN_MAX_FAILURES_PER_ADDRESS": 50,
    "LOGIN_FAILURE_WINDOW": 900,
    "DLQ_MAX_ENTRIES": 100_000,
    "DLQ_MAX_AGE": 2_592_000.0,
    # The site's own DRF classes for the API, as import strings (None: ours alone).
    "AUTHENTICATION_CLASSES": None,
    "PERMISSION_CLASSES": None,
    "HARDEN_SERVER": False,  # with_taskqueue() patches daphne only when the site asks
    "PREFETCH": 16,
    # Named queues a site declares, with their shards: ["emails", ...] or
    # {"default": {"shards": 4}, "emails": {}}.  Queues used at enqueue are known too.
    "QUEUES": (),
    # "local": a write is acknowledged once the master has it; "replica": once a replica
    # confirms it too (WAIT), or 503 after REPLICA_TIMEOUT seconds.
    "DURABILITY": "local",
    "REPLICA_TIMEOUT": 1.0,
    # Periodic schedules, synced into Redis when a worker starts (settings win for the names
    # they define): {"nightly": {"type": "report", "cron": "0 3 * * *", ...}}.
    "SCHEDULES": (),
    # Per-type limits, written into Redis when a worker starts (a change at run time lasts
    # until the setting changes): {"email": {"concurrency": 5, "rate": "100/s"}}.
    "TYPE_LIMITS": (),
    # Named queues the namespace may hold: a create naming a new queue past it is refused
    # (any client may name a queue; each is a registry entry, series in /metrics and more).
    "MAX_QUEUES": 1000,
    # Of those, how many one caller (an API key or user) may bring into existence: one
    # valid key cannot take every place. Queues named in QUEUES, and the site's own code
    # (tasks_app.producer unless given a caller's scope), count against no caller.
    "MAX_QUEUES_PER_CLIENT": 50,
    # With auth on, the /ws sockets one principal may hold open in one web process (more
    # are closed with 4429): each socket costs the process a buffer and a filter per event.
    "WS_MAX_SOCKETS_PER_CLIENT": 100,
}

# Keys a process's environment supplies when TASKQUEUE leaves them out (in any site):
# TASKQUEUE["REDIS_URL"] wins, then $REDIS_URL, then DEFAULTS.
ENV_FALLBACKS: dict[str, str] = {"REDIS_URL": "REDIS_URL"}

REDIS_SCHEMES = URL_PREFIXES
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MODULE_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
MAX_JSON_DEPTH_CEILING = 500  # well under the recursion limits of Python's own JSON code
RATE_PATTERN = re.compile(r"[1-9]\d*/(s|m|h|d|sec|second|min|minute|hour|day)")

Validator = Callable[[str, Any], Any]


def invalid(key: str, value: Any, expected: str) -> ImproperlyConfigured:
    """Build the error for a bad ``TASKQUEUE[key]``."""
    return ImproperlyConfigured(f"TASKQUEUE[{key!r}] must be {expected}; got {value!r}.")


def integer(minimum: int | None = None, maximum: int | None = None) -> Validator:
    """Accept an int (not a bool) of at least ``minimum`` (and at most ``maximum``)."""
    expected = "an integer" if minimum is None else f"an integer >= {minimum}"
    if maximum is not None:
        expected = f"an integer from {minimum} to {maximum}"

    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(key, value, expected)
        if minimum is not None and value < minimum:
            raise invalid(key, value, expected)
        if maximum is not None and value > maximum:
            raise invalid(key, value, expected)
        return value

    return check


def number(minimum: float = 0.0, *, inclusive: bool = False) -> Validator:
    """Accept an int or float above ``minimum`` (or equal if inclusive), as float."""
    expected = f"a number {'>=' if inclusive else '>'} {minimum:g}"

    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid(key, value, expected)
        too_small = value < minimum if inclusive else value <= minimum
        if too_small:
            raise invalid(key, value, expected)
        return float(value)

    return check


def boolean(key: str, value: Any) -> bool:
    """Accept a bool."""
    if not isinstance(value, bool):
        raise invalid(key, value, "True or False")
    return value


def matching(pattern: re.Pattern[str], expected: str) -> Validator:
    """Accept a str that fully matches ``pattern``."""

    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise invalid(key, value, expected)
        return value

    return check


def redis_url(key: str, value: Any) -> str:
    """Accept a Redis URL of any topology (see core/topology.py); the error names what is
    wrong and never shows the password."""
    if not isinstance(value, str) or not value.startswith(REDIS_SCHEMES):
        shown = value if not isinstance(value, str) else value.partition("://")[0] + "://..."
        raise invalid(key, shown, "a redis://, rediss://, unix://, redis+sentinel:// or "
                                  "redis+cluster:// URL (rediss+ for TLS)")
    try:
        parse_redis_url(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"TASKQUEUE[{key!r}] is not a valid Redis URL: {exc}.") \
            from None
    return value


def optional(validator: Validator) -> Validator:
    """Accept None or whatever ``validator`` accepts."""

    def check(key: str, value: Any) -> Any:
        return None if value is None else validator(key, value)

    return check


def string_list(key: str, value: Any) -> list[str]:
    """Accept a list or tuple of non-empty strings, as a list."""
    ok = isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value)
    if not ok:
        raise invalid(key, value, "a list of non-empty strings")
    return list(value)


ORIGIN_PATTERN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")


def origin_list(key: str, value: Any) -> list[str]:
    """Accept a list of browser origins: scheme://host[:port], no path or trailing slash."""
    origins = string_list(key, value)
    for origin in origins:
        if not ORIGIN_PATTERN.fullmatch(origin):
            raise invalid(key, value, "a list of origins such as 'https://dash.example.com'")
    return origins


def class_list(base: str, composition: str | None = None) -> Validator:
    """Accept a list of import strings naming subclasses of ``base`` (or instances of
    ``composition``: DRF's ``IsAuthenticated & IsX``); the value is the tuple of them."""

    def check(key: str, value: Any) -> tuple[Any, ...]:
        base_class = import_string(base)
        composed = import_string(composition) if composition else ()
        found = []
        for path in string_list(key, value):
            try:
                imported = import_string(path)
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f"TASKQUEUE[{key!r}]: cannot import {path!r} ({exc}).") from exc
            if not (isinstance(imported, type) and issubclass(imported, base_class)
                    or composed and isinstance(imported, composed)):
                raise ImproperlyConfigured(
                    f"TASKQUEUE[{key!r}]: {path!r} is not a subclass of {base}.")
            found.append(imported)
        return tuple(found)

    return check


def queue_map(key: str, value: Any) -> tuple[tuple[str, int], ...]:
    """Accept a list of queue names, or a dict of queue name -> {"shards": 1-64}; the
    value is a tuple of (name, shards)."""
    from tasks_app.core.keys import MAX_SHARDS, valid_queue_name

    expected = ('a list of queue names, or a dict such as {"default": {"shards": 4}} '
                '(names: letters, digits, "_", ".", "-"; at most 64)')
    if isinstance(value, list | tuple):
        value = {name: {} for name in value}
    if not isinstance(value, Mapping):
        raise invalid(key, value, expected)
    out = []
    for name, options in value.items():
        if not valid_queue_name(name) or not isinstance(options, Mapping) \
                or set(options) - {"shards"}:
            raise invalid(key, value, expected)
        shards = options.get("shards", 1)
        if isinstance(shards, bool) or not isinstance(shards, int) \
                or not 1 <= shards <= MAX_SHARDS:
            raise invalid(key, value, f"shards between 1 and {MAX_SHARDS} for queue {name!r}")
        out.append((name, shards))
    return tuple(out)


def schedule_map(key: str, value: Any) -> tuple[Any, ...]:
    """Accept a dict of schedule name -> definition (the fields of the admin API's body,
    without "name"); the value is a tuple of ``ScheduleSpec``.  Types are checked for form
    only: a worker with no handler for one reports it."""
    from tasks_app.core.errors import ValidationError
    from tasks_app.core.registry import HandlerRegistry
    from tasks_app.core.schedules import parse_schedule

    if value in ((), []):
        return ()
    if not isinstance(value, Mapping):
        raise invalid(key, value, "a dict of schedule name -> definition")
    out = []
    defaults = (tq_settings.DEFAULT_PRIORITY, tq_settings.DEFAULT_MAX_RETRIES,
                tq_settings.DEFAULT_TIMEOUT)
    for name, definition in value.items():
        try:
            if not isinstance(definition, Mapping) or "name" in definition:
                raise ValidationError("must be a dict of the schedule's fields, without name",
                                      "name")
            out.append(parse_schedule(definition, HandlerRegistry(), name=name,
                                      accept_unknown=True, defaults=defaults,
                                      max_depth=tq_settings.MAX_JSON_DEPTH))
        except ValidationError as exc:
            raise ImproperlyConfigured(
                f"TASKQUEUE[{key!r}][{name!r}]: {exc.field or 'definition'}: {exc}") from None
    return tuple(out)


def type_limit_map(key: str, value: Any) -> tuple[Any, ...]:
    """Accept a dict of task type -> {"concurrency": n, "rate": "N/s"}; the value is a tuple
    of (type, ``TypeLimit``) pairs."""
    from tasks_app.core.errors import ValidationError
    from tasks_app.core.limits import check_type, parse_limit

    if value in ((), []):
        return ()
    if not isinstance(value, Mapping):
        raise invalid(key, value, "a dict of task type -> limits")
    try:
        return tuple((check_type(name), parse_limit(limit)) for name, limit in value.items())
    except ValidationError as exc:
        raise ImproperlyConfigured(f"TASKQUEUE[{key!r}]: {exc.field}: {exc}") from None


VALIDATORS: dict[str, Validator] = {
    "REDIS_URL": redis_url,
    "NAMESPACE": matching(NAMESPACE_PATTERN, "1-64 characters from A-Z a-z 0-9 _ . -"),
    "DEFAULT_PRIORITY": integer(),
    "DEFAULT_MAX_RETRIES": integer(minimum=0),
    "DEFAULT_TIMEOUT": integer(minimum=1),
    "RETRY_BACKOFF_BASE": number(inclusive=True),
    "RETRY_BACKOFF_FACTOR": number(1.0, inclusive=True),
    "RETRY_BACKOFF_MAX": number(inclusive=True),
    "LEASE_SECONDS": number(),
    "HEARTBEAT_INTERVAL": number(),
    "HEARTBEAT_TIMEOUT": number(),
    "RECOVERY_INTERVAL": number(),
    "RESULT_TTL": number(),
    "MAX_PENDING": integer(minimum=1),
    "SHUTDOWN_GRACE": number(inclusive=True),
    "CONCURRENCY": optional(integer(minimum=1)),
    "DEMO_HANDLERS": boolean,
    "HANDLER_MODULE": matching(MODULE_PATTERN, "a dotted module name"),
    "AUTH_ENABLED": boolean,
    "AUTH_API_KEYS": boolean,
    "AUTH_JWT": boolean,
    "API_KEYS": string_list,
    "ADMIN_API_KEYS": string_list,
    "API_MAX_BODY_BYTES": integer(minimum=1),
    "HTTP_HEADER_TIMEOUT": optional(number()),
    "IDEMPOTENCY_TTL": number(),
    "SUBMIT_RATE_LIMIT": optional(matching(RATE_PATTERN, 'a rate such as "100/s" or "6000/m"')),
    "HEALTH_TIMEOUT": number(),
    "EVENTS_ENABLED": boolean,
    "WS_MAX_EVENTS_PER_SECOND": integer(minimum=1),
    "WS_CLIENT_BUFFER": integer(minimum=10),
    "METRICS_TOKEN": optional(matching(re.compile(r"\S{8,}"), "None or 8+ non-space characters")),
    "TASK_VISIBILITY": matching(re.compile(r"all|owner"), '"all" or "owner"'),
    "PUBLIC_HEALTH": boolean,
    "ACCEPT_UNKNOWN_TYPES": boolean,
    "CORS_ALLOWED_ORIGINS": origin_list,
    "WS_REAUTH_INTERVAL": number(),
    "MAX_JSON_DEPTH": integer(minimum=1, maximum=MAX_JSON_DEPTH_CEILING),
    "LOGIN_MAX_FAILURES_PER_USERNAME": optional(integer(minimum=1)),
    "LOGIN_MAX_FAILURES_PER_ADDRESS": optional(integer(minimum=1)),
    "LOGIN_FAILURE_WINDOW": integer(minimum=1),
    "DLQ_MAX_ENTRIES": optional(integer(minimum=1)),
    "PREFETCH": integer(minimum=1, maximum=16),
    "DLQ_MAX_AGE": optional(number()),
    "AUTHENTICATION_CLASSES": optional(
        class_list("rest_framework.authentication.BaseAuthentication")),
    "PERMISSION_CLASSES": optional(class_list("rest_framework.permissions.BasePermission",
                                              "rest_framework.permissions.OperationHolderMixin")),
    "HARDEN_SERVER": boolean,
    "QUEUES": queue_map,
    "DURABILITY": matching(re.compile(r"local|replica"), '"local" or "replica"'),
    "REPLICA_TIMEOUT": number(),
    "SCHEDULES": schedule_map,
    "TYPE_LIMITS": type_limit_map,
    "MAX_QUEUES": integer(minimum=1),
    "MAX_QUEUES_PER_CLIENT": integer(minimum=1),
    "WS_MAX_SOCKETS_PER_CLIENT": integer(minimum=1),
}

CONFIG_FIELDS = frozenset(field.name for field in fields(Config))


class TaskQueueSettings:
    """Lazy, cached, validated view of ``settings.TASKQUEUE`` over DEFAULTS."""

    def __init__(self, defaults: Mapping[str, Any] = DEFAULTS) -> None:
        self.defaults = dict(defaults)
        self._cached: set[str] = set()
        self._user: dict[str, Any] | None = None

    @property
    def user_settings(self) -> dict[str, Any]:
        """The project's ``TASKQUEUE`` dict, checked for unknown keys."""
        if self._user is None:
            self._user = self._load_user_settings()
        return self._user

    def _load_user_settings(self) -> dict[str, Any]:
        """Read and check ``settings.TASKQUEUE``."""
        user = getattr(settings, "TASKQUEUE", None) or {}
        if not isinstance(user, Mapping):
            raise ImproperlyConfigured("settings.TASKQUEUE must be a dict.")
        unknown = sorted(set(user) - set(self.defaults))
        if unknown:
            raise ImproperlyConfigured(f"Unknown TASKQUEUE keys: {', '.join(unknown)}.")
        return dict(user)

    def __getattr__(self, key: str) -> Any:
        if key not in self.defaults:
            raise AttributeError(f"Invalid TASKQUEUE setting: {key!r}")
        value = VALIDATORS[key](key, self.user_settings.get(key, self.default(key)))
        self._cached.add(key)
        setattr(self, key, value)
        return value

    def default(self, key: str) -> Any:
        """``key``'s value when TASKQUEUE leaves it out: its environment variable, else DEFAULTS."""
        return environ_default(key) or self.defaults[key]

    def reload(self) -> None:
        """Forget cached values so the next read sees the current settings."""
        for key in self._cached:
            delattr(self, key)
        self._cached.clear()
        self._user = None

    def core_config(self) -> Config:
        """Build the core ``Config`` from every key that names one of its fields."""
        values = {
            key.lower(): getattr(self, key) for key in self.defaults if key.lower() in CONFIG_FIELDS
        }
        if values["concurrency"] is None:
            del values["concurrency"]
        if self.EVENTS_ENABLED:
            values["events_channel"] = group_channel()
        check_heartbeat(values["heartbeat_interval"], values["heartbeat_timeout"])
        return Config(**values)


def environ_default(key: str) -> str | None:
    """The environment's value for ``key`` (see ENV_FALLBACKS), or None when unset or blank."""
    name = ENV_FALLBACKS.get(key)
    value = os.environ.get(name, "").strip() if name else ""
    return value or None


def check_heartbeat(interval: float, timeout: float) -> None:
    """Require HEARTBEAT_TIMEOUT to exceed HEARTBEAT_INTERVAL."""
    if timeout <= interval:
        raise ImproperlyConfigured(
            f"TASKQUEUE['HEARTBEAT_TIMEOUT'] ({timeout:g}) must be greater than "
            f"TASKQUEUE['HEARTBEAT_INTERVAL'] ({interval:g})."
        )


tq_settings = TaskQueueSettings()


def reload_tq_settings(*, setting: str, **kwargs: Any) -> None:
    """Reload ``tq_settings`` when ``TASKQUEUE`` changes (override_settings)."""
    if setting == "TASKQUEUE":
        tq_settings.reload()


setting_changed.connect(reload_tq_settings)
