"""The workflow API: create a chain or group, read it, cancel what has not started."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from tasks_app import permissions, producer
from tasks_app.api import docs, inputs
from tasks_app.api.authentication import principal_id
from tasks_app.api.errors import Conflict
from tasks_app.api.serializers import Workflow, WorkflowCreate
from tasks_app.api.views.tasks import SubmitView
from tasks_app.conf import tq_settings
from tasks_app.core.errors import WorkflowNotFound
from tasks_app.core.workflows import Workflow as StoredWorkflow
from tasks_app.visibility import may_see, workflow_scope

VIEW = permissions.WORKFLOW_READ
CANCEL = permissions.WORKFLOW_CANCELLING
IDEMPOTENCY_HEADER = docs.idempotency_header("workflow")


def visible_workflow(request: Request, workflow_id: str,
                     needed: tuple[str, ...] = VIEW) -> StoredWorkflow:
    """The workflow, or 404 for one this caller may not see (as for tasks); 403 for one
    it may see but lacks ``needed`` for (a staff user, see ``workflow_scope``)."""
    found = producer.get_workflow(workflow_id)
    if not may_see(workflow_scope(request.user, VIEW), found.owner):
        raise WorkflowNotFound(workflow_id)
    if not may_see(workflow_scope(request.user, needed), found.owner):
        raise PermissionDenied(permissions.missing(
            [name for name in needed if not request.user.has_perm(name)]))
    return found


class WorkflowListView(SubmitView):
    """`/api/v1/workflows`: create a chain or a group (POST)."""

    @extend_schema(operation_id="create_workflow", request=WorkflowCreate,
                   parameters=[IDEMPOTENCY_HEADER], responses=docs.creates(Workflow, 409),
                   tags=["workflows"])
    def post(self, request: Request) -> Response:
        """Validate every step (a 400 names the step and field; nothing is created), then
        create the workflow and its first steps' tasks in one atomic call: 201, or 200 with
        the original for a repeated Idempotency-Key."""
        tree = inputs.body_object(request.data)
        key = inputs.idempotency_key(request)
        submitted = producer.submit_workflow(tree, key, tq_settings.IDEMPOTENCY_TTL,
                                             scope=principal_id(request.user))
        if submitted.workflow is None:
            raise Conflict("the workflow created with this Idempotency-Key no longer exists")
        return Response(submitted.workflow.to_dict(), status=200 if submitted.duplicate else 201)


class WorkflowDetailView(SubmitView):
    """`/api/v1/workflows/{id}`: read (GET), cancel what has not started (DELETE)."""

    @extend_schema(operation_id="get_workflow", responses=docs.reads(Workflow, 404),
                   tags=["workflows"])
    def get(self, request: Request, workflow_id: str) -> Response:
        """The workflow's state and each step's task id and state."""
        return Response(visible_workflow(request, workflow_id).to_dict())

    @extend_schema(operation_id="cancel_workflow", responses=docs.reads(Workflow, 403, 404, 409),
                   tags=["workflows"])
    def delete(self, request: Request, workflow_id: str) -> Response:
        """Cancel: steps not started are cancelled, running ones finish and start nothing
        after them; 409 once the workflow has completed."""
        visible_workflow(request, workflow_id, CANCEL)
        return Response(producer.cancel_workflow(workflow_id).to_dict())
