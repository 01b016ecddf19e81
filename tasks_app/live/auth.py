"""Credentials for ``/ws``: browsers cannot set headers, so keys and tokens also come
as a query parameter (``?api_key=`` / ``?token=``) or a subprotocol
(``apikey.<key>`` / ``bearer.<token>``).  A ``token`` that is not a JWT is an API key.

A socket is authenticated when it opens and again while it stays open (see
:func:`recheck`): at its credential's expiry and every ``WS_REAUTH_INTERVAL`` seconds.
The dashboard's :class:`SocketToken` opens ``/ws`` only, with the Django session it was
issued for; from then on that session is the credential.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from typing import Any, cast
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.http import HttpRequest
from django.http.cookie import parse_cookie
from django.utils.crypto import constant_time_compare, salted_hmac
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import Token

from tasks_app import permissions
from tasks_app.api.authentication import looks_like_jwt
from tasks_app.conf import tq_settings
from tasks_app.live import publisher

EXPIRY_SLACK = 0.05  # wake just after ``exp``: PyJWT treats exp == now as expired
SESSION_CLAIM = "sid"


class SocketToken(Token):
    """The dashboard's pass to ``/ws``: short-lived, bound to a Django session, and refused
    by the REST API (whose JWT authentication takes ``access`` tokens only)."""

    token_type = "ws"
    lifetime = timedelta(seconds=90)


@dataclass(frozen=True)
class Grant:
    """Whom a socket serves, until when its credential holds, and the session it lives on."""

    principal: Any = None  # a KeyPrincipal or a user; None while auth is off
    expires_at: float | None = None  # epoch seconds (a JWT's exp, a database key's expiry)
    session: str | None = None  # a dashboard socket's session digest (see session_digest)

    def recheck_in(self) -> float | None:
        """Seconds until the credential must be checked again; None: never (auth off)."""
        if self.principal is None:
            return None
        interval = float(tq_settings.WS_REAUTH_INTERVAL)
        if self.expires_at is None:
            return interval
        return max(0.0, min(interval, self.expires_at - time.time() + EXPIRY_SLACK))


OPEN = Grant()


def session_digest(session_key: str) -> str:
    """What a socket token carries instead of the session key (64 hex digits)."""
    # The salt keeps the module's first name: a new one would change every digest.
    return salted_hmac("tasks_app.ws_auth.session", session_key, algorithm="sha256").hexdigest()


def socket_token(user: Any, session_key: str) -> str:
    """A :class:`SocketToken` for ``user`` signed in with the session ``session_key``."""
    token = SocketToken.for_user(user)
    token[SESSION_CLAIM] = session_digest(session_key)
    return str(token)


def credentials(scope: dict[str, Any]) -> tuple[str | None, str | None]:
    """(api key, JWT) offered by the client, from headers, query or subprotocols."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1")
               for k, v in scope.get("headers", [])}
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    key = headers.get("x-api-key") or (query.get("api_key") or [None])[0]
    token = (query.get("token") or [None])[0]
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    for proto in scope.get("subprotocols", []):
        if proto.startswith("apikey."):
            key = proto[len("apikey."):]
        elif proto.startswith("bearer."):
            token = proto[len("bearer."):]
    if token and not looks_like_jwt(token):
        key, token = key or token, None
    return key, token


def session_key(scope: dict[str, Any]) -> str | None:
    """The Django session cookie the browser sent with the handshake."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"cookie":
            return parse_cookie(value.decode("latin-1")).get(settings.SESSION_COOKIE_NAME)
    return None


def _key_grant(key: str) -> Grant | None:
    from tasks_app.api.authentication import database_principal, settings_principal

    principal = settings_principal(key) or database_principal(key)
    if principal is None:
        return None
    return Grant(principal, principal.expires.timestamp() if principal.expires else None)


def _jwt_grant(token: str) -> Grant | None:
    from rest_framework_simplejwt.exceptions import AuthenticationFailed

    from tasks_app.api.authentication import BearerAuthentication

    auth = BearerAuthentication()  # its get_user makes the REST API's token check
    try:
        validated = auth.get_validated_token(token.encode())
        user = auth.get_user(validated)
    except (TokenError, AuthenticationFailed):
        return None
    if not (user and user.is_active):
        return None
    return Grant(user, float(validated["exp"]))


def _session_grant(key: str | None, digest: str, user_id: str) -> Grant | None:
    """The grant of a staff user holding the dashboard's permissions and still signed in
    with session ``key`` (hashing to ``digest``), or None once that session ended."""
    from django.contrib.auth import get_user

    if not key or not constant_time_compare(session_digest(key), digest):
        return None
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    user = get_user(request)
    same = str(getattr(user, jwt_settings.USER_ID_FIELD, None)) == user_id
    if not (same and user.is_active and user.is_staff and user.has_perms(permissions.DASHBOARD)):
        return None
    return Grant(user, None, digest)


def _token_grant(token: str, key: str | None) -> Grant | None:
    try:
        socket = SocketToken(cast(Any, token))  # simplejwt's hint says Token; it takes str
    except TokenError:
        return _jwt_grant(token) if tq_settings.AUTH_JWT else None
    return _session_grant(key, str(socket.get(SESSION_CLAIM, "")),
                          str(socket.get(jwt_settings.USER_ID_CLAIM, "")))


@database_sync_to_async
def _check(scope: dict[str, Any], previous: Grant | None) -> Grant | None:
    if previous is not None and previous.session is not None:
        user_id = str(getattr(previous.principal, jwt_settings.USER_ID_FIELD, ""))
        return _session_grant(session_key(scope), previous.session, user_id)
    key, token = credentials(scope)
    if key and tq_settings.AUTH_API_KEYS:
        grant = _key_grant(key)
        if grant is not None:
            return grant
    return _token_grant(token, session_key(scope)) if token else None


async def authenticate_scope(scope: dict[str, Any]) -> Grant | None:
    """The socket's grant (:data:`OPEN` while auth is off), or None without valid credentials."""
    if not tq_settings.AUTH_ENABLED:
        return OPEN
    grant: Grant | None = await _check(scope, None)
    return grant


def signed_out(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """``user_logged_out``: close that session's dashboard sockets in every web process."""
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        publisher.end_session(session_digest(key))


async def recheck(scope: dict[str, Any], grant: Grant) -> Grant | None:
    """The grant again, or None once its key was revoked or expired, its JWT expired, its
    user was deactivated, or (a dashboard socket) its session ended."""
    if grant.principal is None:
        return grant
    again: Grant | None = await _check(scope, grant)
    return again
