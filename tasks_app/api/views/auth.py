"""JWT endpoints (simplejwt): obtain a pair of tokens, refresh an access token, revoke."""

from __future__ import annotations

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed, NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.tokens import RefreshToken, Token
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView, TokenViewBase

from tasks_app.api import docs, tokens
from tasks_app.api.login_throttle import LoginCounters, username_of
from tasks_app.api.serializers import (
    AccessToken,
    Credentials,
    Refresh,
    Revoke,
    Revoked,
    TokenPair,
)
from tasks_app.api.views.base import OwnDRFSettings
from tasks_app.conf import tq_settings

INVALID_TOKEN = "token is invalid or expired"


class AnyText(serializers.CharField):
    """Any string taken as sent: wrong credentials are a 401, never a 400 about their text."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, allow_blank=True, write_only=True, **kwargs)
        validators: list[Any] = self.validators  # type: ignore[has-type]
        self.validators = [v for v in validators
                           if not isinstance(v, ProhibitNullCharactersValidator)]


class CredentialsSerializer(TokenObtainPairSerializer):
    """Username and password, any text; the tokens carry the user's auth stamp."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields[self.username_field] = AnyText()
        self.fields["password"] = AnyText()

    @classmethod
    def get_token(cls, user: Any) -> Token:
        """A refresh token stamped with the user's current auth state."""
        return tokens.refresh_for(user)


def require_current_user(refresh: Token) -> None:
    """401 unless the token's user exists, is active and still has the token's stamp."""
    if not tokens.token_matches_user(refresh, tokens.token_user(refresh)):
        raise AuthenticationFailed(INVALID_TOKEN)


class RefreshSerializer(TokenRefreshSerializer):
    """A refresh token, any text, of a user whose auth state has not changed since."""

    refresh = AnyText()

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        """A new access token; 401 for a deleted, inactive or changed user."""
        require_current_user(self.token_class(attrs["refresh"]))
        return super().validate(attrs)


class RevokeSerializer(serializers.Serializer):
    """A refresh token to blacklist, optionally with all its user's refresh tokens."""

    refresh = AnyText()
    everywhere = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, int]:
        """Blacklist the token(s); 401 for a token that is invalid or already revoked."""
        refresh = RefreshToken(attrs["refresh"])
        if attrs["everywhere"]:
            require_current_user(refresh)
        return {"revoked": tokens.revoke(refresh, everywhere=attrs["everywhere"])}


def require_jwt() -> None:
    """404 while the JWT method is switched off."""
    if not tq_settings.AUTH_JWT:
        raise NotFound("JWT authentication is disabled")


class TokenView(OwnDRFSettings, TokenObtainPairView):
    """`POST /api/v1/auth/token`: username and password -> access and refresh tokens."""

    serializer_class = CredentialsSerializer
    www_authenticate_realm = "taskqueue"

    @extend_schema(operation_id="obtain_token", tags=["auth"], request=Credentials,
                   responses={200: TokenPair, **docs.errors(400, 401, 404, 413, 415, 429, 503)})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A token pair for an active user; 401 for wrong credentials; 429 after too many."""
        require_jwt()
        username = username_of(request.data, CredentialsSerializer.username_field)
        attempt = LoginCounters.for_attempt(request, username)
        attempt.reserve()  # before any password hashing
        try:
            response = super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            raise  # a failed login keeps its count
        except BaseException:
            attempt.release()
            raise
        attempt.release()
        return response


class TokenRefreshingView(OwnDRFSettings, TokenRefreshView):
    """`POST /api/v1/auth/token/refresh`: a refresh token -> a new access token."""

    serializer_class = RefreshSerializer
    www_authenticate_realm = "taskqueue"

    @extend_schema(operation_id="refresh_token", tags=["auth"], request=Refresh,
                   responses={200: AccessToken, **docs.errors(400, 401, 404, 413, 415)})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A new access token; 401 for an invalid, expired or revoked refresh token."""
        require_jwt()
        return super().post(request, *args, **kwargs)


class TokenRevokeView(OwnDRFSettings, TokenViewBase):
    """`POST /api/v1/auth/token/revoke`: blacklist a refresh token (sign out, or everywhere)."""

    serializer_class = RevokeSerializer
    www_authenticate_realm = "taskqueue"

    @extend_schema(operation_id="revoke_token", tags=["auth"], request=Revoke,
                   responses={200: Revoked, **docs.errors(400, 401, 404, 413, 415)})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The number of refresh tokens revoked; 404 without simplejwt's blacklist app."""
        require_jwt()
        if not tokens.blacklist_installed():
            raise NotFound("token revocation needs rest_framework_simplejwt.token_blacklist")
        return super().post(request, *args, **kwargs)
