"""JWT endpoints (simplejwt): obtain a token pair, refresh an access token."""

from __future__ import annotations

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from tasks_app.api import docs
from tasks_app.api.serializers import AccessToken, Credentials, Refresh, TokenPair
from tasks_app.api.views.base import OwnDRFSettings
from tasks_app.conf import tq_settings


class AnyText(serializers.CharField):
    """Any string taken as sent: wrong credentials are a 401, never a 400 about their text."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, allow_blank=True, write_only=True, **kwargs)
        validators: list[Any] = self.validators  # type: ignore[has-type]
        self.validators = [v for v in validators
                           if not isinstance(v, ProhibitNullCharactersValidator)]


class CredentialsSerializer(TokenObtainPairSerializer):
    """Username and password, any text."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields[self.username_field] = AnyText()
        self.fields["password"] = AnyText()


class RefreshSerializer(TokenRefreshSerializer):
    """A refresh token, any text."""

    refresh = AnyText()


def require_jwt() -> None:
    """404 while the JWT method is switched off."""
    if not tq_settings.AUTH_JWT:
        raise NotFound("JWT authentication is disabled")


class TokenView(OwnDRFSettings, TokenObtainPairView):
    """`POST /api/v1/auth/token`: username and password -> access and refresh tokens."""

    serializer_class = CredentialsSerializer
    www_authenticate_realm = "taskqueue"

    @extend_schema(operation_id="obtain_token", tags=["auth"], request=Credentials,
                   responses={200: TokenPair, **docs.errors(400, 401, 404, 413, 415)})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A token pair for an active user; 401 for wrong credentials."""
        require_jwt()
        return super().post(request, *args, **kwargs)


class TokenRefreshingView(OwnDRFSettings, TokenRefreshView):
    """`POST /api/v1/auth/token/refresh`: a refresh token -> a new access token."""

    serializer_class = RefreshSerializer
    www_authenticate_realm = "taskqueue"

    @extend_schema(operation_id="refresh_token", tags=["auth"], request=Refresh,
                   responses={200: AccessToken, **docs.errors(400, 401, 404, 413, 415)})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A new access token; 401 for an invalid or expired refresh token."""
        require_jwt()
        return super().post(request, *args, **kwargs)
