"""System checks (``manage.py check``): taskqueue's settings and the apps it needs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, reverse

from tasks_app.cli import redact
from tasks_app.conf import DEFAULTS, VALIDATORS, check_heartbeat, environ_default
from tasks_app.core.topology import Kind, RedisTarget, parse_redis_url, reachable_sentinels

PUBSUB_LAYER = "channels_redis.pubsub.RedisPubSubChannelLayer"
SPECTACULAR_SCHEMA = "drf_spectacular.openapi.AutoSchema"
REQUIRED_APPS = (
    ("django.contrib.auth", "users, staff sign-in and JWTs"),
    ("django.contrib.contenttypes", "permissions of the admin sections"),
    ("django.contrib.admin", "the dashboard's sign-in and the DLQ, worker and queue admin"),
    ("rest_framework", "the REST API"),
    ("rest_framework_api_key", "API keys created in the admin"),
    ("drf_spectacular", "the OpenAPI schema and docs pages"),
)
# settings.TASKQUEUE absent (or without REDIS_URL) means $REDIS_URL, else Redis on localhost.
DEFAULT_REDIS = DEFAULTS["REDIS_URL"]


def effective_redis_url(user: Mapping[str, Any]) -> Any:
    """The Redis URL the queue uses: TASKQUEUE's, else $REDIS_URL, else the default."""
    return user.get("REDIS_URL") or environ_default("REDIS_URL") or DEFAULT_REDIS


def user_settings() -> Any:
    """``settings.TASKQUEUE`` as the project wrote it (``{}`` when absent)."""
    return getattr(settings, "TASKQUEUE", None) or {}


@register(Tags.compatibility)
def check_settings(app_configs: Sequence[AppConfig] | None = None,
                   **kwargs: Any) -> list[CheckMessage]:
    """TASKQUEUE must be a dict of known keys with values of the right type."""
    user = user_settings()
    if not isinstance(user, Mapping):
        return [Error("settings.TASKQUEUE must be a dict.", id="taskqueue.E001",
                      hint=f"It is a {type(user).__name__}.")]
    errors: list[CheckMessage] = []
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        errors.append(Error(f"Unknown TASKQUEUE keys: {', '.join(map(str, unknown))}.",
                            id="taskqueue.E001",
                            hint=f"Known keys: {', '.join(DEFAULTS)}."))
    values = {}
    for key, validate in VALIDATORS.items():
        try:
            values[key] = validate(key, user.get(key, DEFAULTS[key]))
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="taskqueue.E002"))
    if "HEARTBEAT_INTERVAL" in values and "HEARTBEAT_TIMEOUT" in values:
        try:
            check_heartbeat(values["HEARTBEAT_INTERVAL"], values["HEARTBEAT_TIMEOUT"])
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="taskqueue.E002"))
    return errors


@register(Tags.compatibility)
def check_redis_url(app_configs: Sequence[AppConfig] | None = None,
                    **kwargs: Any) -> list[CheckMessage]:
    """Say so when no Redis URL is configured and the local default is used."""
    user = user_settings()
    if isinstance(user, Mapping) and user.get("REDIS_URL") or environ_default("REDIS_URL"):
        return []
    return [Warning(f"TASKQUEUE['REDIS_URL'] is not set; using {DEFAULT_REDIS}.",
                    id="taskqueue.W001",
                    hint='Set TASKQUEUE = {"REDIS_URL": "redis://host:6379/0", ...} '
                         'or the REDIS_URL environment variable.')]


@register(Tags.compatibility)
def check_channel_layer(app_configs: Sequence[AppConfig] | None = None,
                        **kwargs: Any) -> list[CheckMessage]:
    """Live events need the channels-redis pub/sub layer (JSON) on the queue's Redis."""
    user = user_settings()
    if not isinstance(user, Mapping) or user.get("EVENTS_ENABLED", True) is False:
        return []
    layer = getattr(settings, "CHANNEL_LAYERS", {}).get("default")
    hint = (f'CHANNEL_LAYERS = {{"default": {{"BACKEND": "{PUBSUB_LAYER}", "CONFIG": '
            '{"hosts": [<the REDIS_URL>], "serializer_format": "json"}}}, '
            'or TASKQUEUE["EVENTS_ENABLED"] = False.')
    if not layer:
        return [Error("TASKQUEUE['EVENTS_ENABLED'] is on but no default channel layer is "
                      "configured.", id="taskqueue.E003", hint=hint)]
    config = layer.get("CONFIG", {})
    if layer.get("BACKEND") != PUBSUB_LAYER or config.get("serializer_format") != "json":
        return [Error("The default channel layer must be channels-redis's pub/sub layer "
                      "with the JSON serializer: the queue's Lua scripts publish into it.",
                      id="taskqueue.E004", hint=hint)]
    return same_redis(config.get("hosts", []), effective_redis_url(user))


def same_redis(hosts: Sequence[Any], redis_url: str) -> list[CheckMessage]:
    """Warn when the layer's hosts all differ from the queue's Redis (its master, on
    Sentinel; one of its nodes, on a Cluster); refuse topology URLs channels-redis cannot
    open."""
    try:
        target = parse_redis_url(str(redis_url))
    except ValueError:
        return []  # taskqueue.E002 or E020
    if any(isinstance(host, str) and "+" in host.partition("://")[0] for host in hosts):
        return [Error("The default channel layer's hosts hold a redis+sentinel:// or "
                      "redis+cluster:// URL, which channels-redis cannot open.",
                      id="taskqueue.E021", hint=LAYER_HOST_HINT)]
    comparable = [h for h in hosts if isinstance(h, str)
                  or isinstance(h, Mapping) and "master_name" in h]
    if not hosts or len(comparable) != len(hosts):
        return []  # other host forms are not compared
    wanted = expected_layer_addresses(target)
    if any(layer_addresses(host) & wanted for host in hosts):
        return []
    return [Warning("The default channel layer's hosts are not the queue's Redis "
                    f"({redact(redis_url)}); task events published there will not reach /ws.",
                    id="taskqueue.W003", hint=LAYER_HOST_HINT)]


LAYER_HOST_HINT = ('"hosts": [tasks_app.core.topology.channel_layer_host(REDIS_URL)] '
                   "gives the entry for any topology (docs/topologies.md).")


def expected_layer_addresses(target: RedisTarget) -> set[Any]:
    """What a layer host on the queue's Redis looks like, as :func:`layer_addresses` says."""
    if target.kind is Kind.SENTINEL:
        return {("sentinel", target.master_name, node) for node in target.nodes}
    if target.kind is Kind.CLUSTER:
        return set(target.nodes)
    return {address(target.url)}


def layer_addresses(host: Any) -> set[Any]:
    """A channel layer host entry reduced to what identifies its Redis."""
    if isinstance(host, Mapping) and "master_name" in host:
        return {("sentinel", host["master_name"], tuple(node))
                for node in host.get("sentinels", ())}
    if isinstance(host, str):
        try:
            return {address(host)}
        except ValueError:
            return set()
    return set()


def address(url: str) -> tuple[str, int | None]:
    """Host and port of a redis:// URL (path for unix://)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return (parts.path, None)
    return (parts.hostname or "", parts.port or 6379)


@register(Tags.compatibility)
def check_topology(app_configs: Sequence[AppConfig] | None = None,
                   **kwargs: Any) -> list[CheckMessage]:
    """A malformed $REDIS_URL (TASKQUEUE's is taskqueue.E002), and a Sentinel set none of
    whose sentinels answers (the queue could not find its master)."""
    user = user_settings()
    if not isinstance(user, Mapping):
        return []
    url = effective_redis_url(user)
    try:
        target = parse_redis_url(str(url))
    except ValueError as exc:
        if user.get("REDIS_URL"):
            return []  # taskqueue.E002
        return [Error(f"$REDIS_URL is not a valid Redis URL: {exc}.", id="taskqueue.E020")]
    if target.kind is Kind.SENTINEL and not reachable_sentinels(target):
        listed = ", ".join(f"{host}:{port}" for host, port in target.nodes)
        return [Error(f"No sentinel of REDIS_URL answers ({listed}): the master "
                      f"'{target.master_name}' cannot be found.", id="taskqueue.E022",
                      hint="Check the hosts and ports, the network, and the sentinels' "
                           "password (add ?sentinel_auth=none when they need none).")]
    return []


@register(Tags.security)
def check_auth(app_configs: Sequence[AppConfig] | None = None,
               **kwargs: Any) -> list[CheckMessage]:
    """With auth on, at least one way to authenticate must exist."""
    user = user_settings()
    if not isinstance(user, Mapping) or user.get("AUTH_ENABLED") is not True:
        return []
    if user.get("AUTHENTICATION_CLASSES"):
        return []  # the site's own classes identify the callers
    key_source = bool(user.get("API_KEYS") or user.get("ADMIN_API_KEYS")
                      or apps.is_installed("rest_framework_api_key"))
    keys = user.get("AUTH_API_KEYS", True) is True and key_source
    jwt = user.get("AUTH_JWT", True) is True and apps.is_installed("django.contrib.auth")
    if keys or jwt:
        return []
    return [Error("TASKQUEUE['AUTH_ENABLED'] is on but no client can authenticate: API keys "
                  "are off or have no source, and JWTs are off.", id="taskqueue.E005",
                  hint="Set AUTH_JWT = True, or AUTH_API_KEYS = True with API_KEYS / "
                       "ADMIN_API_KEYS or rest_framework_api_key in INSTALLED_APPS.")]


@register(Tags.compatibility)
def check_apps(app_configs: Sequence[AppConfig] | None = None,
               **kwargs: Any) -> list[CheckMessage]:
    """The apps taskqueue builds on must be installed."""
    return [Error(f"'{name}' must be in INSTALLED_APPS for taskqueue ({why}).",
                  id="taskqueue.E006")
            for name, why in REQUIRED_APPS if not apps.is_installed(name)]


@register(Tags.urls)
def check_urls(app_configs: Sequence[AppConfig] | None = None,
               **kwargs: Any) -> list[CheckMessage]:
    """The site should include tasks_app.urls (a worker-only settings module may not)."""
    try:
        reverse("taskqueue:metrics")
    except NoReverseMatch:
        return [Warning("tasks_app.urls is not included in the URLconf: no REST API, "
                        "/metrics or dashboard.", id="taskqueue.W002",
                        hint='Add path("queue/", include("tasks_app.urls")) to your urls.')]
    try:
        reverse("admin:index")
    except NoReverseMatch:
        return [Warning("The Django admin's URLs are not included: the dashboard signs staff "
                        "in and links the dead-letter queue through them (without them it "
                        "uses settings.LOGIN_URL and has no DLQ link).", id="taskqueue.W004",
                        hint='Add path("admin/", admin.site.urls) to your urls.')]
    return []


@register(Tags.compatibility)
def check_schema_class(app_configs: Sequence[AppConfig] | None = None,
                       **kwargs: Any) -> list[CheckMessage]:
    """The OpenAPI pages (api/schema/, api/docs/) need drf-spectacular's AutoSchema."""
    from drf_spectacular.openapi import AutoSchema
    from rest_framework.settings import api_settings

    schema_class = api_settings.DEFAULT_SCHEMA_CLASS
    if isinstance(schema_class, type) and issubclass(schema_class, AutoSchema):
        return []
    return [Warning("REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS'] is not drf-spectacular's AutoSchema: "
                    "taskqueue's api/schema/ and api/docs/ pages will fail (the API works).",
                    id="taskqueue.W005",
                    hint=f'REST_FRAMEWORK = {{"DEFAULT_SCHEMA_CLASS": "{SPECTACULAR_SCHEMA}"}}')]


CORS_MIDDLEWARE = "corsheaders.middleware.CorsMiddleware"


@register(Tags.security)
def check_cors(app_configs: Sequence[AppConfig] | None = None,
               **kwargs: Any) -> list[CheckMessage]:
    """TASKQUEUE['CORS_ALLOWED_ORIGINS'] works only through django-cors-headers' middleware
    and settings, which the host site provides."""
    try:
        origins = VALIDATORS["CORS_ALLOWED_ORIGINS"](
            "CORS_ALLOWED_ORIGINS", user_settings().get("CORS_ALLOWED_ORIGINS", []))
    except (ImproperlyConfigured, AttributeError):
        return []  # reported as taskqueue.E001/E002
    if not origins:
        return []
    if CORS_MIDDLEWARE not in settings.MIDDLEWARE:
        return [Error("TASKQUEUE['CORS_ALLOWED_ORIGINS'] is set but django-cors-headers' "
                      "middleware is not installed: browsers on those origins are refused.",
                      id="taskqueue.E008",
                      hint=f'Add "{CORS_MIDDLEWARE}" to MIDDLEWARE, above CommonMiddleware.')]
    missing = [o for o in origins if o not in getattr(settings, "CORS_ALLOWED_ORIGINS", ())]
    if missing:
        return [Warning(f"TASKQUEUE['CORS_ALLOWED_ORIGINS'] lists {', '.join(missing)}, which "
                        "settings.CORS_ALLOWED_ORIGINS lacks: django-cors-headers refuses them.",
                        id="taskqueue.W006",
                        hint='CORS_ALLOWED_ORIGINS = TASKQUEUE["CORS_ALLOWED_ORIGINS"]')]
    return []
