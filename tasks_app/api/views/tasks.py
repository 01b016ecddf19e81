"""The task API: create (one or a batch), read, cancel, queue depths."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from tasks_app import permissions, producer
from tasks_app.api import docs, inputs
from tasks_app.api.authentication import principal_id
from tasks_app.api.errors import Conflict
from tasks_app.api.serializers import QueueDepths, Task, TaskBatch, TaskBatchCreate, TaskCreate
from tasks_app.api.throttling import SubmitRateThrottle
from tasks_app.api.views.base import ApiView, inspector
from tasks_app.conf import tq_settings
from tasks_app.connection import get_broker
from tasks_app.core.broker import Submitted
from tasks_app.core.errors import TaskNotFound
from tasks_app.core.task import Task as StoredTask
from tasks_app.visibility import may_see, viewer_scope, workflow_scope

IDEMPOTENCY_HEADER = docs.idempotency_header("task(s)")


def submit(request: Request, items: Iterable[Any], label: str = "") -> Submitted:
    """Validate and enqueue through the producer in one round trip, honouring
    Idempotency-Key; with a ``label``, errors name the item (``tasks[3]: ...``)."""
    key = inputs.idempotency_key(request)
    return producer.submit(items, key, tq_settings.IDEMPOTENCY_TTL,
                           scope=principal_id(request.user), label=label, clamp_time=True)


def visible_task(request: Request, task_id: str) -> StoredTask | None:
    """The task when TASK_VISIBILITY hides others' tasks from this caller (404 for one it may
    not see, like an unknown id); None, without reading, when the caller sees every task."""
    viewer = viewer_scope(request.user)
    if viewer is None:
        return None
    task = get_broker().get(task_id)
    if not may_see(viewer, task.owner):
        raise TaskNotFound(task_id)
    return task


def check_step_cancel(request: Request, task_id: str, task: StoredTask | None) -> None:
    """403 when cancelling the task would cancel another client's workflow that this
    caller may not cancel through ``DELETE /api/v1/workflows/{id}`` (a staff user without
    the workflows' permissions, see ``visibility.workflow_scope``)."""
    scope = workflow_scope(request.user, permissions.WORKFLOW_CANCELLING)
    if scope is None:
        return
    owner = (task or get_broker().get(task_id)).owner
    if not may_see(scope, owner) and producer.workflows().has_step(task_id):
        raise PermissionDenied(permissions.missing(
            [name for name in permissions.WORKFLOW_CANCELLING
             if not request.user.has_perm(name)]))


class SubmitView(ApiView):
    """Views that create tasks: rate limited per client when SUBMIT_RATE_LIMIT is set."""

    def get_throttles(self) -> list[BaseThrottle]:
        """The submission throttle on POST, when configured."""
        rate = tq_settings.SUBMIT_RATE_LIMIT
        if rate and self.request.method == "POST":
            return [SubmitRateThrottle(rate)]
        return []


class TaskListView(SubmitView):
    """`/api/v1/tasks`: queue depths (GET), create a task (POST)."""

    @extend_schema(operation_id="queue_depths", responses=docs.reads(QueueDepths), tags=["tasks"])
    def get(self, request: Request) -> Response:
        """Pending tasks for all four priorities, exact, with the queue statistics beside."""
        admin = inspector()
        snap = admin.queue_snapshot()
        depths = {q.name: q.depth for q in snap.queues}
        named = [q.to_dict() for q in producer.named_queues(admin)]
        return Response({"queue_depths": depths, "total_pending": sum(depths.values()),
                         **snap.to_dict(), "named": named})

    @extend_schema(operation_id="create_task", request=TaskCreate, parameters=[IDEMPOTENCY_HEADER],
                   responses=docs.creates(Task, 409), tags=["tasks"])
    def post(self, request: Request) -> Response:
        """Create one task: 201, or 200 with the original for a repeated Idempotency-Key, or
        with the existing task its unique key names (unique_for)."""
        submitted = submit(request, [inputs.body_object(request.data)])
        if not submitted.tasks:
            raise Conflict("the task created with this Idempotency-Key no longer exists")
        found = submitted.duplicate or bool(submitted.existing)
        return Response(submitted.tasks[0].to_dict(), status=200 if found else 201)


class TaskBatchView(SubmitView):
    """`/api/v1/tasks/batch`: up to 1,000 tasks, validated all or nothing, one round trip."""

    @extend_schema(operation_id="create_tasks_batch", request=TaskBatchCreate,
                   parameters=[IDEMPOTENCY_HEADER], responses=docs.creates(TaskBatch),
                   tags=["tasks"])
    def post(self, request: Request) -> Response:
        """Create every task or none (a task whose unique key names an existing task is not
        created: the existing one takes its place, its index in ``existing``)."""
        items = inputs.batch_items(request.data)
        objects = (inputs.body_object(item, f"tasks[{i}]") for i, item in enumerate(items))
        submitted = submit(request, objects, label="tasks")
        tasks = [task.to_dict() for task in submitted.tasks]
        body: dict[str, Any] = {"tasks": tasks, "count": len(tasks)}
        if submitted.existing:
            body["existing"] = sorted(submitted.existing)
        nothing_new = submitted.duplicate or len(submitted.existing) == len(tasks)
        return Response(body, status=200 if nothing_new else 201)


class TaskDetailView(ApiView):
    """`/api/v1/tasks/{id}`: read (GET), cancel (DELETE)."""

    @extend_schema(operation_id="get_task", responses=docs.reads(Task, 404), tags=["tasks"])
    def get(self, request: Request, task_id: str) -> Response:
        """Every field that applies; 404 for an unknown or malformed id, or another's task."""
        task = visible_task(request, task_id) or get_broker().get(task_id)
        return Response(task.to_dict())

    @extend_schema(operation_id="cancel_task", responses=docs.reads(Task, 403, 404, 409),
                   tags=["tasks"])
    def delete(self, request: Request, task_id: str) -> Response:
        """Cancel a pending, scheduled or retrying task; 409 otherwise.  A workflow step's
        cancel cancels its workflow, so it asks what cancelling the workflow asks (403)."""
        check_step_cancel(request, task_id, visible_task(request, task_id))
        return Response(get_broker().cancel(task_id).to_dict())
