"""What existing clients of this API (SDKs, dashboard, load scripts) send and read: queue
statistics, DLQ entry keys, task retry, queue purge, pause/resume answers, public health,
unknown task types, CORS and the /ws origin allow-list."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from taskqueue_project.settings import taskqueue_from_env
from tasks_app.checks import check_cors
from tasks_app.conf import tq_settings
from tasks_app.core.events import expand
from tasks_app.core.inspect import Inspector
from tasks_app.core.states import TaskState
from tasks_app.live.groups import group_channel
from tests.api_support import broker, call, create, error
from tests.factories import dead_letter, register, take
from tests.procs import WorkerPool, wait_for, wait_for_state
from tests.servers import LiveServer

CLIENT_KEY = "client-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
ALLOWED = "https://dash.example.com"
REFUSED = "https://evil.example.com"


def taskqueue(**extra: Any) -> dict[str, Any]:
    """TASKQUEUE for the test Redis with the given keys."""
    return {"REDIS_URL": tq_settings.REDIS_URL, **extra}


def auth_on(**extra: Any) -> Any:
    """override_settings with auth on, one client key and one admin key."""
    return override_settings(TASKQUEUE=taskqueue(
        AUTH_ENABLED=True, API_KEYS=[CLIENT_KEY], ADMIN_API_KEYS=[ADMIN_KEY], **extra))


# ---- queue statistics --------------------------------------------------------------------

def seed_every_state() -> str:
    """Pending 3 critical + 1 low, 1 scheduled high, 1 running high, 1 dead-lettered low."""
    b = broker()
    dead = dead_letter(b, 1)[0]
    create(priority="high")
    take(b)  # the high one: running
    for _ in range(3):
        create(priority="critical")
    create(priority="low")
    create(priority="high", delay=60)
    return dead


STATS = {
    "critical": {"depth": 3, "priority": 3, "scheduled": 0, "paused": False, "queued": 3,
                 "pending_unacked": 0},
    "high": {"depth": 0, "priority": 2, "scheduled": 1, "paused": False, "queued": 0,
             "pending_unacked": 1},
    "normal": {"depth": 0, "priority": 1, "scheduled": 0, "paused": False, "queued": 0,
               "pending_unacked": 0},
    "low": {"depth": 1, "priority": 0, "scheduled": 0, "paused": False, "queued": 1,
            "pending_unacked": 0},
}
TOTALS = {"queued": 4, "pending_unacked": 1, "scheduled": 1, "dlq_size": 1, "submitted": 7,
          "completed": 0, "failed": 1, "retries": 0, "cancelled": 0}


def check_stats(body: dict[str, Any]) -> None:
    assert body["queues"] == STATS
    assert list(body["queues"]) == ["critical", "high", "normal", "low"]
    assert (body["scheduled_count"], body["dlq_size"], body["totals"]) == (1, 1, TOTALS)


@pytest.mark.parametrize("auth", [False, True])
def test_task_list_carries_the_queue_statistics_beside_the_depths(auth: bool) -> None:
    seed_every_state()
    if auth:
        with auth_on():
            assert call("GET", "/api/v1/tasks").status == 401
            reply = call("GET", "/api/v1/tasks", **{"X-API-Key": CLIENT_KEY})
    else:
        reply = call("GET", "/api/v1/tasks")
    assert reply.status == 200
    assert reply.body["queue_depths"] == {"critical": 3, "high": 0, "normal": 0, "low": 1}
    assert reply.body["total_pending"] == 4
    check_stats(reply.body)


@pytest.mark.parametrize("auth", [False, True])
def test_admin_queues_carry_the_statistics_beside_the_documented_fields(auth: bool) -> None:
    seed_every_state()
    if auth:
        with auth_on():
            assert call("GET", "/admin/queues", **{"X-API-Key": CLIENT_KEY}).status == 403
            reply = call("GET", "/admin/queues", **{"X-API-Key": ADMIN_KEY})
    else:
        reply = call("GET", "/admin/queues")
    assert reply.status == 200
    assert (reply.body["total_depth"], reply.body["running"]) == (4, 1)
    check_stats(reply.body)


def test_running_per_priority_follows_the_leases() -> None:
    b = broker()
    register(b)
    for priority in ("critical", "critical", "normal"):
        create(priority=priority)
    jobs = [take(b), take(b)]
    body = call("GET", "/admin/queues").body
    assert body["queues"]["critical"]["pending_unacked"] == 2
    assert body["queues"]["normal"]["queued"] == 1
    b.ack(jobs[0], "worker-1", "null")
    body = call("GET", "/admin/queues").body
    assert body["queues"]["critical"]["pending_unacked"] == 1
    assert body["totals"]["completed"] == 1 and body["totals"]["pending_unacked"] == 1


# ---- dead-letter entries and DLQ retry ---------------------------------------------------

def test_dlq_entries_carry_task_id_and_task_type_on_top() -> None:
    task_id = dead_letter(broker(), 1)[0]
    entry = call("GET", "/admin/dlq").body["entries"][0]
    assert (entry["task_id"], entry["task_type"]) == (task_id, "echo")
    assert entry["task"]["id"] == task_id and entry["task"]["type"] == "echo"
    assert {"message_id", "reason", "added_at"} <= set(entry)


def test_dlq_retry_by_message_id_requeues_that_task() -> None:
    first, second = dead_letter(broker(), 2)
    entries = call("GET", "/admin/dlq").body["entries"]
    message_id = next(e["message_id"] for e in entries if e["task_id"] == first)
    reply = call("POST", "/admin/dlq/retry", {"message_id": message_id})
    assert (reply.status, reply.body) == (200, {"message": "task re-queued", "task_id": first})
    assert broker().get(first).state is TaskState.PENDING
    assert broker().get(second).state is TaskState.DEAD_LETTER
    again = call("POST", "/admin/dlq/retry", {"message_id": message_id})
    assert error(again) == (404, "Not Found", "task not found in dead letter queue")


@pytest.mark.parametrize("body", [
    {"task_id": str(uuid.uuid4()), "message_id": "1-0"},
    {"message_id": "1-0", "retry_all": True},
    {"message_id": "not-an-id"},
    {"message_id": 5},
    {},
])
def test_dlq_retry_with_both_ids_or_a_malformed_message_id_is_400(body: dict[str, Any]) -> None:
    reply = call("POST", "/admin/dlq/retry", body)
    assert reply.status == 400, reply.body


@pytest.mark.parametrize("message_id", ["1-0", "99999999999999999999-0", "0-69020812290228495043"])
def test_dlq_retry_of_an_unknown_message_id_is_404(message_id: str) -> None:
    """Well-formed (as the schema says) but in no entry, even past what a stream id can
    hold: 404, as for any id the DLQ does not have."""
    dead_letter(broker(), 1)
    reply = call("POST", "/admin/dlq/retry", {"message_id": message_id})
    assert error(reply) == (404, "Not Found", "task not found in dead letter queue")


# ---- POST /admin/tasks/{id}/retry --------------------------------------------------------

def test_retry_of_a_dead_lettered_task_requeues_it_under_its_id() -> None:
    task_id = dead_letter(broker(), 1, error="boom")[0]
    reply = call("POST", f"/admin/tasks/{task_id}/retry")
    assert reply.status == 200
    assert (reply.body["message"], reply.body["task_id"]) == ("task re-queued", task_id)
    task = reply.body["task"]
    assert (task["id"], task["state"], task["attempts"]) == (task_id, "pending", 0)
    assert "error" not in task
    assert call("GET", "/admin/dlq").body["size"] == 0
    assert take(broker()).id == task_id


def test_retry_of_a_failed_task_requeues_it_and_keeps_its_record(
        redis_client: redis.Redis) -> None:
    b = broker()
    register(b)
    task_id = create()["id"]
    job = take(b)
    assert b.fail(job, "worker-1", "bad input", permanent=True).state \
        is TaskState.FAILED
    assert redis_client.ttl(f"tq:{{default}}:task:{task_id}") > 0  # a finished task expires
    reply = call("POST", f"/admin/tasks/{task_id}/retry")
    assert (reply.status, reply.body["task"]["state"]) == (200, "pending")
    assert redis_client.ttl(f"tq:{{default}}:task:{task_id}") == -1
    again = take(b)
    assert (again.id, again.attempt) == (task_id, 1)


@pytest.mark.parametrize("state", ["pending", "running", "completed", "cancelled", "scheduled"])
def test_retry_in_any_other_state_is_409(state: str) -> None:
    b = broker()
    register(b)
    task_id = create(delay=60)["id"] if state == "scheduled" else create()["id"]
    if state in ("running", "completed"):
        job = take(b)
        if state == "completed":
            b.ack(job, "worker-1", "null")
    elif state == "cancelled":
        b.cancel(task_id)
    reply = call("POST", f"/admin/tasks/{task_id}/retry")
    assert error(reply) == (409, "Conflict", "task cannot be retried in current state")
    assert b.get(task_id).state.value == state


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_retry_of_an_unknown_task_is_404(task_id: str) -> None:
    assert error(call("POST", f"/admin/tasks/{task_id}/retry")) == (
        404, "Not Found", "task not found")


def test_task_retry_needs_an_admin_with_auth_on() -> None:
    task_id = dead_letter(broker(), 1)[0]
    with auth_on():
        assert call("POST", f"/admin/tasks/{task_id}/retry").status == 401
        assert call("POST", f"/admin/tasks/{task_id}/retry",
                    **{"X-API-Key": CLIENT_KEY}).status == 403
        assert broker().get(task_id).state is TaskState.DEAD_LETTER
        reply = call("POST", f"/admin/tasks/{task_id}/retry", **{"X-API-Key": ADMIN_KEY})
    assert reply.status == 200


# ---- DELETE /admin/queues/{priority} -----------------------------------------------------

@pytest.mark.parametrize("name", ["high", "2"])
def test_purge_cancels_the_pending_tasks_of_one_priority(name: str) -> None:
    high = [create(priority="high")["id"] for _ in range(3)]
    low = create(priority="low")["id"]
    later = create(priority="high", delay=60)["id"]
    reply = call("DELETE", f"/admin/queues/{name}")
    assert (reply.status, reply.body) == (200, {"message": "queue purged", "queue": "high",
                                                "priority": 2, "purged_count": 3})
    assert {broker().get(t).state for t in high} == {TaskState.CANCELLED}
    assert broker().get(low).state is TaskState.PENDING
    assert broker().get(later).state is TaskState.SCHEDULED
    assert call("DELETE", f"/admin/queues/{name}").body["purged_count"] == 0


@pytest.mark.parametrize("name", ["urgent", "4", "-1", "HIGH"])
def test_purge_of_an_unknown_priority_is_404(name: str) -> None:
    assert error(call("DELETE", f"/admin/queues/{name}")) == (404, "Not Found", "queue not found")


def test_purge_needs_an_admin_with_auth_on() -> None:
    create(priority="high")
    with auth_on():
        assert call("DELETE", "/admin/queues/high").status == 401
        assert call("DELETE", "/admin/queues/high", **{"X-API-Key": CLIENT_KEY}).status == 403
        assert call("GET", "/api/v1/tasks", **{"X-API-Key": CLIENT_KEY}).body[
            "total_pending"] == 1
        reply = call("DELETE", "/admin/queues/high", **{"X-API-Key": ADMIN_KEY})
    assert reply.body["purged_count"] == 1


# ---- pause and resume answers ------------------------------------------------------------

def test_worker_pause_and_resume_answers_carry_message_and_worker_id() -> None:
    register(broker(), "worker-abc123")
    paused = call("POST", "/admin/workers/worker-abc123/pause")
    assert (paused.status, paused.body["message"], paused.body["worker_id"]) == (
        200, "worker paused", "worker-abc123")
    assert (paused.body["id"], paused.body["state"]) == ("worker-abc123", "paused")
    resumed = call("POST", "/admin/workers/worker-abc123/resume")
    assert (resumed.body["message"], resumed.body["worker_id"], resumed.body["state"]) == (
        "worker resumed", "worker-abc123", "idle")


def test_queue_pause_and_resume_answers_carry_a_message() -> None:
    assert call("POST", "/admin/queues/low/pause").body["message"] == "queue paused"
    assert call("POST", "/admin/queues/low/resume").body["message"] == "queue resumed"


# ---- health without credentials ----------------------------------------------------------

@pytest.fixture
def evicting(redis_client: redis.Redis) -> Iterator[None]:
    """The shared test server set to allkeys-lru, put back to noeviction afterwards."""
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")


def test_health_needs_an_admin_by_default_with_auth_on() -> None:
    with auth_on():
        assert call("GET", "/admin/health").status == 401
        assert call("GET", "/admin/health", **{"X-API-Key": CLIENT_KEY}).status == 403


def test_public_health_answers_anyone_and_tells_only_the_status(evicting: None) -> None:
    with auth_on(PUBLIC_HEALTH=True):
        anonymous = call("GET", "/admin/health")
        client = call("GET", "/admin/health", **{"X-API-Key": CLIENT_KEY})
        admin = call("GET", "/admin/health", **{"X-API-Key": ADMIN_KEY})
    assert (anonymous.status, anonymous.body) == (200, {"status": "healthy",
                                                        "redis": "connected"})
    assert client.body == anonymous.body
    assert admin.body["redis_maxmemory_policy"] == "allkeys-lru" and admin.body["warnings"]


def test_public_health_when_redis_is_down_gives_no_reason_to_strangers() -> None:
    dead = "redis://127.0.0.1:1/0"
    with auth_on(PUBLIC_HEALTH=True, REDIS_URL=dead):
        anonymous = call("GET", "/admin/health")
        admin = call("GET", "/admin/health", **{"X-API-Key": ADMIN_KEY})
    assert (anonymous.status, anonymous.body) == (503, {
        "status": "unhealthy", "redis": "disconnected", "message": "redis is unreachable"})
    assert (admin.status, admin.body["error"]) == (503, "connection refused")


def test_public_health_comes_from_the_environment() -> None:
    assert taskqueue_from_env({"TASKQUEUE_PUBLIC_HEALTH": "1"}) == {"PUBLIC_HEALTH": True}


# ---- task types the web process does not know --------------------------------------------

def test_unknown_types_are_refused_by_default() -> None:
    reply = call("POST", "/api/v1/tasks", {"type": "compute"})
    assert error(reply) == (400, "Bad Request", "unknown task type 'compute'")


@pytest.mark.parametrize("task_type", ["compute", "webhook", "billing.invoice:v2"])
def test_unknown_types_are_accepted_with_the_setting(task_type: str) -> None:
    with override_settings(TASKQUEUE=taskqueue(ACCEPT_UNKNOWN_TYPES=True)):
        reply = call("POST", "/api/v1/tasks", {"type": task_type, "payload": {"n": 1}})
        batch = call("POST", "/api/v1/tasks/batch", {"tasks": [{"type": task_type}]})
    assert (reply.status, reply.body["type"], reply.body["state"]) == (201, task_type, "pending")
    assert batch.status == 201


@pytest.mark.parametrize("task_type", ["has space", "x" * 256, "tab\there", "é"])
def test_unknown_types_must_still_have_a_sane_form(task_type: str) -> None:
    with override_settings(TASKQUEUE=taskqueue(ACCEPT_UNKNOWN_TYPES=True)):
        reply = call("POST", "/api/v1/tasks", {"type": task_type})
    assert error(reply) == (400, "Bad Request",
                            "task type must be 1 to 255 visible ASCII characters")


def test_a_worker_without_the_handler_fails_the_task_for_good(
        pool: WorkerPool, inspector: Inspector, redis_client: redis.Redis) -> None:
    events = redis_client.pubsub()
    events.subscribe(group_channel())
    with override_settings(TASKQUEUE=taskqueue(ACCEPT_UNKNOWN_TYPES=True)):
        task_id = call("POST", "/api/v1/tasks", {"type": "compute", "max_retries": 3}).body["id"]
    worker = pool.start(env={"TASKQUEUE_ACCEPT_UNKNOWN_TYPES": "1"}, inspector=inspector)
    task = wait_for_state(task_id, ["failed", "dead_letter", "retrying"], timeout=20)
    assert (task.state, task.attempts) == (TaskState.FAILED, 1)
    assert task.error == "no handler for type 'compute'"
    seen: list[dict[str, Any]] = []
    failed = wait_for(lambda: next(
        (e for e in published(events, seen) if e["type"] == "task.failed"
         and e["data"]["task_id"] == task_id), None), timeout=5)
    assert (failed["data"]["will_retry"], failed["data"]["state"]) == (False, "failed")
    assert wait_for(lambda: worker.log_lines("no handler for type 'compute'") or None, 5)
    time.sleep(1.0)  # no retry comes
    assert broker().get(task_id).state is TaskState.FAILED
    events.close()


def published(pubsub: Any, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``seen`` with every task event published since (the scripts' compact JSON messages,
    expanded as the web process does)."""
    while (message := pubsub.get_message(timeout=0.05)) is not None:
        if message["type"] == "message":
            seen.extend(expand(json.loads(message["data"])))
    return seen


# ---- CORS and the /ws origin -------------------------------------------------------------

@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"TASKQUEUE_CORS_ALLOWED_ORIGINS": ALLOWED, "TASKQUEUE_AUTH_ENABLED": "1",
           "TASKQUEUE_API_KEYS": CLIENT_KEY, "TASKQUEUE_ADMIN_API_KEYS": ADMIN_KEY}
    with LiveServer(tmp_path_factory.mktemp("cors"), env) as live:
        yield live


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("no-cors")) as live:
        yield live


PREFLIGHT_HEADERS = "content-type, x-api-key, authorization, idempotency-key"


def preflight(server: LiveServer, path: str, origin: str) -> httpx.Response:
    return httpx.options(f"{server.url}{path}", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": PREFLIGHT_HEADERS}, timeout=10)


@pytest.mark.parametrize("path", ["/api/v1/tasks", "/admin/dlq/retry"])
def test_preflight_from_an_allowed_origin_is_answered(cors_server: LiveServer,
                                                      path: str) -> None:
    reply = preflight(cors_server, path, ALLOWED)
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == ALLOWED
    allowed = {h.strip() for h in reply.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-api-key", "authorization", "idempotency-key"} <= allowed
    assert "POST" in reply.headers["access-control-allow-methods"]


def test_preflight_from_another_origin_gets_no_allowance(cors_server: LiveServer) -> None:
    reply = preflight(cors_server, "/api/v1/tasks", REFUSED)
    assert "access-control-allow-origin" not in reply.headers


@pytest.mark.parametrize("path", ["/dashboard/", "/django-admin/login/", "/metrics"])
def test_cors_applies_to_the_api_paths_only(cors_server: LiveServer, path: str) -> None:
    reply = preflight(cors_server, path, ALLOWED)
    assert "access-control-allow-origin" not in reply.headers


def test_cors_is_off_by_default(plain_server: LiveServer) -> None:
    reply = preflight(plain_server, "/api/v1/tasks", ALLOWED)
    assert "access-control-allow-origin" not in reply.headers
    get = httpx.get(f"{plain_server.url}/api/v1/tasks", headers={"Origin": ALLOWED}, timeout=10)
    assert "access-control-allow-origin" not in get.headers


def test_the_actual_request_from_an_allowed_origin_is_readable(cors_server: LiveServer) -> None:
    reply = httpx.post(f"{cors_server.url}/api/v1/tasks", json={"type": "echo"},
                       headers={"Origin": ALLOWED, "X-API-Key": CLIENT_KEY}, timeout=10)
    assert reply.status_code == 201
    assert reply.headers["access-control-allow-origin"] == ALLOWED
    refused = httpx.get(f"{cors_server.url}/api/v1/tasks",
                        headers={"Origin": REFUSED, "X-API-Key": CLIENT_KEY}, timeout=10)
    assert refused.status_code == 200 and "access-control-allow-origin" not in refused.headers


def ws_status(server: LiveServer, origin: str) -> int | str:
    try:
        with connect(f"{server.ws_url}/ws", origin=Origin(origin),
                     additional_headers={"X-API-Key": CLIENT_KEY}, open_timeout=5):
            return "open"
    except InvalidStatus as refused:
        return refused.response.status_code


def test_ws_accepts_an_origin_of_the_allow_list(cors_server: LiveServer,
                                                plain_server: LiveServer) -> None:
    assert ws_status(cors_server, ALLOWED) == "open"
    assert ws_status(cors_server, REFUSED) == 403
    assert ws_status(cors_server, "https://dash.example.com:8443") == 403
    assert ws_status(plain_server, ALLOWED) == 403


def test_cors_origins_come_from_the_environment() -> None:
    env = {"TASKQUEUE_CORS_ALLOWED_ORIGINS": f"{ALLOWED}, http://localhost:5173"}
    assert taskqueue_from_env(env) == {"CORS_ALLOWED_ORIGINS": [ALLOWED,
                                                                "http://localhost:5173"]}


@pytest.mark.parametrize("origins", [["dash.example.com"], ["https://dash.example.com/"],
                                     ["https://x.example/path"], "https://dash.example.com"])
def test_malformed_origins_are_refused(origins: Any) -> None:
    with (override_settings(TASKQUEUE=taskqueue(CORS_ALLOWED_ORIGINS=origins)),
          pytest.raises(ImproperlyConfigured, match="CORS_ALLOWED_ORIGINS")):
        _ = tq_settings.CORS_ALLOWED_ORIGINS


def test_system_check_wants_the_middleware_when_origins_are_set(settings: Any) -> None:
    settings.TASKQUEUE = taskqueue(CORS_ALLOWED_ORIGINS=[ALLOWED])
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED]
    assert check_cors() == []
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "corsheaders" not in m]
    found = check_cors()
    assert [(type(m), m.id) for m in found] == [(Error, "taskqueue.E008")]


def test_system_check_warns_when_the_site_does_not_pass_the_origins_on(settings: Any) -> None:
    settings.TASKQUEUE = taskqueue(CORS_ALLOWED_ORIGINS=[ALLOWED])
    settings.CORS_ALLOWED_ORIGINS = []
    assert [(type(m), m.id) for m in check_cors()] == [(Warning, "taskqueue.W006")]
    settings.TASKQUEUE = taskqueue()
    assert check_cors() == []
