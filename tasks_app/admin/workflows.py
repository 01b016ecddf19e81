"""Django admin over workflows (chains and groups), which live in Redis (no copy in SQL).

The unmanaged ``tasks_app.Workflow`` model gives the section and its permissions. The list
shows the latest workflows; a workflow's page shows its steps in order with where it
stopped (the failed step, or the steps its cancellation cancelled) and a POST-only
"Cancel workflow" button. Each page or action asks for the permissions a staff user needs
for the REST route doing the same thing on another client's workflow
(``GET``/``DELETE /api/v1/workflows/{id}``, see ``visibility.workflow_scope``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from tasks_app import permissions, producer
from tasks_app.admin.support import RedisAdmin, page_context, redis_required
from tasks_app.core import errors
from tasks_app.core.states import TaskState
from tasks_app.core.task import ms_to_datetime
from tasks_app.core.workflows import StepState, Workflow
from tasks_app.models import Workflow as WorkflowModel

VIEW = permissions.WORKFLOW_READ
CANCEL = permissions.WORKFLOW_CANCELLING

LIST_SIZE = 100
"""The list shows this many of the latest workflows."""
ENDED = ("completed", "cancelled")


def dlq_url(step: StepState) -> str:
    """The step's DLQ entry page when it was dead-lettered, else ""."""
    if step.state != TaskState.DEAD_LETTER.value:
        return ""
    return reverse("admin:tasks_app_deadletterentry_change", args=[step.task_id])


def failed_step(flow: Workflow) -> dict[str, Any] | None:
    """The step whose failure failed the workflow: index, task id, state and DLQ page."""
    for step in flow.steps:
        if flow.failed_step and step.task_id == flow.failed_step:
            return {"index": step.index, "id": step.task_id, "state": step.state,
                    "url": dlq_url(step)}
    return None


def stopped_at(flow: Workflow, step: StepState) -> bool:
    """Whether ``step`` is where the workflow stopped (its failed step; for a cancelled
    one, the steps that were cancelled)."""
    if flow.state == "failed":
        return step.task_id == flow.failed_step
    return flow.state == "cancelled" and step.state == TaskState.CANCELLED.value


def row_of(flow: Workflow) -> dict[str, Any]:
    """One line of the list (and the head of the workflow's page)."""
    counts = flow.to_dict()["step_states"]
    return {"id": flow.id, "state": flow.state, "queue": flow.queue,
            "step_count": len(flow.steps),
            "step_states": ", ".join(f"{n} {state}" for state, n in sorted(counts.items())),
            "created_at": ms_to_datetime(flow.created_at),
            "updated_at": ms_to_datetime(flow.updated_at),
            "ended_at": ms_to_datetime(flow.ended_at), "owner": flow.owner or "—",
            "failed_step": failed_step(flow)}


def steps_of(flow: Workflow) -> list[dict[str, Any]]:
    """The page's steps, in order."""
    return [{**step.to_dict(), "after": ", ".join(map(str, step.after)) or "—",
             "dlq_url": dlq_url(step), "stopped": stopped_at(flow, step)}
            for step in flow.steps]


@admin.register(WorkflowModel)
class WorkflowAdmin(RedisAdmin):
    """List the latest workflows, show one's steps, cancel one."""

    change_list_template = "admin/tasks_app/workflow/change_list.html"
    change_form_template = "admin/tasks_app/workflow/workflow.html"
    view_permission = permissions.WORKFLOW_VIEW

    def extra_urls(self) -> list[URLPattern]:
        """A workflow's page and its POST-only cancel action."""
        wrap = self.admin_site.admin_view
        return [path("<str:object_id>/change/", wrap(self.change_view),
                     name=self.url_name("change")),
                path("<str:object_id>/cancel/", wrap(require_POST(self.cancel_view)),
                     name=self.url_name("cancel"))]

    def holds(self, request: HttpRequest, needed: tuple[str, ...]) -> bool:
        """The user holds every permission in ``needed``."""
        return all(request.user.has_perm(name) for name in needed)

    def require(self, request: HttpRequest, needed: tuple[str, ...]) -> None:
        """PermissionDenied (403) unless the user holds ``needed``."""
        if not self.holds(request, needed):
            raise PermissionDenied

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Workflows are cancelled, not deleted."""
        return False

    def change_url(self, workflow_id: str) -> str:
        """A workflow's page."""
        return reverse(f"admin:{self.url_name('change')}", args=[workflow_id],
                       current_app=self.admin_site.name)

    @redis_required
    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The latest workflows: state, queue, steps, where a failed one stopped."""
        self.require(request, VIEW)
        rows = [row_of(flow) for flow in producer.workflows().recent(LIST_SIZE)]
        context = page_context(self, request, "Workflows", rows=rows, limit=LIST_SIZE,
                               **(extra_context or {}))
        return TemplateResponse(request, self.change_list_template, context)

    @redis_required
    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """A workflow's page: its state and its steps in order, where it stopped marked."""
        self.require(request, VIEW)
        try:
            flow = producer.get_workflow(object_id)
        except errors.WorkflowNotFound:
            messages.warning(request, f"There is no workflow “{object_id}”.")
            return HttpResponseRedirect(self.changelist_url())
        context = page_context(
            self, request, f"Workflow {flow.id}", flow=flow, row=row_of(flow),
            steps=steps_of(flow), changelist_url=self.changelist_url(),
            can_cancel=self.holds(request, CANCEL) and flow.state not in ENDED,
            **(extra_context or {}))
        return TemplateResponse(request, self.change_form_template, context)

    @redis_required
    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: cancel the workflow (as ``DELETE /api/v1/workflows/{id}``), then back to
        its page."""
        self.require(request, CANCEL)
        try:
            flow = producer.cancel_workflow(object_id)
        except errors.WorkflowNotFound:
            messages.error(request, f"There is no workflow “{object_id}”.")
            return HttpResponseRedirect(self.changelist_url())
        except errors.WorkflowNotCancellable:
            messages.error(request, f"Workflow “{object_id}” has completed: nothing to cancel.")
        else:
            cancelled = sum(s.state == TaskState.CANCELLED.value for s in flow.steps)
            messages.success(request, f"Workflow “{object_id}” cancelled ({cancelled} of "
                                      f"{len(flow.steps)} steps cancelled).")
        return HttpResponseRedirect(self.change_url(object_id))
