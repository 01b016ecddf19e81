"""Named queues in the REST API: `queue` on create and batch, the task's `queue`, the
per-queue figures beside the priority sums, and pausing a queue as a whole."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from tasks_app.conf import tq_settings
from tests.api_support import broker, call, create, error, redis_snapshot
from tests.factories import dead_letter, register, take

BAD_NAMES = ["", "-emails", "e mails", "q" * 65, "émails", 7]


def test_a_task_created_in_a_queue_shows_it_everywhere() -> None:
    made = create(queue="emails")
    assert made["queue"] == "emails"
    assert call("GET", f"/api/v1/tasks/{made['id']}").body["queue"] == "emails"
    assert create()["queue"] == "default"
    assert create(queue=None)["queue"] == "default"
    cancelled = call("DELETE", f"/api/v1/tasks/{made['id']}")
    assert (cancelled.status, cancelled.body["queue"]) == (200, "emails")


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_an_invalid_queue_name_is_400_naming_the_field(name: Any) -> None:
    before = redis_snapshot()
    status, reason, message = error(call("POST", "/api/v1/tasks", {"type": "echo",
                                                                  "queue": name}))
    assert (status, reason) == (400, "Bad Request")
    assert message.startswith("queue must be 1 to 64 characters")
    batch = {"tasks": [{"type": "echo"}, {"type": "echo", "queue": name}]}
    status, _, message = error(call("POST", "/api/v1/tasks/batch", batch))
    assert status == 400 and message.startswith("tasks[1]: queue must be 1 to 64")
    assert redis_snapshot() == before


def test_a_client_cannot_create_more_than_max_queues_queues() -> None:
    """Any client may name a queue, and each new name is a registry entry every worker,
    /metrics scrape and dashboard then reads: a flood of names stops at MAX_QUEUES (the
    existing queues keep working), and a refused create writes nothing."""
    with override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL, "MAX_QUEUES": 2}):
        for name in ("default", "q1", "q2"):
            assert create(queue=name)["queue"] == name
        before = redis_snapshot()
        status, _, message = error(call("POST", "/api/v1/tasks", {"type": "echo", "queue": "q3"}))
        assert status == 400 and "MAX_QUEUES" in message, message
        batch = {"tasks": [{"type": "echo", "queue": "q4"}]}
        assert error(call("POST", "/api/v1/tasks/batch", batch))[0] == 400
        workflow = {"queue": "q5", "chain": [{"type": "echo"}]}
        assert error(call("POST", "/api/v1/workflows", workflow))[0] == 400
        assert redis_snapshot() == before
        assert create(queue="q1")["queue"] == "q1" and create()["queue"] == "default"
        assert sorted(broker().queues(fresh=True)) == ["default", "q1", "q2"]  # as before


def test_a_batch_is_created_in_one_queue() -> None:
    body = {"tasks": [{"type": "echo", "queue": "emails"}] * 3}
    reply = call("POST", "/api/v1/tasks/batch", body)
    assert reply.status == 201
    assert [t["queue"] for t in reply.body["tasks"]] == ["emails"] * 3


@pytest.mark.parametrize("tasks", [
    [{"type": "echo", "queue": "emails"}, {"type": "echo"}, {"type": "echo"}],
    [{"type": "echo"}, {"type": "echo", "queue": "default"}, {"type": "echo", "queue": "x"}],
])
def test_a_batch_mixing_queues_is_400_and_creates_nothing(tasks: list[dict[str, Any]]) -> None:
    before = redis_snapshot()
    status, _, message = error(call("POST", "/api/v1/tasks/batch", {"tasks": tasks}))
    first = next(i for i, t in enumerate(tasks)
                 if t.get("queue", "default") != tasks[0].get("queue", "default"))
    assert status == 400 and message.startswith(f"tasks[{first}]: queue must be the same")
    assert redis_snapshot() == before


def test_idempotency_key_returns_the_first_task_and_its_queue() -> None:
    first = call("POST", "/api/v1/tasks", {"type": "echo", "queue": "emails"},
                 **{"Idempotency-Key": "signup-1"})
    again = call("POST", "/api/v1/tasks", {"type": "echo", "queue": "emails"},
                 **{"Idempotency-Key": "signup-1"})
    assert (first.status, again.status) == (201, 200)
    assert again.body["id"] == first.body["id"] and again.body["queue"] == "emails"


def test_dead_letter_entries_show_their_task_queue() -> None:
    dead_letter(broker(), 1)
    entries = call("GET", "/admin/dlq").body["entries"]
    assert entries[0]["task"]["queue"] == "default"


def named(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["name"]: q for q in body["named"]}


def test_queue_statistics_keep_the_sums_and_add_each_named_queue() -> None:
    for _ in range(3):
        create(queue="emails", priority="high")
    create(priority="low")
    create(queue="reports", delay=60)
    for path in ("/admin/queues", "/api/v1/tasks"):
        body = call("GET", path).body
        assert body["queues"]["high"]["depth"] == 3 and body["queues"]["low"]["depth"] == 1
        assert body["scheduled_count"] == 1
        queues = named(body)
        assert list(queues) == ["default", "emails", "reports"]
        assert queues["emails"] == {
            "name": "emails", "shards": 1, "paused": False, "depth": 3,
            "queue_depths": {"critical": 0, "high": 3, "normal": 0, "low": 0},
            "scheduled": 0, "dlq_size": 0}
        assert (queues["default"]["depth"], queues["reports"]["scheduled"]) == (1, 1)
    assert call("GET", "/api/v1/tasks").body["queue_depths"] == {
        "critical": 0, "high": 3, "normal": 0, "low": 1}
    listed = call("GET", "/admin/named-queues").body
    assert listed["count"] == 3 and named(listed) == named(call("GET", "/admin/queues").body)


def test_a_paused_named_queue_gives_workers_nothing_until_resumed() -> None:
    b = broker()
    email = create(queue="emails", priority="critical")
    low = create(priority="low")
    register(b)  # after the queue exists: a worker registers in each queue it serves
    reply = call("POST", "/admin/named-queues/emails/pause")
    assert reply.status == 200
    assert (reply.body["name"], reply.body["paused"], reply.body["depth"],
            reply.body["message"]) == ("emails", True, 1, "queue paused")
    assert named(call("GET", "/admin/queues").body)["emails"]["paused"] is True
    assert take(b).id == low["id"]
    assert b.dequeue("worker-1", (0, 1, 2, 3)) == "empty"
    resumed = call("POST", "/admin/named-queues/emails/resume")
    assert (resumed.body["paused"], resumed.body["message"]) == (False, "queue resumed")
    assert take(b).id == email["id"]


def test_pausing_an_unknown_queue_is_404_and_an_invalid_name_400() -> None:
    before = redis_snapshot()
    for action in ("pause", "resume"):
        assert error(call("POST", f"/admin/named-queues/never-used/{action}")) == (
            404, "Not Found", "queue not found")
        status, _, message = error(call("POST", f"/admin/named-queues/-bad/{action}"))
        assert status == 400 and message.startswith("queue name must be")
    assert redis_snapshot() == before
