"""OpenAPI schema additions: the auth schemes and what serializers cannot express."""

from __future__ import annotations

import copy
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpResponse
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView

from tasks_app.api.authentication import API_KEY_HEADER
from tasks_app.api.inputs import MAX_BATCH
from tasks_app.conf import tq_settings
from tasks_app.core.registry import registry
from tasks_app.core.validation import MAX_TYPE_LENGTH, TYPE_PATTERN
from tasks_app.core.workflows import STEP_REFUSED


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """``X-API-Key`` header."""

    target_class = "tasks_app.api.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        """An apiKey scheme in the header."""
        return {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}


class BearerScheme(OpenApiAuthenticationExtension):
    """``Authorization: Bearer <JWT>``."""

    target_class = "tasks_app.api.authentication.BearerAuthentication"
    name = "BearerAuth"
    priority = 1

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        """An HTTP bearer scheme carrying a JWT."""
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


class NamedEnum(OpenApiSerializerFieldExtension):
    """An ``EnumField`` is one named enum component, so no site needs ENUM_NAME_OVERRIDES."""

    target_class = "tasks_app.api.serializers.EnumField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Any) -> Any:
        """A reference to the field's enum component, registered on first use."""
        field = self.target
        component = ResolvedComponent(
            name=field.enum_name, type=ResolvedComponent.SCHEMA, object=field.enum_name,
            schema={"type": "string", "enum": list(field.choices)})
        auto_schema.registry.register_on_missing(component)
        return component.ref


NOT_BOTH_TIMES: dict[str, Any] = {
    "required": ["scheduled_at", "delay"],
    "properties": {"scheduled_at": {"type": "string"}, "delay": {"type": "number"}},
}

DLQ_RETRY: dict[str, Any] = {
    "oneOf": [
        {"type": "object", "required": ["task_id"], "additionalProperties": False,
         "properties": {"task_id": {"type": "string", "minLength": 1}}},
        {"type": "object", "required": ["message_id"], "additionalProperties": False,
         "properties": {"message_id": {"type": "string", "pattern": r"^\d{1,20}-\d{1,20}$"}}},
        {"type": "object", "required": ["retry_all"], "additionalProperties": False,
         "properties": {"retry_all": {"type": "boolean", "enum": [True]}}},
    ],
}


def _task_create(schema: dict[str, Any]) -> None:
    """Registered types only, no unknown fields, not both scheduled_at and delay."""
    names = registry.names()
    if tq_settings.ACCEPT_UNKNOWN_TYPES:
        schema["properties"]["type"].update(pattern=f"^{TYPE_PATTERN.pattern}$",
                                           maxLength=MAX_TYPE_LENGTH)
    elif names:
        schema["properties"]["type"]["enum"] = names
    schema["additionalProperties"] = False
    schema["not"] = NOT_BOTH_TIMES


def _workflow_create(schemas: dict[str, Any]) -> None:
    """The recursive workflow body: a chain or a group of steps, a step being a task body
    (without the fields a step may not set) or a nested chain or group."""
    task = copy.deepcopy(schemas["TaskCreateRequest"])
    for name in STEP_REFUSED:
        task["properties"].pop(name, None)
    task.pop("not", None)
    step = {"$ref": "#/components/schemas/WorkflowStepBody"}
    steps = {"type": "array", "minItems": 1, "items": step}
    queue = copy.deepcopy(schemas["WorkflowCreateRequest"]["properties"]["queue"])
    schemas["WorkflowTaskStep"] = task
    schemas["WorkflowChain"] = {"type": "object", "required": ["chain"],
                                "additionalProperties": False, "properties": {"chain": steps}}
    schemas["WorkflowGroup"] = {"type": "object", "required": ["group"],
                                "additionalProperties": False,
                                "properties": {"group": steps, "then": step}}
    schemas["WorkflowStepBody"] = {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in
                                         ("WorkflowTaskStep", "WorkflowChain", "WorkflowGroup")]}
    chain = copy.deepcopy(schemas["WorkflowChain"])
    group = copy.deepcopy(schemas["WorkflowGroup"])
    chain["properties"]["queue"] = group["properties"]["queue"] = queue
    schemas["WorkflowCreateRequest"] = {
        "oneOf": [chain, group],
        "description": "A chain or a group (with an optional then step) of steps, nested at "
                       "will; queue: where every step runs (default 'default')"}


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool
                ) -> dict[str, Any]:
    """drf-spectacular postprocessing hook."""
    schemas = result.get("components", {}).get("schemas", {})
    if "TaskCreateRequest" in schemas:
        _task_create(schemas["TaskCreateRequest"])
    if "TaskBatchCreateRequest" in schemas:
        batch = schemas["TaskBatchCreateRequest"]
        batch["additionalProperties"] = False
        batch["properties"]["tasks"].update(minItems=1, maxItems=MAX_BATCH)
    for name in ("ScheduleCreateRequest", "ScheduleWriteRequest", "PatchedScheduleWriteRequest"):
        if name in schemas:  # unknown fields are refused
            schemas[name]["additionalProperties"] = False
    for name in ("ScheduleWriteRequest", "PatchedScheduleWriteRequest"):
        if name in schemas:  # the path names the schedule (a body may repeat it, unchanged)
            schemas[name]["properties"].pop("name", None)
    if "WorkflowCreateRequest" in schemas and "TaskCreateRequest" in schemas:
        _workflow_create(schemas)
    if "DLQRetryRequest" in schemas:
        schemas["DLQRetryRequest"] = {**DLQ_RETRY,
                                      "description": "task_id, message_id, or retry_all: true"}
    if "TypeLimitWriteRequest" in schemas:
        schemas["TypeLimitWriteRequest"].update(additionalProperties=False, minProperties=1)
    for operation in _operations(result):
        if "requestBody" in operation:
            operation["requestBody"]["required"] = True
    return result


def _operations(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operation object of the schema."""
    return [op for item in result.get("paths", {}).values() for op in item.values()
            if isinstance(op, dict)]


class SchemaView(SpectacularAPIView):
    """``GET /api/schema/``: built and rendered once per process and media type, not per
    request.

    A build takes about 60 ms of CPU (generation, then YAML), and the schema is public: built
    per request it let anyone keep a web process busy with a few requests a second.  It
    depends only on the URL conf, the settings (a change empties the cache) and the
    registered task types (part of the key).  The ``version`` and ``lang`` query parameters
    are not read (the API has one version, its texts one language), so a client cannot make
    cache entries of its own.
    """

    @extend_schema(exclude=True)  # as SpectacularAPIView (SERVE_INCLUDE_SCHEMA is off)
    def get(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponse:
        # one entry per renderer (the client's media type parameters, e.g. indent=, are
        # not read: they would make entries of their own)
        renderer = request.accepted_renderer
        key = (renderer.media_type, tuple(registry.names()))
        cached = _BUILT.get(key)
        if cached is None:
            response = self._get_schema_response(request)
            response.accepted_renderer = renderer
            response.accepted_media_type = renderer.media_type
            response.renderer_context = self.get_renderer_context()
            cached = (bytes(response.rendered_content), response["Content-Type"],
                      response["Content-Disposition"])
            _BUILT[key] = cached
        body, content_type, disposition = cached
        return HttpResponse(body, content_type=content_type,
                            headers={"Content-Disposition": disposition})

    def _get_version_parameter(self, request: Any) -> None:
        return None


_BUILT: dict[tuple[str, tuple[str, ...]], tuple[bytes, str, str]] = {}
"""SchemaView's built schemas: (media type, task types) -> (body, content type, disposition)."""


@receiver(setting_changed)
def _settings_changed(**kwargs: Any) -> None:
    _BUILT.clear()
