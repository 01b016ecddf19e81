"""System checks for secrets: with auth on, JWTs must be signed with a strong key.

``settings.py`` already refuses to load with ``TASKQUEUE_AUTH_ENABLED=1`` and no
strong ``DJANGO_SECRET_KEY``; these checks cover settings set any other way
(another settings module, ``TASKQUEUE`` edited in code) for ``manage.py check``,
``runserver`` and ``migrate``. Also: DEBUG on, the demo handlers with auth on, and
(``check --deploy``) an API open to anyone.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from tasks_app.conf import tq_settings
from tasks_app.secret_keys import weak_secret_key

MIN_API_KEY_LENGTH = 16


@register(Tags.security)
def check_auth_secrets(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001: weak JWT signing key with auth on; W002: short API keys."""
    try:
        if not tq_settings.AUTH_ENABLED:
            return []
        keys = [*tq_settings.API_KEYS, *tq_settings.ADMIN_API_KEYS]
    except ImproperlyConfigured:
        return []  # a malformed TASKQUEUE is taskqueue.E001/E002 (tasks_app.checks)
    found: list[CheckMessage] = []
    jwt = getattr(settings, "SIMPLE_JWT", {}) or {}
    signing_key = str(jwt.get("SIGNING_KEY") or settings.SECRET_KEY)
    algorithm = str(jwt.get("ALGORITHM", "HS256"))
    reason = weak_secret_key(signing_key) if algorithm.startswith("HS") else None
    if reason:
        found.append(Error(
            f"The JWT signing key (SECRET_KEY) is unsafe with auth on: {reason}.",
            hint="Set DJANGO_SECRET_KEY to a random string of 32+ characters.",
            id="taskqueue.security.E001"))
    short = [k for k in keys if len(k) < MIN_API_KEY_LENGTH]
    if short:
        found.append(Warning(
            f"{len(short)} API key(s) in TASKQUEUE_API_KEYS/TASKQUEUE_ADMIN_API_KEYS are "
            f"shorter than {MIN_API_KEY_LENGTH} characters.",
            hint="Use long random keys (e.g. python -c 'import secrets; "
                 "print(secrets.token_urlsafe(32))').",
            id="taskqueue.security.W002"))
    return found


@register(Tags.security)
def check_debug(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W003: DEBUG on shows tracebacks and settings to any client that meets an error."""
    if not settings.DEBUG:
        return []
    return [Warning(
        "DEBUG is on: error pages show tracebacks, settings and URL patterns to every client.",
        hint="Turn it on only to debug locally (DJANGO_DEBUG=1); leave DJANGO_DEBUG unset "
             "or 0 otherwise.",
        id="taskqueue.security.W003")]


@register(Tags.security)
def check_demo_handlers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W004: the demo handlers (crash, sleep) registered on a site with auth on."""
    try:
        if not (tq_settings.AUTH_ENABLED and tq_settings.DEMO_HANDLERS):
            return []
    except ImproperlyConfigured:
        return []  # a malformed TASKQUEUE is taskqueue.E001/E002 (tasks_app.checks)
    return [Warning(
        "The demo handlers are registered while auth is on: any client with a key can "
        "enqueue 'crash' (kills a worker slot) or 'sleep' (holds one).",
        hint="Set TASKQUEUE_DEMO_HANDLERS=0 (TASKQUEUE['DEMO_HANDLERS'] = False).",
        id="taskqueue.security.W004")]


@register(Tags.security, deploy=True)
def check_open_api(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W005 (check --deploy): auth off and no permission classes of the site's own."""
    try:
        if tq_settings.AUTH_ENABLED or tq_settings.PERMISSION_CLASSES:
            return []
    except ImproperlyConfigured:
        return []  # a malformed TASKQUEUE is taskqueue.E001/E002 (tasks_app.checks)
    return [Warning(
        "The task queue's API is open: with auth off, anyone who reaches it can submit and "
        "cancel tasks, pause queues and workers, and retry or delete the dead-letter queue.",
        hint="Set TASKQUEUE['AUTH_ENABLED'] = True (TASKQUEUE_AUTH_ENABLED=1), or give the "
             "API permission classes of your own in TASKQUEUE['PERMISSION_CLASSES'].",
        id="taskqueue.security.W005")]
