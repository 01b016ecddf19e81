"""The admin API: health, workers, queues and the dead-letter queue."""

from __future__ import annotations

from typing import Any, ClassVar

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from tasks_app import permissions as perms
from tasks_app import producer
from tasks_app.api import docs, inputs
from tasks_app.api.health import eviction_warning, redis_status
from tasks_app.api.permissions import IsAdmin
from tasks_app.api.serializers import (
    PRIORITY_NAMES,
    QUEUE_NAME_PATTERN,
    DLQCleared,
    DLQPage,
    DLQRetried,
    DLQRetry,
    Healthy,
    NamedQueueControl,
    NamedQueueList,
    QueueControl,
    QueuePurged,
    Queues,
    TaskRetried,
    Unhealthy,
    Worker,
    WorkerControl,
    WorkerList,
)
from tasks_app.api.views.base import ApiView, inspector
from tasks_app.conf import tq_settings
from tasks_app.core.errors import QueueNotFound, ValidationError, WorkerNotFound
from tasks_app.core.inspect import Inspector, NamedQueueStats
from tasks_app.core.keys import valid_queue_name
from tasks_app.core.states import Priority

NAMED_QUEUE_PARAM = OpenApiParameter(
    "name", str, OpenApiParameter.PATH, pattern=QUEUE_NAME_PATTERN,
    description="A named queue, e.g. 'default' or 'emails'",
)
QUEUE_PARAM = OpenApiParameter(
    "priority", str, OpenApiParameter.PATH, enum=[*PRIORITY_NAMES, "0", "1", "2", "3"],
    description="A priority by name or number",
)
DLQ_PARAMS = [
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                     OpenApiParameter.QUERY, required=False,
                     description="Entries per page (1-1000, default 50)"),
    OpenApiParameter("cursor", str, OpenApiParameter.QUERY, required=False,
                     pattern=f"^{inputs.CURSOR_PATTERN.pattern}$",
                     description="next_cursor of the previous page"),
]


class AdminView(ApiView):
    """Admin endpoints need an admin principal while auth is on, and for a user the model
    permissions each method declares (see ``IsAdmin``); undeclared methods are refused."""

    admin_only = True
    required_permissions: ClassVar[dict[str, tuple[str, ...]]] = {}


class HealthView(AdminView):
    """`/admin/health`: answers within about HEALTH_TIMEOUT even when Redis is gone.

    With PUBLIC_HEALTH anyone may ask; only an admin principal (anyone while auth is off)
    is told more than healthy/unhealthy and connected/disconnected.
    """

    def get_permissions(self) -> list[BasePermission]:
        """Anyone with PUBLIC_HEALTH, else an admin principal."""
        return [AllowAny()] if tq_settings.PUBLIC_HEALTH else super().get_permissions()

    required_permissions = {"GET": ()}  # any staff user

    @extend_schema(operation_id="health", tags=["admin"], responses={
        200: Healthy, 503: OpenApiResponse(Unhealthy, description="Redis unreachable"),
        **docs.errors(401, 403)})
    def get(self, request: Request) -> Response:
        """healthy/connected, or 503 unhealthy/disconnected with the reason."""
        admin = IsAdmin().has_permission(request, self)
        problem = redis_status()
        if problem is None:
            body: dict[str, Any] = {"status": "healthy", "redis": "connected"}
            policy = eviction_warning() if admin else None
            if policy is not None:
                body["redis_maxmemory_policy"] = policy.policy
                body["warnings"] = [policy.warning]
            return Response(body)
        body = {"status": "unhealthy", "redis": "disconnected", "error": problem,
                "message": "redis is unreachable"}
        if not admin:
            del body["error"]
        return Response(body, status=503)


class WorkerListView(AdminView):
    """`/admin/workers`: live workers."""

    required_permissions = {"GET": (perms.WORKER_VIEW,)}

    @extend_schema(operation_id="list_workers", responses=docs.admin(WorkerList), tags=["admin"])
    def get(self, request: Request) -> Response:
        """Every worker whose heartbeat is current."""
        workers = [w.to_dict() for w in inspector().workers()]
        return Response({"workers": workers, "count": len(workers)})


class WorkerDetailView(AdminView):
    """`/admin/workers/{id}`: one live worker."""

    required_permissions = {"GET": (perms.WORKER_VIEW,)}

    @extend_schema(operation_id="get_worker", responses=docs.admin(Worker, 404), tags=["admin"])
    def get(self, request: Request, worker_id: str) -> Response:
        """The worker, or 404."""
        return Response(inspector().worker(worker_id).to_dict())

    def http_method_not_allowed(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """`POST /admin/workers/./pause` arrives here as worker "pause": no such worker."""
        if request.method == "POST" and kwargs.get("worker_id") in ("pause", "resume"):
            raise WorkerNotFound(kwargs["worker_id"])
        return super().http_method_not_allowed(request, *args, **kwargs)


class WorkerControlView(AdminView):
    """`/admin/workers/{id}/pause|resume`."""

    required_permissions = {"POST": (perms.WORKER_VIEW, perms.WORKER_PAUSE)}

    action: ClassVar[str] = "pause"

    def post(self, request: Request, worker_id: str) -> Response:
        """Pause (finish running tasks, take nothing new) or resume; the worker after it."""
        admin = inspector()
        admin.worker(worker_id)  # 404 unless live
        if self.action == "pause":
            admin.pause_worker(worker_id)
        else:
            admin.resume_worker(worker_id)
        body = admin.worker(worker_id).to_dict()
        return Response({**body, "message": f"worker {self.action}d", "worker_id": worker_id})


def _control_schema(action: str, resource: str, ok: Any, *extra: Any,
                    errors: tuple[int, ...] = (404,)) -> Any:
    """The schema of a pause or resume operation."""
    return extend_schema(operation_id=f"{action}_{resource}", request=None, parameters=list(extra),
                         responses=docs.admin(ok, *errors), tags=["admin"])


class WorkerPauseView(WorkerControlView):
    """`/admin/workers/{id}/pause`."""

    action = "pause"

    @_control_schema("pause", "worker", WorkerControl)
    def post(self, request: Request, worker_id: str) -> Response:
        """Pause the worker."""
        return super().post(request, worker_id)


class WorkerResumeView(WorkerControlView):
    """`/admin/workers/{id}/resume`."""

    action = "resume"

    @_control_schema("resume", "worker", WorkerControl)
    def post(self, request: Request, worker_id: str) -> Response:
        """Resume the worker."""
        return super().post(request, worker_id)


class QueueListView(AdminView):
    """`/admin/queues`: depth, scheduled, running and paused per priority."""

    required_permissions = {"GET": (perms.QUEUE_VIEW,)}

    @extend_schema(operation_id="list_queues", responses=docs.admin(Queues), tags=["admin"])
    def get(self, request: Request) -> Response:
        """All four priorities, highest first, with totals, from one consistent read."""
        admin = inspector()
        snap = admin.queue_snapshot()
        totals = snap.totals()
        return Response({**snap.to_dict(), "total_depth": totals["queued"],
                         "running": totals["pending_unacked"],
                         "named": [q.to_dict() for q in producer.named_queues(admin)]})


class QueueDetailView(AdminView):
    """`/admin/queues/{priority}`: purge its pending tasks (DELETE)."""

    required_permissions = {"DELETE": (perms.QUEUE_VIEW, perms.QUEUE_PURGE)}

    @extend_schema(operation_id="purge_queue", parameters=[QUEUE_PARAM],
                   responses=docs.admin(QueuePurged, 404), tags=["admin"])
    def delete(self, request: Request, priority: str) -> Response:
        """Cancel every task of the priority pending now (as `tq purge`); the count."""
        level = queue_of(priority)
        purged = inspector().purge(level)
        return Response({"message": "queue purged", "queue": level.label,
                         "priority": int(level), "purged_count": purged})


class QueueControlView(AdminView):
    """`/admin/queues/{priority}/pause|resume`."""

    required_permissions = {"POST": (perms.QUEUE_VIEW, perms.QUEUE_PAUSE)}

    action: ClassVar[str] = "pause"

    def post(self, request: Request, priority: str) -> Response:
        """Workers take nothing from a paused priority; resume lets them again."""
        level = queue_of(priority)
        admin = inspector()
        if self.action == "pause":
            admin.pause_queue(level)
        else:
            admin.resume_queue(level)
        return Response({"queue": level.label, "priority": int(level),
                         "paused": self.action == "pause", "message": f"queue {self.action}d"})


def queue_of(priority: str) -> Priority:
    """The queue a path segment names, or 404."""
    level = inputs.priority_of(priority)
    if level is None:
        raise NotFound("queue not found")
    return level


class QueuePauseView(QueueControlView):
    """`/admin/queues/{priority}/pause`."""

    action = "pause"

    @_control_schema("pause", "queue", QueueControl, QUEUE_PARAM)
    def post(self, request: Request, priority: str) -> Response:
        """Pause the queue."""
        return super().post(request, priority)


class QueueResumeView(QueueControlView):
    """`/admin/queues/{priority}/resume`."""

    action = "resume"

    @_control_schema("resume", "queue", QueueControl, QUEUE_PARAM)
    def post(self, request: Request, priority: str) -> Response:
        """Resume the queue."""
        return super().post(request, priority)


class NamedQueueListView(AdminView):
    """`/admin/named-queues`: every named queue with its depths and paused flag."""

    required_permissions = {"GET": (perms.QUEUE_VIEW,)}

    @extend_schema(operation_id="list_named_queues", responses=docs.admin(NamedQueueList),
                   tags=["admin"])
    def get(self, request: Request) -> Response:
        """The default queue first, then by name."""
        named = [q.to_dict() for q in producer.named_queues()]
        return Response({"named": named, "count": len(named)})


class NamedQueueControlView(AdminView):
    """`/admin/named-queues/{name}/pause|resume`: the same permissions as a priority's."""

    required_permissions = {"POST": (perms.QUEUE_VIEW, perms.QUEUE_PAUSE)}

    action: ClassVar[str] = "pause"

    def post(self, request: Request, name: str) -> Response:
        """Workers take nothing from a paused queue (any priority); resume lets them again."""
        if not valid_queue_name(name):
            raise ValidationError("queue name must be 1 to 64 characters from A-Z a-z 0-9 _ . -,"
                                  " starting with a letter or digit", "name")
        admin = inspector()
        if self.action == "pause":
            admin.pause_named_queue(name)
        else:
            admin.resume_named_queue(name)
        return Response({**named_queue(admin, name).to_dict(),
                         "message": f"queue {self.action}d"})


def named_queue(admin: Inspector, name: str) -> NamedQueueStats:
    """One named queue's figures, or QueueNotFound."""
    found = next((q for q in producer.named_queues(admin) if q.name == name), None)
    if found is None:
        raise QueueNotFound(name)
    return found


class NamedQueuePauseView(NamedQueueControlView):
    """`/admin/named-queues/{name}/pause`."""

    action = "pause"

    @_control_schema("pause", "named_queue", NamedQueueControl, NAMED_QUEUE_PARAM,
                     errors=(400, 404))
    def post(self, request: Request, name: str) -> Response:
        """Pause the named queue."""
        return super().post(request, name)


class NamedQueueResumeView(NamedQueueControlView):
    """`/admin/named-queues/{name}/resume`."""

    action = "resume"

    @_control_schema("resume", "named_queue", NamedQueueControl, NAMED_QUEUE_PARAM,
                     errors=(400, 404))
    def post(self, request: Request, name: str) -> Response:
        """Resume the named queue."""
        return super().post(request, name)


class DLQView(AdminView):
    """`/admin/dlq`: list newest first (GET), clear (DELETE)."""

    required_permissions = {"GET": (perms.DLQ_VIEW,),
                            "DELETE": (perms.DLQ_VIEW, perms.DLQ_DELETE)}

    @extend_schema(operation_id="list_dlq", parameters=DLQ_PARAMS,
                   responses=docs.admin(DLQPage, 400), tags=["admin"])
    def get(self, request: Request) -> Response:
        """One page; `size` is the true total; `next_cursor` is null on the last page."""
        limit, cursor = inputs.page_limit(request), inputs.page_cursor(request)
        admin = inspector()
        if cursor == (0, 0):  # nothing is older than the first possible id
            page = []
        else:
            before = None if cursor is None else f"{cursor[0]}-{cursor[1]}"
            page = admin.dlq_page(limit + 1, before=before)
        more = len(page) > limit
        page = page[:limit]
        return Response({
            "entries": [e.to_dict() for e in page],
            "size": admin.dlq_size(),
            "next_cursor": page[-1].message_id if more else None,
        })

    @extend_schema(operation_id="clear_dlq", responses=docs.admin(DLQCleared), tags=["admin"])
    def delete(self, request: Request) -> Response:
        """Delete every entry and the dead tasks' records."""
        cleared = inspector().dlq_clear()
        return Response({"message": "DLQ cleared", "cleared_count": cleared})


class DLQRetryView(AdminView):
    """`/admin/dlq/retry`: re-queue one dead task or all of them."""

    required_permissions = {"POST": (perms.DLQ_VIEW, perms.DLQ_RETRY)}

    @extend_schema(operation_id="retry_dlq", request=DLQRetry,
                   responses=docs.admin(DLQRetried, 400, 404, 413, 415), tags=["admin"])
    def post(self, request: Request) -> Response:
        """`task_id` or `message_id` (404 unless in the DLQ), or `retry_all: true`."""
        target = inputs.retry_request(request.data)
        admin = inspector()
        if target is None:
            return Response({"message": "tasks re-queued", "retried_count": admin.dlq_retry_all()})
        task_id = target.task_id or admin.dlq_task_id(target.message_id)
        admin.dlq_retry(task_id)
        return Response({"message": "task re-queued", "task_id": task_id})


class TaskRetryView(AdminView):
    """`/admin/tasks/{id}/retry`: run a failed or dead-lettered task again now."""

    required_permissions = {"POST": (perms.DLQ_VIEW, perms.DLQ_RETRY)}

    @extend_schema(operation_id="retry_task", request=None,
                   responses=docs.admin(TaskRetried, 404, 409), tags=["admin"])
    def post(self, request: Request, task_id: str) -> Response:
        """Back to pending under its own id, attempts reset; 409 unless failed or dead."""
        task = inspector().retry(task_id)
        return Response({"message": "task re-queued", "task_id": task_id,
                         "task": task.to_dict()})

