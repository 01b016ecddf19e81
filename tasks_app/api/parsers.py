"""Request parsing and content negotiation: JSON in (size-capped), JSON out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

from tasks_app.api.errors import PayloadTooLarge
from tasks_app.conf import tq_settings
from tasks_app.core.nesting import BODY_ENVELOPE_DEPTH, text_depth, too_deep_message


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def declared_length(meta: Mapping[str, Any]) -> int:
    """The request's Content-Length, 0 when absent or malformed."""
    try:
        return int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def check_body_depth(raw: bytes) -> None:
    """Refuse, before decoding, a body that is not JSON or nests too deeply anywhere."""
    limit = tq_settings.MAX_JSON_DEPTH + BODY_ENVELOPE_DEPTH
    depth = text_depth(raw)
    if depth is None:
        raise ParseError("request body is not valid JSON")
    if depth > limit:
        raise ParseError(too_deep_message("request body", limit))


class BoundedJSONParser(JSONParser):
    """JSON parser that refuses bodies over API_MAX_BODY_BYTES with 413, and bodies
    nesting deeper than MAX_JSON_DEPTH + BODY_ENVELOPE_DEPTH with 400."""

    def parse(self, stream: IO[bytes], media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        """Read at most the configured limit and decode it strictly (no NaN)."""
        limit = tq_settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        if request is not None and declared_length(request.META) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        check_body_depth(raw)
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise ParseError("request body is not valid JSON") from None


class JSONOnlyNegotiation(BaseContentNegotiation):
    """Pick the parser by Content-Type; always answer with the first renderer (JSON)."""

    def select_parser(self, request: Request, parsers: Sequence[BaseParser]) -> BaseParser | None:
        """The parser for the request's media type, or None (415)."""
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request: Request, renderers: Sequence[BaseRenderer],
                        format_suffix: str | None = None) -> tuple[BaseRenderer, str]:
        """JSON whatever the Accept header says."""
        renderer = renderers[0]
        return renderer, str(renderer.media_type)
