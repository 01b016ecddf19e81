"""The task API: create, batch, idempotency, read, cancel, queue depths, validation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings

from tasks_app.conf import tq_settings
from tasks_app.core.states import TaskState
from tests.api_support import broker, call, create, error, redis_snapshot
from tests.factories import register, take

REFERENCE_FIELDS = {"id", "type", "payload", "priority", "state", "attempts", "max_retries",
                    "created_at", "updated_at"}


def test_create_returns_201_with_the_task_as_in_the_reference() -> None:
    body = {"type": "email", "payload": {"to": "user@example.com", "subject": "Welcome"},
            "priority": 2, "max_retries": 5, "timeout": 300,
            "metadata": {"source": "signup-flow"}}
    reply = call("POST", "/api/v1/tasks", body)
    assert reply.status == 201
    task = reply.body
    assert REFERENCE_FIELDS <= set(task)
    assert task["type"] == "email" and task["payload"] == body["payload"]
    assert (task["priority"], task["state"], task["attempts"]) == ("high", "pending", 0)
    assert (task["max_retries"], task["timeout"], task["metadata"]) == (5, 300, body["metadata"])
    assert uuid.UUID(task["id"]) and task["created_at"].endswith("Z")
    assert broker().get(task["id"]).state is TaskState.PENDING


def test_defaults_apply_to_omitted_fields() -> None:
    task = call("POST", "/api/v1/tasks", {"type": "echo"}).body
    assert (task["priority"], task["max_retries"], task["timeout"]) == ("low", 3, 300)
    assert (task["payload"], task["metadata"]) == ({}, {})


@pytest.mark.parametrize(("priority", "label"), [
    (0, "low"), (1, "normal"), (2, "high"), (3, "critical"),
    ("low", "low"), ("normal", "normal"), ("high", "high"), ("critical", "critical"),
])
def test_priority_by_number_or_name_is_shown_by_name(priority: Any, label: str) -> None:
    assert create(priority=priority)["priority"] == label


INVALID: list[tuple[Any, str, str]] = [
    ({}, "type", "task type is required"),
    ({"type": ""}, "type", "task type must be a non-empty string"),
    ({"type": None}, "type", "task type is required"),
    ({"type": 7}, "type", "task type must be a non-empty string"),
    ({"type": "x"}, "type", "unknown task type 'x'"),
    ({"type": "echo", "priority": 4}, "priority", ""),
    ({"type": "echo", "priority": -1}, "priority", ""),
    ({"type": "echo", "priority": "urgent"}, "priority", ""),
    ({"type": "echo", "priority": True}, "priority", ""),
    ({"type": "echo", "priority": 1.5}, "priority", ""),
    ({"type": "echo", "max_retries": -1}, "max_retries", ""),
    ({"type": "echo", "max_retries": 101}, "max_retries", ""),
    ({"type": "echo", "max_retries": "3"}, "max_retries", ""),
    ({"type": "echo", "timeout": 0}, "timeout", ""),
    ({"type": "echo", "timeout": 86401}, "timeout", ""),
    ({"type": "echo", "payload": [1, 2]}, "payload", "payload must be a JSON object"),
    ({"type": "echo", "payload": "text"}, "payload", "payload must be a JSON object"),
    ({"type": "echo", "metadata": 3}, "metadata", "metadata must be a JSON object"),
    ({"type": "echo", "scheduled_at": "tomorrow"}, "scheduled_at", ""),
    ({"type": "echo", "delay": -1}, "delay", ""),
    ({"type": "echo", "delay": 5, "scheduled_at": "2030-01-01T00:00:00Z"}, "delay", ""),
    ({"type": "echo", "colour": "red"}, "colour", "unknown field 'colour'"),
    ([{"type": "echo"}], "body", "request body must be a JSON object"),
    ("echo", "body", "request body must be a JSON object"),
]


@pytest.mark.parametrize(("body", "field", "message"), INVALID)
def test_invalid_fields_get_400_naming_the_field_and_change_nothing(
        body: Any, field: str, message: str) -> None:
    create()
    before = redis_snapshot()
    status, reason, text = error(call("POST", "/api/v1/tasks", body))
    assert (status, reason) == (400, "Bad Request")
    assert field in text
    if message:
        assert text == message
    assert redis_snapshot() == before


@pytest.mark.parametrize(("raw", "content_type", "status", "reason"), [
    ('{"type": "echo"', "application/json", 400, "Bad Request"),
    ('{"type": NaN}', "application/json", 400, "Bad Request"),
    ("[" * 100_000, "application/json", 400, "Bad Request"),
    (b"\xff\xfe{", "application/json", 400, "Bad Request"),
    ('{"type": "echo"}', "text/plain", 415, "Unsupported Media Type"),
    ("type=echo", "application/x-www-form-urlencoded", 415, "Unsupported Media Type"),
])
def test_unparseable_bodies(raw: str | bytes, content_type: str, status: int, reason: str) -> None:
    reply = call("POST", "/api/v1/tasks", raw=raw, content_type=content_type)
    assert error(reply)[:2] == (status, reason)
    assert redis_snapshot() == {}


def test_body_over_the_default_limit_is_413() -> None:
    big = {"type": "echo", "payload": {"blob": "x" * (1024 * 1024)}}
    status, reason, message = error(call("POST", "/api/v1/tasks", big))
    assert (status, reason) == (413, "Content Too Large")
    assert "1048576" in message
    assert redis_snapshot() == {}


def test_body_limit_is_configurable() -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL,
                                      "API_MAX_BODY_BYTES": 100}):
        assert call("POST", "/api/v1/tasks", {"type": "echo"}).status == 201
        reply = call("POST", "/api/v1/tasks", {"type": "echo", "payload": {"x": "y" * 100}})
        assert reply.status == 413


def test_scheduled_at_in_the_future_makes_a_scheduled_task() -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    task = create(scheduled_at=when.isoformat())
    assert task["state"] == "scheduled"
    stored = datetime.fromisoformat(task["scheduled_at"].replace("Z", "+00:00"))
    assert abs((stored - when).total_seconds()) < 0.01


def test_delay_makes_a_scheduled_task_due_that_many_seconds_later() -> None:
    task = create(delay=30)
    created = datetime.fromisoformat(task["created_at"].replace("Z", "+00:00"))
    due = datetime.fromisoformat(task["scheduled_at"].replace("Z", "+00:00"))
    assert task["state"] == "scheduled" and due - created == timedelta(seconds=30)


@pytest.mark.parametrize("when", ["2001-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59"])
def test_scheduled_at_in_the_past_is_pending_at_once(when: str) -> None:
    assert create(scheduled_at=when)["state"] == "pending"


def test_scheduled_at_beyond_year_9999_is_capped() -> None:
    task = create(scheduled_at="9999-12-31T23:59:59-23:59")
    assert task["state"] == "scheduled" and task["scheduled_at"].startswith("9999-12-31")


def test_idempotency_key_returns_the_original_with_200() -> None:
    first = call("POST", "/api/v1/tasks", {"type": "echo"}, **{"Idempotency-Key": "order-42"})
    again = call("POST", "/api/v1/tasks", {"type": "echo", "payload": {"different": True}},
                 **{"Idempotency-Key": "order-42"})
    other = call("POST", "/api/v1/tasks", {"type": "echo"}, **{"Idempotency-Key": "order-43"})
    assert (first.status, again.status, other.status) == (201, 200, 201)
    assert again.body == first.body
    assert other.body["id"] != first.body["id"]
    assert call("GET", "/api/v1/tasks").body["total_pending"] == 2


def test_idempotency_key_lasts_24_hours() -> None:
    call("POST", "/api/v1/tasks", {"type": "echo"}, **{"Idempotency-Key": "k-ttl"})
    ttl = broker().client.pttl(broker().keys.idempotency("k-ttl", "anonymous"))
    assert 86_390_000 < ttl <= 86_400_000


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\there"])
def test_malformed_idempotency_key_is_400(key: str) -> None:
    reply = call("POST", "/api/v1/tasks", {"type": "echo"}, **{"Idempotency-Key": key})
    assert error(reply)[0] == 400 and "Idempotency-Key" in reply.body["message"]


def test_batch_creates_every_task_in_one_call() -> None:
    tasks = [{"type": "echo", "priority": p} for p in ("low", "normal", "high", "critical")]
    reply = call("POST", "/api/v1/tasks/batch", {"tasks": tasks})
    assert reply.status == 201 and reply.body["count"] == 4
    assert [t["priority"] for t in reply.body["tasks"]] == ["low", "normal", "high", "critical"]
    depths = call("GET", "/api/v1/tasks").body["queue_depths"]
    assert depths == {"critical": 1, "high": 1, "normal": 1, "low": 1}


def test_batch_of_1000_is_accepted() -> None:
    reply = call("POST", "/api/v1/tasks/batch", {"tasks": [{"type": "echo"}] * 1000})
    assert reply.status == 201 and reply.body["count"] == 1000
    assert call("GET", "/api/v1/tasks").body["total_pending"] == 1000


@pytest.mark.parametrize(("body", "fragment"), [
    ({"tasks": [{"type": "echo"}, {"type": "echo", "priority": 9}]}, "tasks[1]: priority"),
    ({"tasks": [{"type": "echo"}, "echo"]}, "tasks[1] must be a JSON object"),
    ({"tasks": [{"type": "echo"}] * 1001}, "tasks must be a list of 1 to 1000"),
    ({"tasks": []}, "tasks must be a list of 1 to 1000"),
    ({"tasks": {"type": "echo"}}, "tasks must be a list"),
    ({}, "tasks must be a list"),
    ({"tasks": [{"type": "echo"}], "extra": 1}, "unknown field 'extra'"),
])
def test_batch_is_validated_all_or_nothing(body: Any, fragment: str) -> None:
    status, _, message = error(call("POST", "/api/v1/tasks/batch", body))
    assert status == 400 and fragment in message
    assert redis_snapshot() == {}


def test_batch_honours_idempotency_key() -> None:
    body = {"tasks": [{"type": "echo"}, {"type": "sleep"}]}
    first = call("POST", "/api/v1/tasks/batch", body, **{"Idempotency-Key": "b-1"})
    again = call("POST", "/api/v1/tasks/batch", body, **{"Idempotency-Key": "b-1"})
    assert (first.status, again.status) == (201, 200)
    assert [t["id"] for t in again.body["tasks"]] == [t["id"] for t in first.body["tasks"]]


def test_get_returns_every_field_of_a_completed_task() -> None:
    task = create(priority="high")
    b = broker()
    register(b, "worker-abc123")
    job = take(b, "worker-abc123")
    b.ack(job, "worker-abc123", '{"sent": true}')
    reply = call("GET", f"/api/v1/tasks/{task['id']}")
    assert reply.status == 200
    got = reply.body
    assert (got["state"], got["attempts"], got["result"]) == ("completed", 1, {"sent": True})
    assert got["worker_id"] == "worker-abc123"
    assert {"started_at", "completed_at"} <= set(got)


def test_get_shows_error_and_next_retry_of_a_retrying_task() -> None:
    task = create()
    b = broker()
    register(b)
    job = take(b)
    b.fail(job, "worker-1", "SMTP connection failed")
    got = call("GET", f"/api/v1/tasks/{task['id']}").body
    assert got["state"] == "retrying" and got["error"] == "SMTP connection failed"
    assert "next_retry_at" in got


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "not-a-uuid", "1", "%00"])
def test_get_unknown_or_malformed_id_is_404(task_id: str) -> None:
    reply = call("GET", f"/api/v1/tasks/{task_id}")
    assert (reply.status, reply.body) == (404, {"error": "Not Found",
                                                "message": "task not found"})


@pytest.mark.parametrize("fields", [{}, {"delay": 60}])
def test_delete_cancels_pending_and_scheduled_tasks(fields: dict[str, Any]) -> None:
    task = create(**fields)
    reply = call("DELETE", f"/api/v1/tasks/{task['id']}")
    assert reply.status == 200
    assert (reply.body["id"], reply.body["state"]) == (task["id"], "cancelled")
    assert call("GET", "/api/v1/tasks").body["total_pending"] == 0


def test_delete_cancels_a_retrying_task() -> None:
    task = create()
    b = broker()
    register(b)
    job = take(b)
    b.fail(job, "worker-1", "boom")
    assert call("DELETE", f"/api/v1/tasks/{task['id']}").body["state"] == "cancelled"


@pytest.mark.parametrize("finish", ["running", "completed"])
def test_delete_of_a_running_or_finished_task_is_409(finish: str) -> None:
    task = create()
    b = broker()
    register(b)
    job = take(b)
    if finish == "completed":
        b.ack(job, "worker-1", "null")
    reply = call("DELETE", f"/api/v1/tasks/{task['id']}")
    assert (reply.status, reply.body) == (409, {
        "error": "Conflict", "message": "task cannot be cancelled in current state"})
    assert b.get(task["id"]).state.value == finish


def test_delete_unknown_is_404() -> None:
    reply = call("DELETE", f"/api/v1/tasks/{uuid.uuid4()}")
    assert (reply.status, reply.body["message"]) == (404, "task not found")


def depths(body: dict[str, object]) -> dict[str, object]:
    """The two documented fields of the queue depths answer."""
    return {k: body[k] for k in ("queue_depths", "total_pending")}


def test_queue_depths_show_all_four_priorities_and_count_only_pending() -> None:
    assert depths(call("GET", "/api/v1/tasks").body) == {
        "queue_depths": {"critical": 0, "high": 0, "normal": 0, "low": 0}, "total_pending": 0}
    for priority, n in (("critical", 5), ("high", 3), ("low", 1)):
        call("POST", "/api/v1/tasks/batch", {"tasks": [{"type": "echo", "priority": priority}] * n})
    create(delay=60)
    reply = call("GET", "/api/v1/tasks")
    assert reply.status == 200
    assert depths(reply.body) == {"queue_depths": {"critical": 5, "high": 3, "normal": 0,
                                                   "low": 1}, "total_pending": 9}
