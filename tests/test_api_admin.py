"""The admin API: health, workers, queues, the dead-letter queue."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from django.test import override_settings

from tasks_app.core.broker import PAUSED
from tasks_app.core.inspect import Inspector
from tasks_app.core.task import Job
from tasks_app.devserver.redis import EmbeddedRedis
from tests.api_support import broker, call, create, error
from tests.factories import dead_letter, register, take


def test_health_is_healthy_while_redis_answers() -> None:
    reply = call("GET", "/admin/health")
    assert (reply.status, reply.body) == (200, {"status": "healthy", "redis": "connected"})


def test_health_is_503_within_2_s_when_redis_is_down(redis_server: EmbeddedRedis) -> None:
    redis_server.stop()
    started = time.monotonic()
    reply = call("GET", "/admin/health")
    assert time.monotonic() - started < 2.0
    assert reply.status == 503
    assert reply.body["status"] == "unhealthy" and reply.body["redis"] == "disconnected"
    assert reply.body["error"] == "connection refused"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_health_answers_within_2_s_when_redis_hangs(silent_port: int) -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": f"redis://127.0.0.1:{silent_port}/0"}):
        started = time.monotonic()
        reply = call("GET", "/admin/health")
        elapsed = time.monotonic() - started
    assert reply.status == 503 and reply.body["error"] == "timed out"
    assert elapsed < 2.0


def test_workers_lists_live_workers_with_the_reference_fields() -> None:
    b = broker()
    register(b, "worker-abc123", concurrency=10)
    register(b, "worker-def456", concurrency=2)
    create()
    take(b, "worker-abc123")
    reply = call("GET", "/admin/workers")
    assert reply.status == 200 and reply.body["count"] == 2
    workers = {w["id"]: w for w in reply.body["workers"]}
    busy = workers["worker-abc123"]
    assert {"id", "state", "started_at", "last_heartbeat", "active_tasks",
            "concurrency"} <= set(busy)
    assert (busy["state"], busy["active_tasks"], busy["concurrency"]) == ("busy", 1, 10)
    assert workers["worker-def456"]["state"] == "idle"


def test_one_worker_and_404_for_an_unknown_one() -> None:
    register(broker(), "worker-abc123")
    assert call("GET", "/admin/workers/worker-abc123").body["id"] == "worker-abc123"
    for path in ("/admin/workers/nope", "/admin/workers/nope/pause",
                 "/admin/workers/nope/resume"):
        method = "GET" if path.count("/") == 3 else "POST"
        reply = call(method, path)
        assert (reply.status, reply.body) == (404, {"error": "Not Found",
                                                    "message": "worker not found"})


def test_pause_and_resume_a_worker() -> None:
    b = broker()
    register(b, "worker-abc123")
    create()
    paused = call("POST", "/admin/workers/worker-abc123/pause")
    assert (paused.status, paused.body["state"]) == (200, "paused")
    assert b.dequeue("worker-abc123", (0, 1, 2, 3)) == PAUSED
    resumed = call("POST", "/admin/workers/worker-abc123/resume")
    assert (resumed.status, resumed.body["state"]) == (200, "idle")
    assert isinstance(b.dequeue("worker-abc123", (0, 1, 2, 3)), Job)


def test_queues_show_the_reference_shape_and_additions() -> None:
    for priority, n in (("critical", 5), ("high", 2)):
        for _ in range(n):
            create(priority=priority)
    create(priority="low", delay=60)
    reply = call("GET", "/admin/queues")
    assert reply.status == 200
    assert reply.body["queues"]["critical"] == {"depth": 5, "priority": 3, "scheduled": 0,
                                                "paused": False, "queued": 5,
                                                "pending_unacked": 0}
    assert reply.body["queues"]["low"] == {"depth": 0, "priority": 0, "scheduled": 1,
                                           "paused": False, "queued": 0, "pending_unacked": 0}
    assert list(reply.body["queues"]) == ["critical", "high", "normal", "low"]
    assert (reply.body["total_depth"], reply.body["running"], reply.body["dlq_size"]) == (7, 0, 0)


@pytest.mark.parametrize("name", ["high", "2"])
def test_paused_priority_gives_workers_nothing(name: str) -> None:
    b = broker()
    register(b)
    create(priority="high")
    low = create(priority="low")
    reply = call("POST", f"/admin/queues/{name}/pause")
    assert (reply.status, reply.body) == (200, {"queue": "high", "priority": 2, "paused": True,
                                                "message": "queue paused"})
    assert call("GET", "/admin/queues").body["queues"]["high"]["paused"] is True
    assert take(b).id == low["id"]
    assert b.dequeue("worker-1", (0, 1, 2, 3)) == "empty"
    resumed = call("POST", f"/admin/queues/{name}/resume")
    assert resumed.body == {"queue": "high", "priority": 2, "paused": False,
                            "message": "queue resumed"}
    assert take(b).priority == 2


@pytest.mark.parametrize("name", ["urgent", "4", "-1"])
def test_unknown_queue_is_404(name: str) -> None:
    reply = call("POST", f"/admin/queues/{name}/pause")
    assert (reply.status, reply.body["message"]) == (404, "queue not found")


def test_dlq_lists_entries_newest_first_with_the_true_size() -> None:
    ids = dead_letter(broker(), 3, error="SMTP connection failed")
    reply = call("GET", "/admin/dlq")
    assert reply.status == 200 and reply.body["size"] == 3
    entries = reply.body["entries"]
    assert [e["task"]["id"] for e in entries] == ids[::-1]
    first = entries[0]
    assert {"task", "reason", "added_at", "message_id"} <= set(first)
    assert first["reason"] == "max retries exceeded"
    assert (first["task"]["state"], first["task"]["error"]) == ("dead_letter",
                                                                "SMTP connection failed")
    assert reply.body["next_cursor"] is None


def test_dlq_pages_with_limit_and_cursor() -> None:
    ids = dead_letter(broker(), 7)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = call("GET", f"/admin/dlq{query}").body
        assert body["size"] == 7 and len(body["entries"]) <= 3
        seen += [e["task"]["id"] for e in body["entries"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (ids[::-1], 3)


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "cursor=latest",
                                   "cursor=1-2-3", "limit=5&limit=22",
                                   "cursor=1-0&cursor=2-0"])
def test_dlq_bad_paging_parameters_are_400(query: str) -> None:
    status, _, message = error(call("GET", f"/admin/dlq?{query}"))
    assert status == 400 and query.split("=")[0] in message


def test_dlq_retry_one_task() -> None:
    ids = dead_letter(broker(), 2)
    reply = call("POST", "/admin/dlq/retry", {"task_id": ids[0]})
    assert (reply.status, reply.body) == (200, {"message": "task re-queued", "task_id": ids[0]})
    assert broker().get(ids[0]).state.value == "pending"
    assert call("GET", "/admin/dlq").body["size"] == 1


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "garbage"])
def test_dlq_retry_of_a_task_not_in_the_dlq_is_404(task_id: str) -> None:
    dead_letter(broker(), 1)
    reply = call("POST", "/admin/dlq/retry", {"task_id": task_id})
    assert error(reply)[:2] == (404, "Not Found")


def test_dlq_retry_of_a_live_task_is_404() -> None:
    task = create()
    assert call("POST", "/admin/dlq/retry", {"task_id": task["id"]}).status == 404


def test_dlq_retry_all_counts_what_it_requeued() -> None:
    dead_letter(broker(), 4)
    reply = call("POST", "/admin/dlq/retry", {"retry_all": True})
    assert (reply.status, reply.body) == (200, {"message": "tasks re-queued",
                                                "retried_count": 4})
    assert call("GET", "/api/v1/tasks").body["total_pending"] == 4


@pytest.mark.parametrize("body", [{}, {"retry_all": False}, {"task_id": ""},
                                  {"task_id": 5}, {"task_id": "x", "retry_all": True},
                                  {"retry_all": True, "more": 1}, ["x"]])
def test_dlq_retry_bad_bodies_are_400(body: object) -> None:
    assert error(call("POST", "/admin/dlq/retry", body))[0] == 400


def test_dlq_clear_removes_entries_and_task_records() -> None:
    ids = dead_letter(broker(), 3)
    reply = call("DELETE", "/admin/dlq")
    assert (reply.status, reply.body["message"]) == (200, "DLQ cleared")
    assert reply.body["cleared_count"] == 3
    assert call("GET", "/admin/dlq").body == {"entries": [], "size": 0, "next_cursor": None}
    for task_id in ids:
        assert call("GET", f"/api/v1/tasks/{task_id}").status == 404
    assert Inspector(broker()).dlq_size() == 0


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_dot_worker_id_normalised_by_clients_is_404(action: str) -> None:
    reply = call("POST", f"/admin/workers/{action}")  # what POST /admin/workers/./pause becomes
    assert (reply.status, reply.body["message"]) == (404, "worker not found")
    assert call("PUT", f"/admin/workers/{action}").status == 405
