"""Django admin over workers, priority queues, named queues, per-type limits and periodic
schedules, whose state lives in Redis (no SQL rows).

django-rq's pattern: unmanaged models give the sections and permissions; ``get_urls``
replaces the ORM views with a list read through the Inspector and POST-only pause/resume.
"""

from __future__ import annotations

import time
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from tasks_app import permissions, producer
from tasks_app.admin.schedules import ScheduleAdmin
from tasks_app.admin.support import RedisAdmin, page_context, redis_required
from tasks_app.core.errors import QueueNotFound, TypeLimitNotFound, ValidationError, WorkerNotFound
from tasks_app.core.keys import valid_queue_name
from tasks_app.core.limits import check_type, parse_limit
from tasks_app.core.states import Priority
from tasks_app.core.task import ms_to_datetime
from workers_app.models import Queue, Schedule, Worker

OPERATIONS = ("pause", "resume")


class RedisListAdmin(RedisAdmin):
    """A read-only list over Redis with pause/resume buttons guarded by one permission."""

    pause_permission = ""
    list_title = ""

    def extra_urls(self) -> list[URLPattern]:
        """The pause/resume endpoint (POST only)."""
        wrap = self.admin_site.admin_view
        return [path("<str:ident>/<str:operation>/", wrap(require_POST(self.control_view)),
                     name=self.url_name("control"))]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nothing to delete."""
        return False

    def has_pause_permission(self, request: HttpRequest) -> bool:
        """May pause and resume."""
        return request.user.has_perm(self.pause_permission)

    def rows(self) -> list[Any]:
        """What the list shows, read from Redis."""
        raise NotImplementedError

    def control(self, ident: str, operation: str) -> str:
        """Pause or resume ``ident``; return the message to show."""
        raise NotImplementedError

    @redis_required
    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The list, with pause/resume buttons for those allowed to use them."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = page_context(self, request, self.list_title, rows=self.rows(),
                               can_pause=self.has_pause_permission(request),
                               **(extra_context or {}))
        return TemplateResponse(request, self.change_list_template or "", context)

    @redis_required
    def control_view(self, request: HttpRequest, ident: str, operation: str) -> HttpResponse:
        """POST: pause or resume, then back to the list with a message."""
        if operation not in OPERATIONS:
            raise PermissionDenied
        if not (self.has_view_permission(request) and self.has_pause_permission(request)):
            raise PermissionDenied
        try:
            messages.success(request, self.control(ident, operation))
        except WorkerNotFound:
            messages.error(request, f"Worker “{ident}” is not registered any more.")
        return HttpResponseRedirect(self.changelist_url())


@admin.register(Worker)
class WorkerAdmin(RedisListAdmin):
    """Live workers: state, heartbeat, active tasks; pause and resume."""

    change_list_template = "admin/workers_app/worker/change_list.html"
    view_permission = permissions.WORKER_VIEW
    pause_permission = permissions.WORKER_PAUSE
    list_title = "Workers"

    def rows(self) -> list[dict[str, Any]]:
        """Live workers, oldest first."""
        now_ms = time.time() * 1000
        return [{"info": w, "started_at": ms_to_datetime(w.started_at),
                 "last_heartbeat": ms_to_datetime(w.last_heartbeat),
                 "heartbeat_age": max(now_ms - (w.last_heartbeat or now_ms), 0) / 1000,
                 "priorities": ", ".join(Priority(p).label for p in w.priorities)}
                for w in producer.inspector().workers()]

    def control(self, ident: str, operation: str) -> str:
        """Pause or resume one worker."""
        inspector = producer.inspector()
        (inspector.pause_worker if operation == "pause" else inspector.resume_worker)(ident)
        return f"Worker “{ident}” {operation}d."


@admin.register(Queue)
class QueueAdmin(RedisListAdmin):
    """Priority queues and named queues: depths and paused flags; pause and resume (the
    same permissions for both, as in the REST API)."""

    change_list_template = "admin/workers_app/queue/change_list.html"
    view_permission = permissions.QUEUE_VIEW
    pause_permission = permissions.QUEUE_PAUSE
    list_title = "Queues"

    def extra_urls(self) -> list[URLPattern]:
        """Pause/resume of a priority, and of a named queue (POST only)."""
        wrap = self.admin_site.admin_view
        return [path("named/<str:ident>/<str:operation>/",
                     wrap(require_POST(self.named_control_view)),
                     name=self.url_name("named_control")),
                path("type-limits/", wrap(require_POST(self.type_limits_view)),
                     name=self.url_name("type_limits")),
                *super().extra_urls()]

    def rows(self) -> list[Any]:
        """One line per priority, highest first."""
        return list(producer.inspector().queue_stats())

    @redis_required
    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The priorities, then every named queue."""
        allowed = self.has_view_permission(request)
        named = producer.named_queues() if allowed else []
        limits = [s.to_dict() for s in producer.type_limits().all()] if allowed else []
        return super().changelist_view(request, {"named": named, "type_limits": limits,
                                                 **(extra_context or {})})

    @redis_required
    def type_limits_view(self, request: HttpRequest) -> HttpResponse:
        """POST: set (``action=set``: type, concurrency, rate) or remove (``action=clear``)
        a type's limits, with the REST API's permissions and validation."""
        if not (self.has_view_permission(request) and self.has_pause_permission(request)):
            raise PermissionDenied
        form = request.POST
        try:
            messages.success(request, change_type_limits(form))
        except ValidationError as exc:
            messages.error(request, f"Limits not changed: {exc}")
        except TypeLimitNotFound:
            messages.error(request, f"“{form.get('type')}” has no limits.")
        return HttpResponseRedirect(self.changelist_url())

    @redis_required
    def named_control_view(self, request: HttpRequest, ident: str,
                           operation: str) -> HttpResponse:
        """POST: pause or resume a named queue, then back to the list with a message."""
        if operation not in OPERATIONS:
            raise PermissionDenied
        if not (self.has_view_permission(request) and self.has_pause_permission(request)):
            raise PermissionDenied
        if not valid_queue_name(ident):
            raise Http404(f"no queue {ident!r}")
        inspector = producer.inspector()
        try:
            (inspector.pause_named_queue if operation == "pause"
             else inspector.resume_named_queue)(ident)
        except QueueNotFound:
            raise Http404(f"no queue {ident!r}") from None
        messages.success(request, f"Named queue “{ident}” {operation}d.")
        return HttpResponseRedirect(self.changelist_url())

    def control(self, ident: str, operation: str) -> str:
        """Pause or resume one priority (by name or number)."""
        try:
            priority = Priority.parse(ident)
        except ValueError:
            raise Http404(f"no priority {ident!r}") from None
        inspector = producer.inspector()
        (inspector.pause_queue if operation == "pause" else inspector.resume_queue)(priority)
        return f"Queue “{priority.label}” {operation}d."


def change_type_limits(form: Any) -> str:
    """Apply the type-limits form of the queue list; return the message to show."""
    task_type = check_type(form.get("type", "").strip())
    if form.get("action") == "clear":
        producer.type_limits().clear(task_type)
        return f"Limits of “{task_type}” removed."
    given: dict[str, Any] = {}
    if form.get("concurrency", "").strip():
        raw = form["concurrency"].strip()
        given["concurrency"] = int(raw) if raw.lstrip("-").isdigit() else raw
    if form.get("rate", "").strip():
        given["rate"] = form["rate"].strip()
    producer.type_limits().set(task_type, parse_limit(given))
    return f"Limits of “{task_type}” set."


admin.site.register(Schedule, ScheduleAdmin)
