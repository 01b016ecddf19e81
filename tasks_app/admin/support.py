"""Helpers shared by the Django admin pages over Redis (dead-letter queue, workers, queues)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from django.contrib import admin, messages
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from tasks_app.core.errors import BrokerUnavailable

View = Callable[..., HttpResponse]


def ms_to_datetime(ms: int | None) -> datetime | None:
    """Milliseconds since the epoch as an aware UTC datetime."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def count_of(n: int, noun: str = "task") -> str:
    """``1 task``, ``3 tasks``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def page_context(model_admin: admin.ModelAdmin[Any], request: HttpRequest, title: str,
                 **extra: Any) -> dict[str, Any]:
    """What every admin page needs (site header, sidebar, breadcrumbs) plus ``extra``."""
    opts = model_admin.opts
    return {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "has_view_permission": model_admin.has_view_permission(request),
        **extra,
    }


def redis_required(view: View) -> View:
    """Answer 503 with the admin's look when Redis is down, instead of a server error."""

    @wraps(view)
    def wrapper(model_admin: admin.ModelAdmin[Model], request: HttpRequest, *args: Any,
                **kwargs: Any) -> HttpResponse:
        try:
            return view(model_admin, request, *args, **kwargs)
        except BrokerUnavailable as exc:
            messages.error(request, f"Redis is unavailable: {exc}")
            context = page_context(model_admin, request, "Redis is unavailable")
            return TemplateResponse(request, "admin/tasks_app/redis_unavailable.html", context,
                                    status=503)

    return wrapper
