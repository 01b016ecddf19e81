"""Every error is JSON {error, message} with the right status: Django's own, Redis down, 429."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client, override_settings

from tasks_app.api.views import tasks as task_views
from tasks_app.conf import tq_settings
from tasks_app.devserver.redis import EmbeddedRedis
from tests.api_support import all_keys, broker, call, call_on, create, error


def settings_with(**extra: Any) -> dict[str, Any]:
    """TASKQUEUE for the test Redis plus ``extra``."""
    return {"REDIS_URL": tq_settings.REDIS_URL, **extra}


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/admin/nothing", "/nothing",
                                  "/api/v1/tasks/"])  # "/" is the landing page
@pytest.mark.parametrize("debug", [False, True])
def test_unknown_paths_are_json_404(path: str, debug: bool) -> None:
    with override_settings(DEBUG=debug):
        reply = call("GET", path)
    assert error(reply)[:2] == (404, "Not Found")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PATCH", "/api/v1/tasks", {"GET", "POST"}),
    ("PUT", "/api/v1/tasks/" + str(uuid.uuid4()), {"GET", "DELETE"}),
    ("GET", "/api/v1/tasks/batch", {"POST"}),
    ("DELETE", "/admin/health", {"GET"}),
    ("GET", "/admin/dlq/retry", {"POST"}),
])
def test_wrong_method_is_json_405_with_allow(method: str, path: str, allowed: set[str]) -> None:
    reply = call(method, path)
    assert error(reply)[:2] == (405, "Method Not Allowed")
    assert allowed <= {m.strip() for m in reply.headers["Allow"].split(",")}


def test_unhandled_error_in_a_view_is_json_500(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(task_views, "inspector", boom)
    reply = call("GET", "/api/v1/tasks")
    assert (reply.status, reply.body) == (500, {"error": "Internal Server Error",
                                                "message": "internal server error"})


@pytest.mark.parametrize("debug", [False, True])
def test_error_outside_drf_is_json_500(monkeypatch: pytest.MonkeyPatch, debug: bool) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(task_views.TaskListView, "dispatch", boom)
    with override_settings(DEBUG=debug):
        reply = call("GET", "/api/v1/tasks")
    assert error(reply) == (500, "Internal Server Error", "internal server error")


def test_bad_host_header_is_json_400() -> None:
    client = Client(HTTP_HOST="evil.example", raise_request_exception=False)
    reply = call_on(client, "GET", "/api/v1/tasks")
    assert error(reply)[:2] == (400, "Bad Request")


REDIS_CALLS = [
    ("POST", "/api/v1/tasks", {"type": "echo"}),
    ("POST", "/api/v1/tasks/batch", {"tasks": [{"type": "echo"}]}),
    ("GET", "/api/v1/tasks", None),
    ("GET", f"/api/v1/tasks/{uuid.uuid4()}", None),
    ("DELETE", f"/api/v1/tasks/{uuid.uuid4()}", None),
    ("GET", "/admin/workers", None),
    ("GET", "/admin/workers/w-1", None),
    ("POST", "/admin/workers/w-1/pause", None),
    ("POST", "/admin/workers/w-1/resume", None),
    ("GET", "/admin/queues", None),
    ("POST", "/admin/queues/high/pause", None),
    ("POST", "/admin/queues/high/resume", None),
    ("GET", "/admin/dlq", None),
    ("POST", "/admin/dlq/retry", {"retry_all": True}),
    ("DELETE", "/admin/dlq", None),
]


@pytest.mark.parametrize(("method", "path", "body"), REDIS_CALLS)
def test_redis_down_is_503_service_unavailable(redis_server: EmbeddedRedis, method: str,
                                               path: str, body: Any) -> None:
    redis_server.stop()
    reply = call(method, path, body)
    assert error(reply) == (503, "Service Unavailable", "service unavailable")
    assert reply.headers["Retry-After"] == "1"


def test_full_queue_is_503_with_retry_after() -> None:
    with override_settings(TASKQUEUE=settings_with(MAX_PENDING=1)):
        create()
        reply = call("POST", "/api/v1/tasks", {"type": "echo"})
    assert error(reply) == (503, "Service Unavailable", "queue is full, retry later")
    assert reply.headers["Retry-After"] == "1"


def test_rate_limit_is_off_by_default() -> None:
    for _ in range(20):
        create()
    assert not all_keys("*ratelimit*")


def test_submission_over_the_rate_limit_is_429_with_retry_after() -> None:
    with override_settings(TASKQUEUE=settings_with(SUBMIT_RATE_LIMIT="3/m")):
        statuses = [call("POST", "/api/v1/tasks", {"type": "echo"}).status for _ in range(2)]
        statuses.append(call("POST", "/api/v1/tasks/batch", {"tasks": [{"type": "echo"}]}).status)
        limited = call("POST", "/api/v1/tasks", {"type": "echo"})
        reads = call("GET", "/api/v1/tasks")
    assert statuses == [201, 201, 201]
    assert error(limited)[:2] == (429, "Too Many Requests")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert reads.status == 200 and reads.body["total_pending"] == 3


def test_rate_limit_counters_live_in_redis_and_are_per_client() -> None:
    config = settings_with(SUBMIT_RATE_LIMIT="1/h", AUTH_ENABLED=True, API_KEYS=["key-a", "key-b"])
    with override_settings(TASKQUEUE=config):
        a1 = call("POST", "/api/v1/tasks", {"type": "echo"}, **{"X-API-Key": "key-a"})
        a2 = call("POST", "/api/v1/tasks", {"type": "echo"}, **{"X-API-Key": "key-a"})
        b1 = call("POST", "/api/v1/tasks", {"type": "echo"}, **{"X-API-Key": "key-b"})
        counters = all_keys("*ratelimit*")
        broker().client.delete(*counters)  # another process sees the same counters
        a3 = call("POST", "/api/v1/tasks", {"type": "echo"}, **{"X-API-Key": "key-a"})
    assert [a1.status, a2.status, b1.status, a3.status] == [201, 429, 201, 201]
    assert len(counters) == 2


@pytest.mark.parametrize(("scope", "api"), [
    ({"type": "http", "path": "/api/v1/tasks"}, True),
    ({"type": "http", "path": "/admin/dlq"}, True),
    ({"type": "http", "path": "/django-admin/"}, False),
    ({"type": "http", "path": "/metrics"}, False),
    ({"type": "websocket", "path": "/ws"}, False),
])
def test_only_api_requests_take_the_threaded_handler(scope: dict[str, Any], api: bool) -> None:
    import asyncio

    from tasks_app.api.asgi import ThreadedHandler, with_threaded_api

    seen: list[str] = []

    class Fake(ThreadedHandler):
        def __init__(self) -> None:
            pass

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append("api")

    async def other(scope: Any, receive: Any, send: Any) -> None:
        seen.append("other")

    asyncio.run(with_threaded_api(other, Fake())(scope, None, None))
    assert seen == ["api" if api else "other"]


def test_live_server_answers_api_errors_as_json(tmp_path: Any) -> None:
    import json
    import urllib.error
    import urllib.request

    from tests.servers import LiveServer

    with LiveServer(tmp_path) as server:
        request = urllib.request.Request(f"{server.url}/api/v1/tasks", method="PATCH")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        created = urllib.request.urlopen(urllib.request.Request(
            f"{server.url}/api/v1/tasks", data=b'{"type": "echo"}', method="POST",
            headers={"Content-Type": "application/json"}), timeout=10)
    assert caught.value.code == 405
    assert json.loads(caught.value.read())["error"] == "Method Not Allowed"
    assert created.status == 201 and json.loads(created.read())["state"] == "pending"
