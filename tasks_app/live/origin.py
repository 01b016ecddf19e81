"""Origin check for ``/ws``: browsers must come from a page of an allowed host."""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings

from tasks_app.conf import tq_settings


class BrowserOriginValidator(OriginValidator):
    """Like Channels' AllowedHostsOriginValidator, but a client that sends no Origin
    (not a browser, so not open to cross-site WebSocket hijacking) may connect;
    authentication still applies to it."""

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        """No Origin is fine; a present one must match ALLOWED_HOSTS or be one of
        TASKQUEUE['CORS_ALLOWED_ORIGINS'] (scheme, host and port)."""
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin)) or cors_allowed(parsed_origin)


def cors_allowed(origin: ParseResult) -> bool:
    """True when the origin is in the CORS allow-list."""
    text = f"{origin.scheme}://{origin.netloc}".lower()
    return any(text == allowed.lower() for allowed in tq_settings.CORS_ALLOWED_ORIGINS)


def origin_checked(application: Any) -> BrowserOriginValidator:
    """Wrap an ASGI app with the origin check against settings.ALLOWED_HOSTS."""
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, hosts)
