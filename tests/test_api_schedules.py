"""The admin API of periodic schedules: its contract (status codes, bodies, errors naming
the field), against real Redis."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import override_settings

from tasks_app.conf import tq_settings
from tasks_app.core.schedules import Schedules
from tests.api_support import broker, call, error

BASE = {"name": "nightly", "type": "echo", "cron": "0 3 * * *", "timezone": "Europe/Paris",
        "payload": {"report": "sales"}}


def post(**fields: Any) -> Any:
    return call("POST", "/admin/schedules", {**BASE, **fields})


def test_create_then_list_and_read() -> None:
    reply = post()
    assert reply.status == 201, reply.body
    body = reply.body
    assert {k: body[k] for k in ("name", "type", "cron", "every", "timezone", "payload",
                                 "priority", "queue", "max_retries", "timeout", "catchup",
                                 "paused", "last_run_at", "last_task_id", "error")} == {
        "name": "nightly", "type": "echo", "cron": "0 3 * * *", "every": None,
        "timezone": "Europe/Paris", "payload": {"report": "sales"}, "priority": "low",
        "queue": "default", "max_retries": 3, "timeout": 300, "catchup": "latest",
        "paused": False, "last_run_at": None, "last_task_id": None, "error": None}
    assert body["next_run_at"].endswith(("01:00:00.000Z", "02:00:00.000Z"))  # 03:00 Paris
    listed = call("GET", "/admin/schedules")
    assert listed.status == 200 and listed.body["count"] == 1
    assert listed.body["schedules"] == [body]
    assert call("GET", "/admin/schedules/nightly").body == body


def test_a_django_task_schedule() -> None:
    reply = call("POST", "/admin/schedules", {
        "name": "digest", "task": "taskqueue_project.demo_tasks.add", "args": [1, 2],
        "every": 30})
    assert reply.status == 201, reply.body
    assert reply.body["task"] == "taskqueue_project.demo_tasks.add"
    assert reply.body["args"] == [1, 2] and reply.body["kwargs"] == {}


@pytest.mark.parametrize(("fields", "word"), [
    ({"cron": "0 25 * * *"}, "cron"),
    ({"cron": "0 3 * *"}, "cron"),
    ({"timezone": "Europe/Atlantis"}, "timezone"),
    ({"cron": None, "every": 0}, "every"),
    ({"every": 5}, "cron"),  # both
    ({"cron": None}, "cron"),  # neither
    ({"type": "no-such-type"}, "type"),
    ({"type": None, "task": "nowhere.tasks.nothing"}, "task"),
    ({"type": None, "task": "taskqueue_project.demo_tasks.add", "args": {}}, "args"),
    ({"name": "has space"}, "name"),
    ({"catchup": "sometimes"}, "catchup"),
    ({"priority": "urgent"}, "priority"),
    ({"max_retries": -1}, "max_retries"),
    ({"payload": [1]}, "payload"),
    ({"payload": {"x": "y" * 70_000}}, "payload"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_input_is_400_naming_the_field_and_creates_nothing(fields: dict[str, Any],
                                                                word: str) -> None:
    status, phrase, message = error(post(**fields))
    assert (status, phrase) == (400, "Bad Request")
    assert word in message
    assert call("GET", "/admin/schedules").body["count"] == 0
    assert broker().client.hlen(broker().keys.schedule_names) == 0


def test_a_deep_payload_is_refused() -> None:
    deep: Any = {}
    for _ in range(tq_settings.MAX_JSON_DEPTH + 2):
        deep = {"x": deep}
    status, _, message = error(post(payload=deep))
    assert status == 400 and "payload" in message


def test_unknown_types_pass_when_the_site_accepts_them() -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL,
                                      "ACCEPT_UNKNOWN_TYPES": True}):
        assert post(type="elsewhere.defined").status == 201


def test_an_existing_name_is_409_and_unknown_names_404() -> None:
    assert post().status == 201
    assert error(post(type="echo")) == (409, "Conflict", "a schedule named 'nightly' exists")
    for method, path in [("GET", ""), ("DELETE", ""), ("PATCH", ""), ("PUT", ""),
                         ("POST", "/pause"), ("POST", "/resume"), ("POST", "/trigger")]:
        body = {"type": "echo", "every": 5} if method in ("PUT", "PATCH") else None
        reply = call(method, f"/admin/schedules/ghost{path}", body)
        assert error(reply) == (404, "Not Found", "schedule not found"), (method, path)


def test_put_replaces_and_patch_changes_some_fields() -> None:
    post()
    put = call("PUT", "/admin/schedules/nightly", {"type": "echo", "every": 60})
    assert put.status == 200, put.body
    assert (put.body["every"], put.body["cron"], put.body["payload"]) == (60, None, {})
    assert put.body["timezone"] == "UTC"  # left out: its default
    patch = call("PATCH", "/admin/schedules/nightly", {"cron": "*/5 * * * *", "priority": 2})
    assert patch.status == 200, patch.body
    assert (patch.body["cron"], patch.body["every"], patch.body["priority"]) == (
        "*/5 * * * *", None, "high")
    assert patch.body["version"] > put.body["version"]
    renamed = call("PUT", "/admin/schedules/nightly", {"name": "other", "type": "echo",
                                                       "every": 5})
    assert error(renamed)[0] == 400 and "name" in error(renamed)[2]
    same = call("PUT", "/admin/schedules/nightly", {"name": "nightly", "type": "echo",
                                                    "every": 5})
    assert same.status == 200 and same.body["every"] == 5  # repeating the path's name is fine


def test_a_patch_without_a_body_is_400_and_changes_nothing() -> None:
    before = post().body
    reply = call("PATCH", "/admin/schedules/nightly")
    assert error(reply) == (400, "Bad Request", "request body must be a JSON object")
    after = call("GET", "/admin/schedules/nightly").body
    assert after["version"] == before["version"]
    empty = call("PATCH", "/admin/schedules/nightly", {})  # an empty object changes no field
    assert empty.status == 200 and empty.body["cron"] == before["cron"]


def test_pause_resume_trigger_and_delete() -> None:
    post()
    paused = call("POST", "/admin/schedules/nightly/pause")
    assert (paused.status, paused.body["paused"], paused.body["next_run_at"]) == (200, True, None)
    triggered = call("POST", "/admin/schedules/nightly/trigger")
    assert triggered.status == 200, triggered.body
    task_id = triggered.body["task_id"]
    task = call("GET", f"/api/v1/tasks/{task_id}").body
    assert task["type"] == "echo" and task["payload"] == {"report": "sales"}
    assert task["metadata"]["schedule"] == "nightly"
    assert task["metadata"]["scheduled_for"].endswith("Z")
    shown = call("GET", "/admin/schedules/nightly").body
    assert shown["last_task_id"] == task_id and shown["next_run_at"] is None
    resumed = call("POST", "/admin/schedules/nightly/resume")
    assert resumed.body["paused"] is False and resumed.body["next_run_at"]
    deleted = call("DELETE", "/admin/schedules/nightly")
    assert deleted.body == {"message": "schedule deleted", "name": "nightly"}
    assert call("GET", "/admin/schedules").body == {"schedules": [], "count": 0}
    assert call("GET", f"/api/v1/tasks/{task_id}").status == 200  # its tasks stay


def test_the_list_filters_by_queue_and_names_are_unique_across_queues() -> None:
    assert post(queue="reports").status == 201
    assert post(name="poll", cron=None, every=30).status == 201
    assert error(post(queue="default"))[0] == 409
    names = [s["name"] for s in call("GET", "/admin/schedules?queue=reports").body["schedules"]]
    assert names == ["nightly"]


def test_a_body_that_is_not_an_object_is_400() -> None:
    reply = call("POST", "/admin/schedules", [BASE])
    assert error(reply)[0] == 400


def test_the_stored_record_is_what_the_api_said() -> None:
    post()
    stored = Schedules(broker()).get("nightly")
    assert stored.spec.payload == {"report": "sales"}
    raw = broker().client.hgetall(broker().keys.schedule("nightly"))
    assert json.loads(raw["payload"]) == {"report": "sales"}


def test_schedule_metrics_are_scraped() -> None:
    from tests.test_metrics import scrape, value

    post(name="m", cron=None, every=1)
    schedules = Schedules(broker(), now=lambda: time.time() + 2.5)  # two ticks are due
    assert len(schedules.fire_due(["default"]).task_ids) == 1
    types, samples = scrape()
    assert types["taskqueue_schedule_runs"] == "counter"
    assert types["taskqueue_schedule_lag_seconds"] == "histogram"
    assert value(samples, "taskqueue_schedule_runs_total", schedule="m", queue="default") == 1
    assert value(samples, "taskqueue_schedule_missed_total", schedule="m", queue="default") == 1
    assert value(samples, "taskqueue_schedule_lag_seconds_count", schedule="m",
                 queue="default") == 1
    assert value(samples, "taskqueue_schedules") == 1
