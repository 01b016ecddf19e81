"""Credentials for ``/ws``: browsers cannot set headers, so keys and tokens also come
as a query parameter (``?api_key=`` / ``?token=``) or a subprotocol
(``apikey.<key>`` / ``bearer.<token>``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from tasks_app.conf import tq_settings


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
    return key, token


def _key_ok(key: str) -> bool:
    from tasks_app.api.authentication import database_principal, settings_principal

    return (settings_principal(key) or database_principal(key)) is not None


def _token_ok(token: str) -> bool:
    from rest_framework_simplejwt.exceptions import AuthenticationFailed, TokenError

    from tasks_app.api.authentication import BearerAuthentication

    auth = BearerAuthentication()  # its get_user makes the REST API's token check
    try:
        user = auth.get_user(auth.get_validated_token(token.encode()))
    except (TokenError, AuthenticationFailed):
        return False
    return bool(user and user.is_active)


@database_sync_to_async
def _check(key: str | None, token: str | None) -> bool:
    if key and tq_settings.AUTH_API_KEYS and _key_ok(key):
        return True
    return bool(token and tq_settings.AUTH_JWT and _token_ok(token))


async def authenticate_scope(scope: dict[str, Any]) -> bool:
    """True when auth is off, or the client offered a valid API key or JWT."""
    if not tq_settings.AUTH_ENABLED:
        return True
    key, token = credentials(scope)
    return bool(await _check(key, token))
