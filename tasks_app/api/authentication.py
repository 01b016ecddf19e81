"""Who is calling: API keys (X-API-Key) and JWTs (Authorization: Bearer).

Both are off unless TASKQUEUE["AUTH_ENABLED"]; each method has its own switch.
A bearer credential that is not a JWT is taken as an API key (what SDKs send).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed as JWTFailed
from rest_framework_simplejwt.tokens import Token

from tasks_app.api.tokens import token_matches_user
from tasks_app.conf import tq_settings

API_KEY_HEADER = "X-API-Key"
REALM = "taskqueue"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class KeyPrincipal:
    """The caller behind an API key; ``is_staff`` marks an admin key."""

    ident: str
    is_staff: bool
    expires: datetime | None = None  # when a database key's expiry date passes
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False

    @property
    def pk(self) -> str:
        """A stable id for rate limiting and logs (never the key itself)."""
        return self.ident

    def __str__(self) -> str:
        return self.ident


def principal_id(user: Any) -> str:
    """The one name the product gives a caller: ``key:<prefix>`` for an API key,
    ``user:<pk>`` for a JWT (or session) user, ``anonymous`` without a principal."""
    if isinstance(user, KeyPrincipal):
        return user.ident
    if user is None or not user.is_authenticated:
        return ANONYMOUS
    return f"user:{user.pk}"


def is_admin_principal(user: Any) -> bool:
    """True for an admin API key and for a staff or superuser account."""
    return bool(user is not None and user.is_authenticated
                and (getattr(user, "is_staff", False) or getattr(user, "is_superuser", False)))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


@lru_cache(maxsize=8)
def _settings_digests(keys: tuple[str, ...], admin_keys: tuple[str, ...]
                      ) -> tuple[tuple[bytes, bool], ...]:
    """Digests of the keys configured in settings, each with its admin flag."""
    return tuple((_digest(k), True) for k in admin_keys) + tuple((_digest(k), False) for k in keys)


def settings_principal(key: str) -> KeyPrincipal | None:
    """The principal of a key from API_KEYS / ADMIN_API_KEYS, compared in constant time."""
    candidate = _digest(key)
    configured = _settings_digests(tuple(tq_settings.API_KEYS), tuple(tq_settings.ADMIN_API_KEYS))
    found: KeyPrincipal | None = None
    for digest, is_admin in configured:  # no early exit: every key is compared
        if hmac.compare_digest(candidate, digest) and found is None:
            found = KeyPrincipal(f"key:{digest.hex()[:12]}", is_admin)
    return found


def database_principal(key: str) -> KeyPrincipal | None:
    """The principal of a usable key created in the Django admin (stored hashed)."""
    from tasks_app.models import APIKey

    if "." not in key:
        return None
    try:
        record = cast(APIKey, APIKey.objects.get_from_key(key))
    except APIKey.DoesNotExist:
        return None
    if record.has_expired:
        return None
    return KeyPrincipal(f"key:{record.prefix}", bool(record.is_admin), record.expiry_date)


def looks_like_jwt(token: str) -> bool:
    """True for three dot-separated base64url segments whose first is a JSON object."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    head = parts[0] + "=" * (-len(parts[0]) % 4)
    try:
        header = json.loads(base64.urlsafe_b64decode(head))
    except (ValueError, binascii.Error):
        return False
    return isinstance(header, dict)


def bearer_api_key(request: Request) -> str | None:
    """The ``Authorization: Bearer`` credential when it is not a JWT (so an API key)."""
    parts = get_authorization_header(request).split()
    if len(parts) != 2 or parts[0].lower() != b"bearer":
        return None
    credential = parts[1].decode("latin-1")
    return None if looks_like_jwt(credential) else credential


class ApiKeyAuthentication(BaseAuthentication):
    """``X-API-Key: <key>``, or ``Authorization: Bearer <key>``: a key from settings or
    from the database."""

    def authenticate(self, request: Request) -> tuple[KeyPrincipal, None] | None:
        """None without a key; the key's principal; 401 for a key nobody issued."""
        key = request.META.get("HTTP_X_API_KEY")
        if key is None:
            key = bearer_api_key(request)
        if key is None:
            return None
        principal = settings_principal(key) or database_principal(key)
        if principal is None:
            raise AuthenticationFailed("invalid API key")
        return principal, None

    def authenticate_header(self, request: Request) -> str:
        """The challenge sent with a 401."""
        return f'ApiKey realm="{REALM}", header="{API_KEY_HEADER}"'


class BearerAuthentication(JWTAuthentication):
    """``Authorization: Bearer <access token>`` from /api/v1/auth/token (simplejwt)."""

    www_authenticate_realm = REALM

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        """The token's user; 401 with one plain message for any bad token."""
        try:
            return super().authenticate(request)
        except JWTFailed:
            raise AuthenticationFailed("token is invalid or expired") from None

    def get_user(self, validated_token: Token) -> Any:
        """The token's user, if it is active and its auth state is the token's (REST and /ws)."""
        user = super().get_user(validated_token)
        if not token_matches_user(validated_token, user):
            raise JWTFailed("token no longer matches its user", code="user_changed")
        return user


def enabled_authenticators() -> list[BaseAuthentication]:
    """The site's AUTHENTICATION_CLASSES when set (in place of ours, auth on or off), else
    ours that the settings turn on (none while auth is off)."""
    site: tuple[type[BaseAuthentication], ...] | None = tq_settings.AUTHENTICATION_CLASSES
    if site is not None:
        return [authenticator() for authenticator in site]
    if not tq_settings.AUTH_ENABLED:
        return []
    found: list[BaseAuthentication] = []
    if tq_settings.AUTH_API_KEYS:
        found.append(ApiKeyAuthentication())
    if tq_settings.AUTH_JWT:
        found.append(BearerAuthentication())
    return found
