"""The OpenAPI schema at /api/schema/ and the docs page at /api/docs/."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

from tasks_app.conf import tq_settings
from tasks_app.core.registry import registry

OPERATIONS = {
    ("/api/v1/tasks", "get"), ("/api/v1/tasks", "post"), ("/api/v1/tasks/batch", "post"),
    ("/api/v1/tasks/{task_id}", "get"), ("/api/v1/tasks/{task_id}", "delete"),
    ("/api/v1/auth/token", "post"), ("/api/v1/auth/token/refresh", "post"),
    ("/api/v1/auth/token/revoke", "post"),
    ("/admin/health", "get"), ("/admin/workers", "get"), ("/admin/workers/{worker_id}", "get"),
    ("/admin/workers/{worker_id}/pause", "post"), ("/admin/workers/{worker_id}/resume", "post"),
    ("/admin/queues", "get"), ("/admin/queues/{priority}/pause", "post"),
    ("/admin/queues/{priority}/resume", "post"), ("/admin/dlq", "get"),
    ("/admin/dlq", "delete"), ("/admin/dlq/retry", "post"),
    ("/admin/queues/{priority}", "delete"), ("/admin/tasks/{task_id}/retry", "post"),
    ("/admin/schedules", "get"), ("/admin/schedules", "post"),
    ("/admin/schedules/{name}", "get"), ("/admin/schedules/{name}", "put"),
    ("/admin/schedules/{name}", "patch"), ("/admin/schedules/{name}", "delete"),
    ("/admin/schedules/{name}/pause", "post"), ("/admin/schedules/{name}/resume", "post"),
    ("/admin/schedules/{name}/trigger", "post"),
    ("/api/v1/workflows", "post"), ("/api/v1/workflows/{workflow_id}", "get"),
    ("/api/v1/workflows/{workflow_id}", "delete"),
    ("/admin/types", "get"), ("/admin/types/{task_type}/limits", "get"),
    ("/admin/types/{task_type}/limits", "put"), ("/admin/types/{task_type}/limits", "delete"),
    ("/admin/named-queues", "get"), ("/admin/named-queues/{name}/pause", "post"),
    ("/admin/named-queues/{name}/resume", "post"),
}


def schema(**taskqueue: Any) -> dict[str, Any]:
    """The served schema (JSON) under the given TASKQUEUE overrides."""
    with override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL, **taskqueue}):
        reply = Client(HTTP_HOST="localhost").get("/api/schema/", {"format": "json"})
    assert reply.status_code == 200
    return dict(reply.json())


def test_schema_is_openapi_3_with_every_operation() -> None:
    doc = schema()
    assert doc["openapi"].startswith("3.")
    found = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert found == OPERATIONS


def test_errors_are_documented_with_the_error_body() -> None:
    doc = schema()
    create = doc["paths"]["/api/v1/tasks"]["post"]["responses"]
    assert {"200", "201", "400", "401", "413", "415", "429", "503"} <= set(create)
    assert create["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert doc["components"]["schemas"]["Error"]["required"] == ["error", "message"]


def test_login_documents_its_throttle_and_revoke_its_body() -> None:
    doc = schema()
    login = doc["paths"]["/api/v1/auth/token"]["post"]["responses"]
    assert {"200", "400", "401", "429"} <= set(login)
    revoke = doc["paths"]["/api/v1/auth/token/revoke"]["post"]
    body = revoke["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert doc["components"]["schemas"][body.rsplit("/", 1)[1]]["required"] == ["refresh"]
    assert {"200", "401"} <= set(revoke["responses"])


def test_task_types_are_the_registered_handlers() -> None:
    request = schema()["components"]["schemas"]["TaskCreateRequest"]
    assert request["properties"]["type"]["enum"] == registry.names()
    assert request["additionalProperties"] is False


@pytest.mark.parametrize(("auth", "schemes"), [(False, set()),
                                               (True, {"ApiKeyAuth", "BearerAuth"})])
def test_security_is_declared_only_while_auth_is_on(auth: bool, schemes: set[str]) -> None:
    doc = schema(AUTH_ENABLED=auth)
    assert set(doc.get("components", {}).get("securitySchemes", {})) == schemes
    admin = doc["paths"]["/admin/queues"]["get"]
    assert bool(admin.get("security")) is auth
    for path in ("/api/v1/auth/token", "/api/v1/auth/token/refresh", "/api/v1/auth/token/revoke"):
        assert "security" not in doc["paths"][path]["post"]


def test_docs_page_is_served() -> None:
    reply = Client(HTTP_HOST="localhost").get("/api/docs/")
    assert reply.status_code == 200
    assert reply["Content-Type"].startswith("text/html")
    assert b"swagger" in reply.content.lower()


def test_fields_added_for_existing_clients_are_documented() -> None:
    parts = schema()["components"]["schemas"]
    assert {"queued", "pending_unacked"} <= set(parts["QueueStat"]["properties"])
    for name in ("Queues", "QueueDepths"):
        assert {"queues", "scheduled_count", "dlq_size", "totals"} <= set(
            parts[name]["required"])
    assert {"task_id", "task_type"} <= set(parts["DLQEntry"]["required"])
    assert {"message", "worker_id"} <= set(parts["WorkerControl"]["required"])
    bodies = [set(one["required"]) for one in parts["DLQRetryRequest"]["oneOf"]]
    assert bodies == [{"task_id"}, {"message_id"}, {"retry_all"}]


def test_unknown_types_setting_documents_a_pattern_instead_of_the_registered_names() -> None:
    field = schema(ACCEPT_UNKNOWN_TYPES=True)["components"]["schemas"][
        "TaskCreateRequest"]["properties"]["type"]
    assert "enum" not in field and field["maxLength"] == 255
    assert field["pattern"].startswith("^")


def test_schedules_are_documented() -> None:
    doc = schema()
    create = doc["paths"]["/admin/schedules"]["post"]
    assert set(create["responses"]) >= {"201", "400", "409"}
    parts = doc["components"]["schemas"]
    create_body = parts["ScheduleCreateRequest"]
    assert "name" in create_body["required"] and create_body["additionalProperties"] is False
    assert {"name", "type", "task", "cron", "every", "timezone", "catchup"} <= set(
        create_body["properties"])
    for write in ("ScheduleWriteRequest", "PatchedScheduleWriteRequest"):  # the path names it
        assert "name" not in parts[write]["properties"]
        assert parts[write]["additionalProperties"] is False
    assert parts["ScheduleWriteRequest"]["properties"]["every"]["maximum"] == 366 * 86400
    shown = doc["components"]["schemas"]["Schedule"]["properties"]
    assert {"next_run_at", "last_run_at", "last_task_id", "paused", "error"} <= set(shown)


def test_unique_tasks_and_progress_are_documented() -> None:
    parts = schema()["components"]["schemas"]
    body = parts["TaskCreateRequest"]["properties"]
    assert (body["unique_for"]["minimum"], body["unique_for"]["maximum"]) == (1, 30 * 86400)
    assert body["unique_key"]["maxLength"] == 200 and body["unique_key"]["pattern"]
    assert "existing" in parts["TaskBatch"]["properties"]
    assert "progress" in parts["Task"]["properties"]
    assert set(parts["Progress"]["properties"]) == {"done", "total", "message", "updated_at"}


def test_type_limits_body_refuses_unknown_and_empty_bodies() -> None:
    body = schema()["components"]["schemas"]["TypeLimitWriteRequest"]
    assert body["additionalProperties"] is False and body["minProperties"] == 1
    assert body["properties"]["rate"]["pattern"] == "^[1-9][0-9]{0,8}/[smh]$"


def test_workflow_create_documents_its_idempotency_key_and_repeat() -> None:
    create = schema()["paths"]["/api/v1/workflows"]["post"]
    assert {"200", "201", "400", "409"} <= set(create["responses"])
    assert create["responses"]["200"]["content"] == create["responses"]["201"]["content"]
    (header,) = [p for p in create["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key" and not header.get("required")
    assert header["schema"]["pattern"] == "^[\\x21-\\x7e]{1,255}$"


def test_the_schema_is_built_once_per_format_not_per_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone may read the schema and a build costs ~60 ms of CPU: repeated requests, with
    any version or lang parameter, are served from one build per format, and a setting
    change or a new task type shows at once."""
    from drf_spectacular.generators import SchemaGenerator

    builds = []
    real = SchemaGenerator.get_schema

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        builds.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counted)
    client = Client(HTTP_HOST="localhost")
    replies = [client.get("/api/schema/", {"format": "json", "version": str(i), "lang": "x"})
               for i in range(5)] + [client.get("/api/schema/") for _ in range(3)]
    assert [r.status_code for r in replies] == [200] * 8
    assert len(builds) <= 2  # at most once per format (none if an earlier test built them)
    # each media type keeps its own Content-Type; a media type parameter changes nothing
    plain = [client.get("/api/schema/", HTTP_ACCEPT=accept) for accept in (
        "application/vnd.oai.openapi+json; indent=1", "application/json",
        "application/yaml", "application/vnd.oai.openapi")]
    assert [r["Content-Type"].split(";")[0] for r in plain] == [
        "application/vnd.oai.openapi+json", "application/json", "application/yaml",
        "application/vnd.oai.openapi"]
    assert plain[0].content == replies[0].content and plain[2].content == replies[5].content
    assert all(r.json() == replies[0].json() for r in replies[:5])
    assert replies[5].content == replies[7].content and b"openapi: 3" in replies[5].content
    assert replies[5]["Content-Type"].startswith("application/vnd.oai.openapi")
    assert replies[0]["Content-Type"].startswith("application/vnd.oai.openapi+json")
    registry.register("schema-cache-probe", lambda payload, ctx: None)
    try:
        enum = schema()["components"]["schemas"]["TaskCreateRequest"]["properties"]["type"]
        assert "schema-cache-probe" in enum["enum"]
    finally:
        registry.unregister("schema-cache-probe")
    assert "pattern" in schema(ACCEPT_UNKNOWN_TYPES=True)["components"]["schemas"][
        "TaskCreateRequest"]["properties"]["type"]
