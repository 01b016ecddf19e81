"""What the Django admin pages over Redis share (dead-letter queue, workers, queues): a base
``ModelAdmin`` for lists whose rows live in Redis, and their helpers."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin, messages
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from tasks_app.core.errors import BrokerUnavailable

View = Callable[..., HttpResponse]


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


class RedisAdmin(admin.ModelAdmin):
    """An admin section over an unmanaged model whose rows live in Redis (django-rq's way):
    no add or change forms; ``get_urls`` gives the change list (rendered with
    ``admin/tasks_app/redis_change_list.html`` or a template extending it) plus
    :meth:`extra_urls`, in place of the ORM's views."""

    view_permission = ""

    def get_urls(self) -> list[URLPattern]:
        """The change list and the section's own views; nothing of the ORM's."""
        wrap = self.admin_site.admin_view
        return [path("", wrap(self.changelist_view), name=self.url_name("changelist")),
                *self.extra_urls()]

    def extra_urls(self) -> list[URLPattern]:
        """The section's views besides the change list."""
        return []

    def url_name(self, view: str) -> str:
        """The admin URL name of one of this section's views, e.g. ``..._changelist``."""
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    def changelist_url(self) -> str:
        """This section's list."""
        return reverse(f"admin:{self.url_name('changelist')}", current_app=self.admin_site.name)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Rows come from Redis only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Read-only; changes are the section's own actions, with their own permissions."""
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """May see the list."""
        return request.user.has_perm(self.view_permission)
