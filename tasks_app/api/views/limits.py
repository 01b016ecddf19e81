"""The admin API of per-type limits: `/admin/types` and `/admin/types/{type}/limits`.

Validation is the core's (``tasks_app.core.limits.parse_limit``); errors name the field and
change nothing.  Authorization is the named-queue pause's: an admin key, or staff holding
``workers_app.view_queue`` (to read) and ``workers_app.pause_queue`` (to set or remove).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from tasks_app import permissions as perms
from tasks_app import producer
from tasks_app.api import docs
from tasks_app.api.serializers import TypeLimitList, TypeLimitState, TypeLimitWrite
from tasks_app.api.views.admin import AdminView
from tasks_app.core.limits import check_type, parse_limit

TYPE_PARAM = OpenApiParameter("task_type", str, OpenApiParameter.PATH,
                              pattern=r"^[\x21-\x2e\x30-\x7e]{1,255}$",
                              description="A task type, e.g. 'email'")


class TypeLimitListView(AdminView):
    """`/admin/types`: every limited type."""

    required_permissions = {"GET": (perms.QUEUE_VIEW,)}

    @extend_schema(operation_id="list_type_limits", responses=docs.admin(TypeLimitList),
                   tags=["admin"])
    def get(self, request: Request) -> Response:
        """By type name, each with its limits, running and parked counts."""
        found = [state.to_dict() for state in producer.type_limits().all()]
        return Response({"types": found, "count": len(found)})


class TypeLimitView(AdminView):
    """`/admin/types/{type}/limits`: read, set, remove."""

    required_permissions = {"GET": (perms.QUEUE_VIEW,),
                            "PUT": (perms.QUEUE_VIEW, perms.QUEUE_PAUSE),
                            "DELETE": (perms.QUEUE_VIEW, perms.QUEUE_PAUSE)}

    @extend_schema(operation_id="get_type_limits", parameters=[TYPE_PARAM],
                   responses=docs.admin(TypeLimitState, 400, 404), tags=["admin"])
    def get(self, request: Request, task_type: str) -> Response:
        """The type's limits and counts, or 404 when it has none."""
        return Response(producer.type_limits().get(check_type(task_type)).to_dict())

    @extend_schema(operation_id="set_type_limits", parameters=[TYPE_PARAM],
                   request=TypeLimitWrite,
                   responses=docs.admin(TypeLimitState, 400, 413, 415), tags=["admin"])
    def put(self, request: Request, task_type: str) -> Response:
        """Replace the type's limits (a field left out: no such limit); its parked tasks go
        back in line and wait again for what the new limits allow."""
        limit = parse_limit(request.data)
        return Response(producer.type_limits().set(check_type(task_type), limit).to_dict())

    @extend_schema(operation_id="delete_type_limits", parameters=[TYPE_PARAM],
                   responses=docs.admin(TypeLimitState, 400, 404), tags=["admin"])
    def delete(self, request: Request, task_type: str) -> Response:
        """Remove the type's limits: its parked tasks go back in line at their place."""
        return Response(producer.type_limits().clear(check_type(task_type)).to_dict())
