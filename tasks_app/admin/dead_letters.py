"""Django admin over the dead-letter queue, which lives in Redis (no copy in SQL).

django-rq's pattern: an unmanaged model (``DeadLetterEntry``) gives the section and its
permissions; ``get_urls`` replaces the ORM views with views that read through the Inspector.
The list reads one page from Redis (``XREVRANGE ... COUNT``, cursor = message id), so its cost
does not grow with the size of the queue. A task id search is a direct lookup; type and reason
filters walk the stream newest first until a page of matches or ``SCAN_LIMIT`` entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from tasks_app import permissions, producer
from tasks_app.admin.support import RedisAdmin, count_of, page_context, redis_required
from tasks_app.core.inspect import DLQ_REASONS, DLQEntry, DLQMatches, Inspector
from tasks_app.core.registry import registry
from tasks_app.core.states import Priority
from tasks_app.core.task import ms_to_datetime
from tasks_app.display import pretty, shown
from tasks_app.models import DeadLetterEntry

PAGE_SIZE = 100
SCAN_LIMIT = 10_000
SHOWN_IN_CONFIRMATION = 100
NOT_SELECTED = ("Items must be selected in order to perform actions on them. "
                "No items have been changed.")


@dataclass(frozen=True)
class BulkAction:
    """One admin action over DLQ entries (the selection, or the whole queue)."""

    label: str
    permission: str
    whole_dlq: bool
    verb: str
    done: str
    run: Callable[[Inspector, list[str]], int]


ACTIONS: dict[str, BulkAction] = {
    "retry_selected": BulkAction("Retry selected tasks", "retry", False, "re-queue", "re-queued",
                                 lambda i, ids: i.dlq_retry_many(ids)),
    "retry_all": BulkAction("Retry all tasks in the dead letter queue", "retry", True,
                            "re-queue", "re-queued", lambda i, ids: i.dlq_retry_all()),
    "delete_selected": BulkAction("Delete selected tasks", "delete", False, "delete",
                                  "deleted", lambda i, ids: i.dlq_delete(ids)),
    "clear_dlq": BulkAction("Clear the dead letter queue (delete all)", "delete", True,
                            "delete", "deleted", lambda i, ids: i.dlq_clear()),
}


@dataclass(frozen=True)
class ListQuery:
    """What the changelist shows: search, filters and the page cursor."""

    q: str = ""
    type: str = ""
    reason: str = ""
    before: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest) -> ListQuery:
        """Read the query string."""
        get = request.GET
        return cls(*(get.get(name, "").strip() for name in ("q", "type", "reason", "before")))

    @property
    def filtered(self) -> bool:
        """True when the list must scan the stream rather than read one page."""
        return bool(self.q or self.type or self.reason)

    def url(self, **changes: str) -> str:
        """This query with ``changes`` (an empty value drops the parameter), as ``?...``."""
        params = {"q": self.q, "type": self.type, "reason": self.reason, "before": self.before}
        params.update(changes)
        return "?" + urlencode({k: v for k, v in params.items() if v})

    def matches(self, fields: dict[str, str]) -> bool:
        """Whether a stream entry's fields pass the search and the filters."""
        needle = self.q.lower()
        return ((not needle or needle in fields.get("type", "").lower()
                 or needle in fields.get("task_id", "").lower())
                and (not self.type or fields.get("type") == self.type)
                and (not self.reason or fields.get("reason") == self.reason))


@dataclass(frozen=True)
class Row:
    """One line of the list."""

    task_id: str
    type: str
    priority: str
    reason: str
    error: str
    attempts: int | None
    added_at: datetime | None


def row_of(entry: DLQEntry) -> Row:
    """The list line of a DLQ entry (stream fields, the task record where they are missing)."""
    priority = entry.task_priority
    return Row(entry.task_id, entry.task_type,
               Priority(priority).label if priority is not None else "",
               entry.reason, entry.error, entry.task_attempts, ms_to_datetime(entry.added_at))


def choices(query: ListQuery, name: str, values: list[str]) -> list[dict[str, Any]]:
    """A filter's links: All, then each value."""
    current = getattr(query, name)
    links = [{"label": "All", "url": query.url(**{name: "", "before": ""}),
              "selected": not current}]
    for value in sorted(set(values) | ({current} if current else set())):
        links.append({"label": value, "url": query.url(**{name: value, "before": ""}),
                      "selected": value == current})
    return links


@admin.register(DeadLetterEntry)
class DeadLetterEntryAdmin(RedisAdmin):
    """List, inspect, retry and delete dead-lettered tasks; the data stays in Redis."""

    change_list_template = "admin/tasks_app/deadletterentry/change_list.html"
    change_form_template = "admin/tasks_app/deadletterentry/entry.html"
    confirmation_template = "admin/tasks_app/deadletterentry/action_confirmation.html"
    view_permission = permissions.DLQ_VIEW

    def extra_urls(self) -> list[URLPattern]:
        """The entry page (retry and delete are actions posted to the list)."""
        wrap = self.admin_site.admin_view
        return [path("<str:object_id>/change/", wrap(self.change_view),
                     name=self.url_name("change"))]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """May delete entries (selected or all)."""
        return request.user.has_perm(permissions.DLQ_DELETE)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        """May re-queue dead-lettered tasks."""
        return request.user.has_perm(permissions.DLQ_RETRY)

    def allowed_actions(self, request: HttpRequest) -> dict[str, BulkAction]:
        """The actions this user may run."""
        allowed = {"retry": self.has_retry_permission(request),
                   "delete": self.has_delete_permission(request)}
        return {name: a for name, a in ACTIONS.items() if allowed[a.permission]}

    @redis_required
    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """GET: one page of entries. POST: an action (confirmation page first)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self.action_view(request)
        query = ListQuery.from_request(request)
        inspector = producer.inspector()
        found, by_id = self.find(inspector, query)
        context = page_context(
            self, request, "Dead letter queue",
            query=query, rows=[row_of(e) for e in found.entries], found=found, by_id=by_id,
            total=inspector.dlq_size(), page_size=PAGE_SIZE, scan_limit=SCAN_LIMIT,
            next_url=query.url(before=found.next_before) if found.next_before else "",
            first_url=query.url(before="") if query.before else "",
            type_choices=choices(query, "type", registry.names()),
            reason_choices=choices(query, "reason", list(DLQ_REASONS)),
            actions=self.allowed_actions(request), **(extra_context or {}))
        return TemplateResponse(request, self.change_list_template, context)

    def find(self, inspector: Inspector, query: ListQuery) -> tuple[DLQMatches, bool]:
        """One page: a direct task-id lookup when ``q`` is an id in the DLQ, else the stream."""
        if query.q and not query.before:
            entry = inspector.dlq_entry(query.q)
            if entry is not None:
                return DLQMatches([entry], None, 1, False), True
        match = query.matches if query.filtered else None
        before = query.before or None
        return inspector.dlq_find(PAGE_SIZE, before, match, scan_limit=SCAN_LIMIT), False

    def action_view(self, request: HttpRequest) -> HttpResponse:
        """Run the posted action after its confirmation page; report how many were affected."""
        name = request.POST.get("action", "")
        action = ACTIONS.get(name)
        if action is None:
            messages.warning(request, "No action selected.")
            return HttpResponseRedirect(self.changelist_url())
        if name not in self.allowed_actions(request):
            raise PermissionDenied
        ids = [] if action.whole_dlq else request.POST.getlist("_selected_action")
        if not action.whole_dlq and not ids:
            messages.warning(request, NOT_SELECTED)
            return HttpResponseRedirect(self.changelist_url())
        inspector = producer.inspector()
        if request.POST.get("post") != "yes":
            return self.confirmation_view(request, name, action, ids, inspector)
        n = action.run(inspector, ids)
        missed = len(ids) - n if ids else 0
        note = f" ({count_of(missed)} no longer in the dead letter queue)" if missed > 0 else ""
        messages.success(request, f"{count_of(n)} {action.done}{note}.")
        return HttpResponseRedirect(self.changelist_url())

    def confirmation_view(self, request: HttpRequest, name: str, action: BulkAction,
                          ids: list[str], inspector: Inspector) -> HttpResponse:
        """Django's intermediate page: what will happen, a form to confirm it."""
        count = inspector.dlq_size() if action.whole_dlq else len(ids)
        context = page_context(
            self, request, "Are you sure?", action_name=name, action=action, ids=ids,
            shown_ids=ids[:SHOWN_IN_CONFIRMATION],
            hidden_count=max(len(ids) - SHOWN_IN_CONFIRMATION, 0), count=count,
            count_text=count_of(count), changelist_url=self.changelist_url())
        return TemplateResponse(request, self.confirmation_template, context)

    @redis_required
    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """An entry's page: payload, metadata, error, attempts and timestamps."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        entry = producer.inspector().dlq_entry(object_id)
        if entry is None:
            messages.warning(request, f"The task “{object_id}” is not in the dead letter queue. "
                                      "Perhaps it was retried or deleted?")
            return HttpResponseRedirect(self.changelist_url())
        context = page_context(
            self, request, f"Dead-lettered task {entry.task_id}", entry=entry, row=row_of(entry),
            task=entry.task, details=self.details(entry),
            error=shown(entry.error),
            payload=pretty(entry.task.payload) if entry.task else "",
            metadata=pretty(entry.task.metadata) if entry.task else "",
            actions=self.allowed_actions(request), changelist_url=self.changelist_url(),
            **(extra_context or {}))
        return TemplateResponse(request, self.change_form_template, context)

    @staticmethod
    def details(entry: DLQEntry) -> list[tuple[str, Any]]:
        """The entry page's label/value lines."""
        row, task = row_of(entry), entry.task
        lines: list[tuple[str, Any]] = [
            ("Task id", entry.task_id), ("Type", row.type), ("Priority", row.priority),
            ("Reason", entry.reason), ("Message id", entry.message_id),
            ("Added to the DLQ", row.added_at)]
        if task is not None:
            lines += [
                ("State", task.state.value), ("Attempts", task.attempts),
                ("Max retries", task.max_retries), ("Timeout (s)", task.timeout),
                ("Last worker", task.worker_id or "—"),
                ("Created", ms_to_datetime(task.created_at)),
                ("Last started", ms_to_datetime(task.started_at)),
                ("Dead since", ms_to_datetime(task.dead_at)),
                ("Updated", ms_to_datetime(task.updated_at))]
        return lines
