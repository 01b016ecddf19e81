"""The admin API of periodic schedules: `/admin/schedules[/{name}[/pause|resume|trigger]]`.

Validation is the core's (``tasks_app.core.schedules.parse_schedule``); errors name the
field.  Authorization is the other admin endpoints': an admin key, or staff holding the
``workers_app.*_schedule`` permissions each method declares.
"""

from __future__ import annotations

from typing import Any, ClassVar

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from tasks_app import permissions as perms
from tasks_app import producer
from tasks_app.api import docs
from tasks_app.api.authentication import principal_id
from tasks_app.api.serializers import (
    Schedule,
    ScheduleCreate,
    ScheduleDeleted,
    ScheduleList,
    ScheduleTriggered,
    ScheduleWrite,
)
from tasks_app.api.views.admin import AdminView
from tasks_app.core.errors import ValidationError
from tasks_app.core.schedules import Schedules, ScheduleSpec

NAME_PARAM = OpenApiParameter("name", str, OpenApiParameter.PATH,
                              pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
                              description="The schedule's name")
QUEUE_FILTER = OpenApiParameter("queue", str, OpenApiParameter.QUERY, required=False,
                                description="Only the schedules of this queue")


def schedules() -> Schedules:
    """The schedules of the shared broker."""
    return producer.schedules()


def parse(body: Any, name: str | None = None) -> ScheduleSpec:
    """A definition from a request body, validated as tasks are (400 naming the field)."""
    return producer.schedule_spec(body, name)


class ScheduleListView(AdminView):
    """`/admin/schedules`: list (GET), create (POST)."""

    required_permissions = {"GET": (perms.SCHEDULE_VIEW,),
                            "POST": (perms.SCHEDULE_VIEW, perms.SCHEDULE_ADD)}

    @extend_schema(operation_id="list_schedules", parameters=[QUEUE_FILTER],
                   responses=docs.admin(ScheduleList), tags=["admin"])
    def get(self, request: Request) -> Response:
        """Every schedule, by name, with its next and last run."""
        queue = request.query_params.get("queue") or None
        found = [s.to_dict() for s in schedules().all(queue)]
        return Response({"schedules": found, "count": len(found)})

    @extend_schema(operation_id="create_schedule", request=ScheduleCreate,
                   responses={201: Schedule, **docs.errors(400, 401, 403, 409, 413, 415, 503)},
                   tags=["admin"])
    def post(self, request: Request) -> Response:
        """201 with the schedule; its first tick is the first after now."""
        created = schedules().create(parse(request.data), scope=principal_id(request.user))
        return Response(created.to_dict(), status=201)


class ScheduleDetailView(AdminView):
    """`/admin/schedules/{name}`: read, replace, change, delete."""

    required_permissions = {"GET": (perms.SCHEDULE_VIEW,),
                            "PUT": (perms.SCHEDULE_VIEW, perms.SCHEDULE_CHANGE),
                            "PATCH": (perms.SCHEDULE_VIEW, perms.SCHEDULE_CHANGE),
                            "DELETE": (perms.SCHEDULE_VIEW, perms.SCHEDULE_DELETE)}

    @extend_schema(operation_id="get_schedule", parameters=[NAME_PARAM],
                   responses=docs.admin(Schedule, 404), tags=["admin"])
    def get(self, request: Request, name: str) -> Response:
        """The schedule, or 404."""
        return Response(schedules().get(name).to_dict())

    @extend_schema(operation_id="replace_schedule", parameters=[NAME_PARAM],
                   request=ScheduleWrite, responses=docs.admin(Schedule, 400, 404, 409, 413, 415),
                   tags=["admin"])
    def put(self, request: Request, name: str) -> Response:
        """Replace the definition (fields left out take their defaults); its timing restarts
        only if cron, every or timezone changed."""
        store = schedules()
        old = store.get(name)
        return Response(store.replace(parse(request.data, name), old,
                                      scope=principal_id(request.user)).to_dict())

    @extend_schema(operation_id="update_schedule", parameters=[NAME_PARAM],
                   request=ScheduleWrite, responses=docs.admin(Schedule, 400, 404, 409, 413, 415),
                   tags=["admin"])
    def patch(self, request: Request, name: str) -> Response:
        """Change the fields given; setting cron clears every and the other way round, and
        setting task clears type and payload (and the other way round)."""
        store = schedules()
        old = store.get(name)
        if request.stream is None:  # no body at all (an empty JSON object is a no-op)
            raise ValidationError("request body must be a JSON object", None)
        if not isinstance(request.data, dict):
            raise ValidationError("request body must be a JSON object", None)
        merged = {**old.spec.definition(), **request.data}
        for given, drop in (("cron", ("every",)), ("every", ("cron",)),
                            ("task", ("type", "payload")), ("type", ("task", "args", "kwargs"))):
            if request.data.get(given) is not None:
                for other in drop:
                    if other not in request.data:
                        merged.pop(other, None)
        return Response(store.replace(parse(merged, name), old,
                                      scope=principal_id(request.user)).to_dict())

    @extend_schema(operation_id="delete_schedule", parameters=[NAME_PARAM],
                   responses=docs.admin(ScheduleDeleted, 404), tags=["admin"])
    def delete(self, request: Request, name: str) -> Response:
        """Delete the schedule; the tasks it created stay."""
        schedules().delete(name)
        return Response({"message": "schedule deleted", "name": name})


class ScheduleActionView(AdminView):
    """`/admin/schedules/{name}/pause|resume`."""

    required_permissions = {"POST": (perms.SCHEDULE_VIEW, perms.SCHEDULE_CHANGE)}
    action: ClassVar[str] = "pause"

    def post(self, request: Request, name: str) -> Response:
        """The schedule after the change."""
        store = schedules()
        done = store.pause(name) if self.action == "pause" else store.resume(name)
        return Response(done.to_dict())


class SchedulePauseView(ScheduleActionView):
    """`/admin/schedules/{name}/pause`: no tasks until resumed."""

    action = "pause"

    @extend_schema(operation_id="pause_schedule", request=None, parameters=[NAME_PARAM],
                   responses=docs.admin(Schedule, 404, 409), tags=["admin"])
    def post(self, request: Request, name: str) -> Response:
        """Pause the schedule."""
        return super().post(request, name)


class ScheduleResumeView(ScheduleActionView):
    """`/admin/schedules/{name}/resume`: from the next tick after now."""

    action = "resume"

    @extend_schema(operation_id="resume_schedule", request=None, parameters=[NAME_PARAM],
                   responses=docs.admin(Schedule, 404, 409), tags=["admin"])
    def post(self, request: Request, name: str) -> Response:
        """Resume the schedule (ticks passed while paused are not caught up)."""
        return super().post(request, name)


class ScheduleTriggerView(AdminView):
    """`/admin/schedules/{name}/trigger`: one run now."""

    required_permissions = {"POST": (perms.SCHEDULE_VIEW, perms.SCHEDULE_TRIGGER)}

    @extend_schema(operation_id="trigger_schedule", request=None, parameters=[NAME_PARAM],
                   responses=docs.admin(ScheduleTriggered, 404, 409), tags=["admin"])
    def post(self, request: Request, name: str) -> Response:
        """Create one task now (also while paused); next_run_at is unchanged."""
        task_id = schedules().trigger(name)
        return Response({"message": "schedule triggered", "name": name, "task_id": task_id})
