"""Failed logins counted per username and per client address in Redis, shared by every process.

Each login attempt reserves one unit on both counters *before* the password is
hashed; past either limit the answer is 429 at once (no hashing).  A wrong
password keeps its unit, any other outcome gives it back.  Windows are fixed: a
counter's TTL is set when its first unit is taken and never extended, so a
username is blocked for at most LOGIN_FAILURE_WINDOW seconds after its first
counted failure, whoever keeps failing.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from rest_framework.exceptions import Throttled
from rest_framework.request import Request

from tasks_app.api.errors import classify, json_error
from tasks_app.conf import tq_settings
from tasks_app.connection import get_broker
from tasks_app.core.broker import redis_errors
from tasks_app.core.errors import BrokerUnavailable


def username_ident(username: str) -> str:
    """A bounded key part for attacker-controlled text: SHA-256 of the NFKC-casefolded name."""
    folded = unicodedata.normalize("NFKC", username).casefold()
    return hashlib.sha256(folded.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def address_ident(request: Request | HttpRequest) -> str:
    """The peer address as the server reports it (REMOTE_ADDR; X-Forwarded-For is not read)."""
    return str(request.META.get("REMOTE_ADDR") or "unknown")[:64]


def username_of(data: Any, field: str) -> str | None:
    """The username as the credentials serializer will read it (None when it cannot)."""
    value = data.get(field) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


@dataclass(frozen=True)
class LoginCounters:
    """The Redis counters (key, limit) one login attempt is counted on."""

    counters: tuple[tuple[str, int], ...]

    @classmethod
    def for_attempt(cls, request: Request | HttpRequest, username: str | None
                    ) -> LoginCounters:
        """The per-address counter and, when the username is readable, the per-username one."""
        keys = get_broker().keys
        found: list[tuple[str, int]] = []
        per_address = tq_settings.LOGIN_MAX_FAILURES_PER_ADDRESS
        if per_address is not None:
            found.append((keys.login_failures("address", address_ident(request)), per_address))
        per_username = tq_settings.LOGIN_MAX_FAILURES_PER_USERNAME
        if per_username is not None and username is not None:
            found.append((keys.login_failures("username", username_ident(username)),
                          per_username))
        return cls(tuple(found))

    def reserve(self) -> None:
        """Take one unit on each counter; Throttled (429) when one is past its limit."""
        if not self.counters:
            return
        window = tq_settings.LOGIN_FAILURE_WINDOW
        client = get_broker().client
        with redis_errors():
            pipe = client.pipeline(transaction=True)
            for key, _ in self.counters:
                pipe.set(key, 0, ex=window, nx=True)
                pipe.incr(key)
                pipe.pttl(key)
            replies = pipe.execute()
            waits: list[float] = []
            for index, (key, limit) in enumerate(self.counters):
                count, ttl_ms = int(replies[3 * index + 1]), int(replies[3 * index + 2])
                if ttl_ms < 0:  # left without a TTL by a crash between release's steps
                    client.expire(key, window)
                    ttl_ms = window * 1000
                if count > limit:
                    waits.append(ttl_ms / 1000)
        if waits:
            self.release()
            raise Throttled(wait=max(waits))

    def release(self) -> None:
        """Give the units back (the attempt was not a wrong password)."""
        if not self.counters:
            return
        client = get_broker().client
        with redis_errors():
            pipe = client.pipeline(transaction=True)
            for key, _ in self.counters:
                pipe.decr(key)
                pipe.pttl(key)
            replies = pipe.execute()
            for index, (key, _) in enumerate(self.counters):
                if int(replies[2 * index + 1]) < 0:  # the window ended: DECR made a new key
                    client.delete(key)


def throttled_login(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A sign-in form view (the Django admin's ``admin.site.login``) on the same counters as
    ``POST /api/v1/auth/token``: a POST past a limit is a 429 before any password is
    checked, and a POST that does not sign a user in (the form shown again) keeps its unit."""

    @wraps(view)
    def login(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        field = get_user_model().USERNAME_FIELD
        attempt = LoginCounters.for_attempt(request, username_of(request.POST, field))
        try:
            attempt.reserve()
        except (Throttled, BrokerUnavailable) as exc:
            status, message, headers = classify(exc)
            refusal = json_error(status, message)
            for name, value in headers.items():
                refusal[name] = value
            return refusal
        response = view(request, *args, **kwargs)
        if response.status_code in (301, 302, 303):  # signed in (a wrong password shows the
            attempt.release()  # form again, even to a session already signed in)
        return response

    return login
