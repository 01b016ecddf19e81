"""Per-type limits in the REST API: `/admin/types` and `/admin/types/{type}/limits` (read,
set, remove), their validation (400 naming the field, nothing changed) and counts."""

from __future__ import annotations

from typing import Any

import pytest

from tasks_app.core.limits import TypeLimit, TypeLimits
from tests.api_support import broker, call, create, error, redis_snapshot
from tests.factories import register


def test_set_read_list_and_remove_a_types_limits() -> None:
    assert error(call("GET", "/admin/types/email/limits")) == (
        404, "Not Found", "type limits not found")
    reply = call("PUT", "/admin/types/email/limits", {"concurrency": 2, "rate": "100/s"})
    assert reply.status == 200
    assert reply.body == {"type": "email", "concurrency": 2, "rate": "100/s", "running": 0,
                          "parked": 0}
    assert call("GET", "/admin/types/email/limits").body == reply.body
    call("PUT", "/admin/types/sms/limits", {"rate": "5/m"})
    listed = call("GET", "/admin/types").body
    assert listed["count"] == 2
    assert [t["type"] for t in listed["types"]] == ["email", "sms"]
    assert listed["types"][1] == {"type": "sms", "concurrency": None, "rate": "5/m",
                                  "running": 0, "parked": 0}
    gone = call("DELETE", "/admin/types/email/limits")
    assert gone.status == 200 and gone.body["concurrency"] is None
    assert call("GET", "/admin/types/email/limits").status == 404
    assert call("DELETE", "/admin/types/email/limits").status == 404


def test_running_and_parked_counts_follow_the_queue() -> None:
    call("PUT", "/admin/types/echo/limits", {"concurrency": 1})
    for _ in range(3):
        create(type="echo")
    register(broker(), "w1", concurrency=4)
    taken = broker().take("w1", (3, 2, 1, 0), 4)
    assert isinstance(taken, list) and len(taken) == 1
    state = call("GET", "/admin/types/echo/limits").body
    assert (state["running"], state["parked"]) == (1, 2)
    queues = call("GET", "/admin/queues").body
    assert queues["total_depth"] == 2  # parked tasks are pending
    assert [q["depth"] for q in call("GET", "/admin/named-queues").body["named"]] == [2]
    call("DELETE", "/admin/types/echo/limits")
    assert len(broker().take("w1", (3, 2, 1, 0), 4)) == 2  # they went back in line


@pytest.mark.parametrize(("body", "field"), [
    ({"concurrency": 0}, "concurrency"), ({"concurrency": -1}, "concurrency"),
    ({"concurrency": "2"}, "concurrency"), ({"concurrency": None}, "concurrency"),
    ({"rate": "100"}, "rate"), ({"rate": "0/s"}, "rate"), ({"rate": "10/d"}, "rate"),
    ({"rate": "ten/s"}, "rate"), ({}, "concurrency"), ({"concurrency": 1, "burst": 5}, "burst"),
    ([1], "body")])
def test_bad_limits_are_400_naming_the_field_and_change_nothing(body: Any, field: str) -> None:
    TypeLimits(broker()).set("email", TypeLimit(concurrency=4))
    before = redis_snapshot()
    status, reason, message = error(call("PUT", "/admin/types/email/limits", body))
    assert (status, reason) == (400, "Bad Request")
    assert message.startswith(field) or f"'{field}'" in message, message
    assert redis_snapshot() == before


def test_a_bad_type_is_400() -> None:
    status, _, message = error(call("PUT", "/admin/types/%C3%A9/limits", {"concurrency": 1}))
    assert status == 400 and message.startswith("type must be")


def test_metrics_show_running_parked_and_throttled_per_type() -> None:
    from tests.test_metrics import scrape, value

    call("PUT", "/admin/types/echo/limits", {"concurrency": 1})
    for _ in range(3):
        create(type="echo")
    register(broker(), "w1", concurrency=4)
    broker().take("w1", (3, 2, 1, 0), 4)
    types, samples = scrape()
    assert types["taskqueue_type_running"] == "gauge"
    assert types["taskqueue_type_throttled"] == "counter"
    assert value(samples, "taskqueue_type_running", type="echo") == 1
    assert value(samples, "taskqueue_type_parked", type="echo") == 2
    assert value(samples, "taskqueue_type_throttled_total", type="echo", queue="default") == 2
