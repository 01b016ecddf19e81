"""JWTs that die with the account state they were issued for, and refresh-token revocation.

Every token we issue carries ``auth_stamp``: an HMAC (keyed by SECRET_KEY) of the
user's session auth hash (itself derived from the password hash) and the
``is_active``, ``is_staff`` and ``is_superuser`` flags.  A password change, a
deactivation or a change of staff/superuser status changes the stamp, so every
token issued before it is refused (``token_matches_user``), at most one request later.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.utils.crypto import salted_hmac
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken, Token

STAMP_CLAIM = "auth_stamp"
BLACKLIST_APP = "rest_framework_simplejwt.token_blacklist"


def auth_stamp(user: AbstractBaseUser) -> str:
    """What a token must carry to be valid for ``user`` as the user is now."""
    flags = [getattr(user, name, False) for name in ("is_active", "is_staff", "is_superuser")]
    state = f"{user.get_session_auth_hash()}|{'|'.join(str(bool(f)) for f in flags)}"
    return salted_hmac("tasks_app.api.tokens.auth_stamp", state,
                       algorithm="sha256").hexdigest()[:32]


def token_matches_user(token: Token, user: Any) -> bool:
    """The one check (REST and /ws): an active user whose stamp equals the token's."""
    if user is None or not getattr(user, "is_active", False):
        return False
    claimed = token.get(STAMP_CLAIM)
    return isinstance(claimed, str) and hmac.compare_digest(claimed, auth_stamp(user))


def token_user(token: Token) -> Any:
    """The user a token names, or None (deleted, or no usable id)."""
    user_id = token.get(api_settings.USER_ID_CLAIM)
    if user_id is None:
        return None
    manager = get_user_model()._default_manager
    try:
        return manager.filter(**{api_settings.USER_ID_FIELD: user_id}).first()
    except (ValueError, TypeError, ValidationError):
        return None


def refresh_for(user: AbstractBaseUser) -> RefreshToken:
    """A stamped refresh token (its access tokens inherit the stamp)."""
    token = RefreshToken.for_user(user)
    token[STAMP_CLAIM] = auth_stamp(user)
    return token


def access_for(user: AbstractBaseUser) -> AccessToken:
    """A stamped access token (e.g. for a page's WebSocket)."""
    token = AccessToken.for_user(user)
    token[STAMP_CLAIM] = auth_stamp(user)
    return token


def blacklist_installed() -> bool:
    """Whether the site installed simplejwt's blacklist app (needed to revoke refresh tokens)."""
    return BLACKLIST_APP in settings.INSTALLED_APPS


def revoke(refresh: RefreshToken, *, everywhere: bool = False) -> int:
    """Blacklist ``refresh`` (and every recorded refresh token of its user): how many."""
    from rest_framework_simplejwt.token_blacklist.models import (
        BlacklistedToken,
        OutstandingToken,
    )

    refresh.blacklist()
    if not everywhere:
        return 1
    owner = {f"user__{api_settings.USER_ID_FIELD}": refresh.payload.get(api_settings.USER_ID_CLAIM)}
    outstanding = OutstandingToken.objects.filter(**owner, blacklistedtoken__isnull=True)
    fresh = [BlacklistedToken(token=token) for token in outstanding]
    BlacklistedToken.objects.bulk_create(fresh, ignore_conflicts=True)
    return 1 + len(fresh)
