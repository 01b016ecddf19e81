"""Django admin over the periodic schedules, which live in Redis (no copy in SQL).

The unmanaged ``workers_app.Schedule`` model gives the section and its permissions
(``workers_app.admin`` registers :class:`ScheduleAdmin` for it); every
page and action asks for exactly the permissions of the REST route doing the same thing
(``OPERATIONS`` and the views' ``require`` calls), and a definition is validated by the
API's own function (``producer.schedule_spec``), so errors name the same fields.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from tasks_app import permissions, producer
from tasks_app.admin.support import RedisAdmin, page_context, redis_required
from tasks_app.api.authentication import principal_id
from tasks_app.core import errors
from tasks_app.core.schedules import CATCHUP, Schedule
from tasks_app.core.states import Priority, TaskState
from tasks_app.core.task import ms_to_datetime

VIEW = (permissions.SCHEDULE_VIEW,)
OPERATIONS = {
    "pause": (*VIEW, permissions.SCHEDULE_CHANGE),
    "resume": (*VIEW, permissions.SCHEDULE_CHANGE),
    "trigger": (*VIEW, permissions.SCHEDULE_TRIGGER),
}
"""What each POST action needs: the same as ``POST /admin/schedules/{name}/<action>``."""
ADD = (*VIEW, permissions.SCHEDULE_ADD)
CHANGE = (*VIEW, permissions.SCHEDULE_CHANGE)
DELETE = (*VIEW, permissions.SCHEDULE_DELETE)
JSON_FIELDS = ("payload", "args", "kwargs")


class ScheduleForm(forms.Form):
    """A definition's fields as text; ``producer.schedule_spec`` validates them."""

    type = forms.CharField(required=False, help_text="The task type (or fill in task).")
    task = forms.CharField(required=False, label="Django task",
                           help_text="A Django task's path, instead of a type.")
    payload = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}),
                              help_text="JSON object (with type).")
    args = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                           help_text="JSON array (with task).")
    kwargs = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="JSON object (with task).")
    cron = forms.CharField(required=False, help_text="5 fields, e.g. 0 3 * * * (or every).")
    every = forms.CharField(required=False, help_text="Seconds, at least 1 (or cron).")
    timezone = forms.CharField(required=False, initial="UTC", help_text="IANA name for cron.")
    priority = forms.ChoiceField(choices=[(p.label, p.label) for p in reversed(Priority)],
                                 initial="low")
    queue = forms.CharField(required=False, initial="default")
    max_retries = forms.CharField(required=False, label="Max retries")
    timeout = forms.CharField(required=False, label="Timeout (s)")
    catchup = forms.ChoiceField(choices=[(c, c) for c in CATCHUP], initial="latest")
    enabled = forms.BooleanField(required=False, initial=True)

    def body(self) -> dict[str, Any]:
        """The definition as the REST API takes it (empty fields left out)."""
        body: dict[str, Any] = {}
        for name, value in self.cleaned_data.items():
            if isinstance(value, str):
                value = value.strip()
                if not value:
                    continue
            if name in JSON_FIELDS:
                try:
                    value = json.loads(value)
                except ValueError as exc:
                    raise errors.ValidationError(f"{name} is not JSON: {exc}", name) from None
            elif name in ("every", "max_retries", "timeout") and value.lstrip("-").isdigit():
                value = int(value)
            body[name] = value
        return body

    @staticmethod
    def initial_of(sched: Schedule) -> dict[str, Any]:
        """The form's values for a stored schedule."""
        data = {k: v for k, v in sched.spec.definition().items() if v is not None}
        for name in JSON_FIELDS:
            if name in data:
                data[name] = json.dumps(data[name], indent=2)
        return data


def last_task(sched: Schedule, state: str | None) -> dict[str, Any] | None:
    """The last task's id and state, and its page when it has one (its DLQ entry)."""
    if not sched.last_task_id:
        return None
    url = ""
    if state == TaskState.DEAD_LETTER.value:
        url = reverse("admin:tasks_app_deadletterentry_change", args=[sched.last_task_id])
    return {"id": sched.last_task_id, "state": state or "gone", "url": url}


def rows_of(found: list[Schedule]) -> list[dict[str, Any]]:
    """The list's lines (one pipelined read of the last tasks' states)."""
    states = producer.last_task_states(found)
    return [row_of(s, states.get(s.name)) for s in found]


def row_of(sched: Schedule, last_state: str | None) -> dict[str, Any]:
    """One line of the list (and the head of the schedule's page)."""
    spec = sched.spec
    when = f"every {spec.every}s" if spec.every is not None else \
        f"cron {spec.cron} ({spec.timezone})"
    return {"name": sched.name, "queue": spec.queue, "type": spec.type, "task": spec.task,
            "when": when, "next_run_at": None if sched.paused else ms_to_datetime(
                sched.next_run_at),
            "last_run_at": ms_to_datetime(sched.last_run_at),
            "last_task": last_task(sched, last_state),
            "paused": sched.paused, "error": sched.error, "origin": sched.origin}


class ScheduleAdmin(RedisAdmin):
    """List, add, edit, pause, resume, run now and delete periodic schedules."""

    change_list_template = "admin/tasks_app/schedule/change_list.html"
    change_form_template = "admin/tasks_app/schedule/change_form.html"
    delete_confirmation_template = "admin/tasks_app/schedule/delete_confirmation.html"
    view_permission = permissions.SCHEDULE_VIEW

    def extra_urls(self) -> list[URLPattern]:
        """Add, edit, delete (GET asks, POST deletes) and the POST-only actions."""
        wrap = self.admin_site.admin_view
        return [path("add/", wrap(self.add_view), name=self.url_name("add")),
                path("<str:object_id>/change/", wrap(self.change_view),
                     name=self.url_name("change")),
                path("<str:object_id>/delete/", wrap(self.delete_view),
                     name=self.url_name("delete")),
                path("<str:object_id>/<str:operation>/",
                     wrap(require_POST(self.operation_view)), name=self.url_name("operation"))]

    def holds(self, request: HttpRequest, needed: tuple[str, ...]) -> bool:
        """The user holds every permission in ``needed``."""
        return all(request.user.has_perm(name) for name in needed)

    def require(self, request: HttpRequest, needed: tuple[str, ...]) -> None:
        """PermissionDenied (403) unless the user holds ``needed``."""
        if not self.holds(request, needed):
            raise PermissionDenied

    def has_add_permission(self, request: HttpRequest) -> bool:
        """May create schedules (the index's "Add" link)."""
        return self.holds(request, ADD)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """May edit, pause and resume."""
        return self.holds(request, CHANGE)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """May delete."""
        return self.holds(request, DELETE)

    def allowed(self, request: HttpRequest) -> dict[str, bool]:
        """What the pages show buttons for."""
        return {"change": self.holds(request, CHANGE), "add": self.holds(request, ADD),
                "trigger": self.holds(request, OPERATIONS["trigger"]),
                "delete": self.holds(request, DELETE)}

    def change_url(self, name: str) -> str:
        """A schedule's page."""
        return reverse(f"admin:{self.url_name('change')}", args=[name],
                       current_app=self.admin_site.name)

    @redis_required
    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Every schedule with its timing, next and last run, last task and error."""
        self.require(request, VIEW)
        rows = rows_of(producer.schedules().all())
        context = page_context(self, request, "Schedules", rows=rows,
                               can=self.allowed(request), **(extra_context or {}))
        return TemplateResponse(request, self.change_list_template, context)

    @redis_required
    def operation_view(self, request: HttpRequest, object_id: str,
                       operation: str) -> HttpResponse:
        """POST: pause, resume or run now, then back where the button was."""
        if operation not in OPERATIONS:
            raise Http404(f"no action {operation!r}")
        self.require(request, OPERATIONS[operation])
        store = producer.schedules()
        try:
            if operation == "trigger":
                task_id = store.trigger(object_id)
                messages.success(request, f"Schedule “{object_id}” ran now: task {task_id}.")
            else:
                getattr(store, operation)(object_id)
                messages.success(request, f"Schedule “{object_id}” {operation}d.")
        except errors.ScheduleNotFound:
            messages.error(request, f"Schedule “{object_id}” does not exist any more.")
        except errors.ScheduleChanged:
            messages.error(request, f"Schedule “{object_id}” changed meanwhile: try again.")
        back = request.POST.get("next", "")
        return HttpResponseRedirect(self.change_url(object_id) if back == "change"
                                    else self.changelist_url())

    @redis_required
    def add_view(self, request: HttpRequest, form_url: str = "",
                 extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """GET: an empty form. POST: create the schedule (field errors shown on the form)."""
        self.require(request, ADD)
        form = ScheduleForm(request.POST or None, initial={"enabled": True})
        form.fields["name"] = forms.CharField(help_text="Letters, digits, _ . : -")
        form.order_fields(["name"])
        if request.method == "POST" and form.is_valid():
            body = {"name": form.cleaned_data["name"].strip()}
            created = self.save(form, lambda: producer.schedules().create(
                producer.schedule_spec({**form.body(), **body}),
                scope=principal_id(request.user)))
            if created is not None:
                messages.success(request, f"Schedule “{created.name}” created.")
                return HttpResponseRedirect(self.change_url(created.name))
        return self.form_page(request, "Add schedule", form, None)

    @redis_required
    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """GET: the schedule and its definition. POST: replace the definition (as PUT)."""
        self.require(request, CHANGE if request.method == "POST" else VIEW)
        store = producer.schedules()
        try:
            sched = store.get(object_id)
        except errors.ScheduleNotFound:
            messages.warning(request, f"There is no schedule “{object_id}”. Perhaps it was "
                                      "deleted?")
            return HttpResponseRedirect(self.changelist_url())
        if request.method != "POST":
            form = ScheduleForm(initial=ScheduleForm.initial_of(sched))
            return self.form_page(request, f"Schedule {sched.name}", form, sched)
        form = ScheduleForm(request.POST)
        if form.is_valid():
            if request.POST.get("version") != str(sched.version):
                form.add_error(None, "The schedule changed since this page was loaded: "
                                     "reload it and edit again.")
            else:
                saved = self.save(form, lambda: store.replace(
                    producer.schedule_spec(form.body(), sched.name), sched,
                    scope=principal_id(request.user)))
                if saved is not None:
                    messages.success(request, f"Schedule “{saved.name}” saved.")
                    return HttpResponseRedirect(self.change_url(saved.name))
        return self.form_page(request, f"Schedule {sched.name}", form, sched)

    @staticmethod
    def save(form: forms.Form, write: Any) -> Schedule | None:
        """Run ``write``; on a refusal put its message on the field it names and return None."""
        try:
            saved: Schedule = write()
            return saved
        except errors.ValidationError as exc:
            field = exc.field if exc.field in form.fields else None
            form.add_error(field, str(exc))
        except (errors.ScheduleExists, errors.ScheduleChanged) as exc:
            form.add_error("name" if isinstance(exc, errors.ScheduleExists) else None,
                           str(exc) if isinstance(exc, errors.ScheduleExists)
                           else "The schedule changed meanwhile: reload it and edit again.")
        return None

    def form_page(self, request: HttpRequest, title: str, form: forms.Form,
                  sched: Schedule | None) -> HttpResponse:
        """The add or change page."""
        context = page_context(self, request, title, form=form, sched=sched,
                               row=rows_of([sched])[0] if sched else None,
                               can=self.allowed(request),
                               editable=self.holds(request, CHANGE if sched else ADD),
                               changelist_url=self.changelist_url())
        return TemplateResponse(request, self.change_form_template, context)

    @redis_required
    def delete_view(self, request: HttpRequest, object_id: str,
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """GET: are you sure? POST: delete (the tasks it created stay)."""
        self.require(request, DELETE)
        store = producer.schedules()
        if request.method == "POST":
            try:
                store.delete(object_id)
                messages.success(request, f"Schedule “{object_id}” deleted.")
            except errors.ScheduleNotFound:
                messages.warning(request, f"Schedule “{object_id}” was already deleted.")
            return HttpResponseRedirect(self.changelist_url())
        try:
            sched = store.get(object_id)
        except errors.ScheduleNotFound:
            return HttpResponseRedirect(self.changelist_url())
        context = page_context(self, request, "Are you sure?", sched=sched,
                               changelist_url=self.changelist_url(),
                               change_url=self.change_url(object_id))
        return TemplateResponse(request, self.delete_confirmation_template, context)
