"""Django settings for the taskqueue project; everything tunable comes from the environment."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from taskqueue_project.var_files import private_dir, running_redis_url
from tasks_app.core.topology import channel_layer_host
from tasks_app.secret_keys import weak_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def env_bool(text: str) -> bool:
    """Parse "1"/"0" (also true/false, yes/no, on/off) into a bool."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"expected 1 or 0, got {text!r}")


def parse_env(name: str, text: str, parse: Callable[[str], Any]) -> Any:
    """Parse one variable's text, naming the variable if it is malformed."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ImproperlyConfigured(f"Environment variable {name}: {exc}") from exc


def env_list(text: str) -> list[str]:
    """Split a comma-separated value, dropping blanks."""
    return [item.strip() for item in text.split(",") if item.strip()]


def env_queues(text: str) -> dict[str, dict[str, int]]:
    """``emails,default:4``: queue names, each with an optional number of shards."""
    queues: dict[str, dict[str, int]] = {}
    for item in env_list(text):
        name, sep, shards = item.partition(":")
        queues[name.strip()] = {"shards": int(shards)} if sep else {}
    return queues


# (environment variable, TASKQUEUE key, parser); defaults live in tasks_app/conf.py.
TASKQUEUE_ENV: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("REDIS_URL", "REDIS_URL", str),
    ("TASKQUEUE_NAMESPACE", "NAMESPACE", str),
    ("TASKQUEUE_DEFAULT_PRIORITY", "DEFAULT_PRIORITY", int),
    ("TASKQUEUE_DEFAULT_MAX_RETRIES", "DEFAULT_MAX_RETRIES", int),
    ("TASKQUEUE_DEFAULT_TIMEOUT", "DEFAULT_TIMEOUT", int),
    ("TASKQUEUE_RETRY_BACKOFF_BASE", "RETRY_BACKOFF_BASE", float),
    ("TASKQUEUE_RETRY_BACKOFF_FACTOR", "RETRY_BACKOFF_FACTOR", float),
    ("TASKQUEUE_RETRY_BACKOFF_MAX", "RETRY_BACKOFF_MAX", float),
    ("TASKQUEUE_LEASE_SECONDS", "LEASE_SECONDS", float),
    ("TASKQUEUE_HEARTBEAT_INTERVAL", "HEARTBEAT_INTERVAL", float),
    ("TASKQUEUE_HEARTBEAT_TIMEOUT", "HEARTBEAT_TIMEOUT", float),
    ("TASKQUEUE_RECOVERY_INTERVAL", "RECOVERY_INTERVAL", float),
    ("TASKQUEUE_RESULT_TTL", "RESULT_TTL", float),
    ("TASKQUEUE_MAX_PENDING", "MAX_PENDING", int),
    ("TASKQUEUE_MAX_QUEUES", "MAX_QUEUES", int),
    ("TASKQUEUE_MAX_QUEUES_PER_CLIENT", "MAX_QUEUES_PER_CLIENT", int),
    ("TASKQUEUE_SHUTDOWN_GRACE", "SHUTDOWN_GRACE", float),
    ("TASKQUEUE_CONCURRENCY", "CONCURRENCY", int),
    ("TASKQUEUE_DEMO_HANDLERS", "DEMO_HANDLERS", env_bool),
    ("TASKQUEUE_HANDLER_MODULE", "HANDLER_MODULE", str),
    ("TASKQUEUE_AUTH_ENABLED", "AUTH_ENABLED", env_bool),
    ("TASKQUEUE_AUTH_API_KEYS", "AUTH_API_KEYS", env_bool),
    ("TASKQUEUE_AUTH_JWT", "AUTH_JWT", env_bool),
    ("TASKQUEUE_API_KEYS", "API_KEYS", env_list),
    ("TASKQUEUE_ADMIN_API_KEYS", "ADMIN_API_KEYS", env_list),
    ("TASKQUEUE_API_MAX_BODY_BYTES", "API_MAX_BODY_BYTES", int),
    ("TASKQUEUE_HTTP_HEADER_TIMEOUT", "HTTP_HEADER_TIMEOUT", float),
    ("TASKQUEUE_IDEMPOTENCY_TTL", "IDEMPOTENCY_TTL", float),
    ("TASKQUEUE_SUBMIT_RATE_LIMIT", "SUBMIT_RATE_LIMIT", str),
    ("TASKQUEUE_HEALTH_TIMEOUT", "HEALTH_TIMEOUT", float),
    ("TASKQUEUE_EVENTS_ENABLED", "EVENTS_ENABLED", env_bool),
    ("TASKQUEUE_WS_MAX_EVENTS_PER_SECOND", "WS_MAX_EVENTS_PER_SECOND", int),
    ("TASKQUEUE_WS_CLIENT_BUFFER", "WS_CLIENT_BUFFER", int),
    ("TASKQUEUE_METRICS_TOKEN", "METRICS_TOKEN", str),
    ("TASKQUEUE_TASK_VISIBILITY", "TASK_VISIBILITY", str),
    ("TASKQUEUE_PUBLIC_HEALTH", "PUBLIC_HEALTH", env_bool),
    ("TASKQUEUE_ACCEPT_UNKNOWN_TYPES", "ACCEPT_UNKNOWN_TYPES", env_bool),
    ("TASKQUEUE_CORS_ALLOWED_ORIGINS", "CORS_ALLOWED_ORIGINS", env_list),
    ("TASKQUEUE_WS_REAUTH_INTERVAL", "WS_REAUTH_INTERVAL", float),
    ("TASKQUEUE_WS_MAX_SOCKETS_PER_CLIENT", "WS_MAX_SOCKETS_PER_CLIENT", int),
    ("TASKQUEUE_MAX_JSON_DEPTH", "MAX_JSON_DEPTH", int),
    ("TASKQUEUE_LOGIN_MAX_FAILURES_PER_USERNAME", "LOGIN_MAX_FAILURES_PER_USERNAME", int),
    ("TASKQUEUE_LOGIN_MAX_FAILURES_PER_ADDRESS", "LOGIN_MAX_FAILURES_PER_ADDRESS", int),
    ("TASKQUEUE_LOGIN_FAILURE_WINDOW", "LOGIN_FAILURE_WINDOW", int),
    ("TASKQUEUE_DLQ_MAX_ENTRIES", "DLQ_MAX_ENTRIES", int),
    ("TASKQUEUE_DLQ_MAX_AGE", "DLQ_MAX_AGE", float),
    ("TASKQUEUE_PREFETCH", "PREFETCH", int),
    ("TASKQUEUE_AUTHENTICATION_CLASSES", "AUTHENTICATION_CLASSES", env_list),
    ("TASKQUEUE_PERMISSION_CLASSES", "PERMISSION_CLASSES", env_list),
    ("TASKQUEUE_HARDEN_SERVER", "HARDEN_SERVER", env_bool),
    ("TASKQUEUE_DURABILITY", "DURABILITY", str),
    ("TASKQUEUE_REPLICA_TIMEOUT", "REPLICA_TIMEOUT", float),
    ("TASKQUEUE_QUEUES", "QUEUES", env_queues),
    ("TASKQUEUE_SCHEDULES", "SCHEDULES", json.loads),
    ("TASKQUEUE_TYPE_LIMITS", "TYPE_LIMITS", json.loads),
)


def taskqueue_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Build the TASKQUEUE dict from the variables that are set (and not blank)."""
    result: dict[str, Any] = {}
    for name, key, parse in TASKQUEUE_ENV:
        text = environ.get(name, "").strip()
        if not text:
            continue
        result[key] = parse_env(name, text, parse)
    return result


def database_path(environ: Mapping[str, str]) -> Path:
    """Return the SQLite file (DATABASE_PATH or var/db.sqlite3), creating its folder.

    In var/ (0700) a new database file is made 0600 here; SQLite gives its journals that mode.
    """
    path = Path(environ.get("DATABASE_PATH") or VAR_DIR / "db.sqlite3")
    path = path if path.is_absolute() else BASE_DIR / path
    if path.parent != VAR_DIR:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    private_dir(VAR_DIR)
    with contextlib.suppress(FileExistsError, PermissionError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


SECRET_KEY_FILE = "secret_key"  # in var/: the dev key, made once per install, mode 0600


def auth_enabled_in(environ: Mapping[str, str]) -> bool:
    """TASKQUEUE_AUTH_ENABLED as the process's environment sets it."""
    text = environ.get("TASKQUEUE_AUTH_ENABLED", "").strip()
    return bool(text) and bool(parse_env("TASKQUEUE_AUTH_ENABLED", text, env_bool))


def dev_secret_key(var_dir: Path) -> str:
    """A random key kept in var/secret_key (made on first use), for development only.

    A var/ that cannot be written or read (a read-only or foreign-owned directory, as
    in a container running as another user) is a clear ImproperlyConfigured naming
    DJANGO_SECRET_KEY, not a traceback from the filesystem.
    """
    path = var_dir / SECRET_KEY_FILE
    try:
        return _dev_secret_key(path)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is not set and {path} cannot be made or read ({exc}): "
            "set DJANGO_SECRET_KEY") from None


def _dev_secret_key(path: Path) -> str:
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if key:
            return key
        # Another process is writing it right now: wait for it.
        for _ in range(100):
            time.sleep(0.01)
            key = path.read_text().strip()
            if key:
                return key
        raise ImproperlyConfigured(
            f"{path} is empty: delete it or set DJANGO_SECRET_KEY") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def secret_key(environ: Mapping[str, str], var_dir: Path) -> str:
    """DJANGO_SECRET_KEY; without it a per-install random key, but never while auth is on.

    SECRET_KEY signs the JWTs (SIMPLE_JWT's SIGNING_KEY defaults to it), so with
    TASKQUEUE_AUTH_ENABLED=1 it must come from the environment and be strong:
    otherwise the process refuses to start.
    """
    key = environ.get("DJANGO_SECRET_KEY", "").strip()
    if auth_enabled_in(environ):
        if not key:
            raise ImproperlyConfigured(
                "TASKQUEUE_AUTH_ENABLED=1 needs DJANGO_SECRET_KEY (it signs the JWTs): "
                "set it to a random string of 32+ characters")
        reason = weak_secret_key(key)
        if reason:
            raise ImproperlyConfigured(f"DJANGO_SECRET_KEY is unsafe with auth on: {reason}")
    return key or dev_secret_key(var_dir)


SECRET_KEY = secret_key(os.environ, VAR_DIR)
DEBUG = parse_env("DJANGO_DEBUG", os.environ.get("DJANGO_DEBUG") or "0", env_bool)
ALLOWED_HOSTS = env_list(os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]"))

INSTALLED_APPS = [
    "taskqueue_project.apps.AdminConfig",  # the admin, discovered with the URL conf
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",  # revocable refresh tokens
    "django_prometheus",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served by the project, no CDN
    "corsheaders",
    "tasks_app.apps.TasksAppConfig",
    "workers_app.apps.WorkersAppConfig",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "tasks_app.api.middleware.json_errors_middleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "taskqueue_project.urls"
WSGI_APPLICATION = "taskqueue_project.wsgi.application"
ASGI_APPLICATION = "taskqueue_project.asgi.application"


def channel_layers(redis_url: str) -> dict[str, Any]:
    """Live events go through the channels-redis pub/sub layer on the queue's Redis (on a
    Sentinel set: its master; on a Cluster: one node, see docs/topologies.md)."""
    try:
        host = channel_layer_host(redis_url)
    except ValueError:
        host = redis_url  # manage.py check reports the URL (taskqueue.E002)
    return {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # JSON, so the Lua scripts can publish events in the layer's own format.
            "CONFIG": {"hosts": [host], "prefix": "tq-events", "serializer_format": "json"},
        }
    }


# Without REDIS_URL: the embedded Redis of a ./run.sh running from this folder, if any.
LOCAL_REDIS_URL = None if os.environ.get("REDIS_URL") else running_redis_url(VAR_DIR)
CHANNEL_LAYERS = channel_layers(
    os.environ.get("REDIS_URL") or LOCAL_REDIS_URL or "redis://127.0.0.1:6379/0")

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "taskqueue_project" / "templates"],  # the landing page
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": database_path(os.environ),
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOG_LEVEL = os.environ.get("DJANGO_LOG_LEVEL", "INFO").upper()

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # One record, one line: control characters in messages escaped, tracebacks indented
        # (django, daphne and this project's loggers all reach the root's handler).
        "console": {"class": "workers_app.logging.TextFormatter",
                    "format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django": {"level": "INFO", "propagate": True},
        "tasks_app": {"level": LOG_LEVEL, "propagate": True},
        "workers_app": {"level": LOG_LEVEL, "propagate": True},
        "taskqueue_project": {"level": LOG_LEVEL, "propagate": True},
    },
}

# The demo handlers stay off unless asked for (./run.sh asks unless auth is on).
TASKQUEUE = {
    "HARDEN_SERVER": True,  # this site runs daphne: bound bodies, headers and slow readers
    **({"REDIS_URL": LOCAL_REDIS_URL} if LOCAL_REDIS_URL else {}),
    **taskqueue_from_env(os.environ),
}

# Browsers on other origins (TASKQUEUE["CORS_ALLOWED_ORIGINS"], off while empty) may call the
# REST API only: django-cors-headers answers preflights on /api/ and /admin/ (the REST admin;
# the Django admin is /django-admin/) and nowhere else.
CORS_ALLOWED_ORIGINS: list[str] = list(TASKQUEUE.get("CORS_ALLOWED_ORIGINS", []))
CORS_URLS_REGEX = r"^/(api|admin)/" if CORS_ALLOWED_ORIGINS else r"(?!)"
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "x-api-key", "idempotency-key")
CORS_EXPOSE_HEADERS = ("retry-after",)

# Django's Tasks framework (django.tasks on Django 6, the django-tasks backport on 5.2): @task
# functions run on taskqueue's workers.
TASKS: dict[str, Any] = {"default": {"BACKEND": "tasks_app.tasks_framework.TaskQueueBackend"}}
if importlib.util.find_spec("django.tasks") is None and importlib.util.find_spec("django_tasks"):
    INSTALLED_APPS.append("django_tasks")  # the backport's system checks and signal logging

# The REST API (tasks_app/api). Authentication and permissions are chosen per request from
# TASKQUEUE (AUTH_ENABLED, AUTH_API_KEYS, AUTH_JWT), so nothing is listed here.
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["tasks_app.api.parsers.BoundedJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tasks_app.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "UNICODE_JSON": False,  # \u-escape non-ASCII, so text with lone surrogates still renders
}


def env_seconds(name: str, default: int) -> timedelta:
    """A lifetime in whole seconds from the environment."""
    return timedelta(seconds=parse_env(name, os.environ.get(name) or str(default), int))


SIMPLE_JWT: dict[str, Any] = {
    "ACCESS_TOKEN_LIFETIME": env_seconds("TASKQUEUE_JWT_ACCESS_SECONDS", 300),
    "REFRESH_TOKEN_LIFETIME": env_seconds("TASKQUEUE_JWT_REFRESH_SECONDS", 86400),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}

SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "taskqueue API",
    "DESCRIPTION": "Tasks, queues, workers and the dead-letter queue of taskqueue.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tasks_app.api.schema.postprocess",
    ],
}
