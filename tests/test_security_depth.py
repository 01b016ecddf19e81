"""JSON nesting is bounded (MAX_JSON_DEPTH, 64 levels) at every way in.

The REST API (one task and a batch, on a live daphne), the Python producer, ``tq enqueue``
and the Django Tasks backend accept a payload or metadata nesting 64 levels and refuse 65,
naming the field; a request body nesting thousands of levels is a quick, clean 400.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis
import requests
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from taskqueue_project import demo_tasks
from tasks_app import producer
from tasks_app.core.errors import ValidationError
from tasks_app.core.nesting import text_depth, too_deep
from tests.servers import LiveServer

LIMIT = 64


def nested(levels: int) -> dict[str, Any]:
    """An object nesting ``levels`` levels: ``{"a": {"a": ... {}}}``."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def too_deep_text(name: str, limit: int = LIMIT) -> str:
    return f"{name} is nested too deeply (more than {limit} levels)"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live daphne for the module."""
    with LiveServer(tmp_path_factory.mktemp("depth-daphne")) as live:
        yield live


def post(server: LiveServer, path: str, body: Any) -> requests.Response:
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(f"{server.url}{path}", data=data, timeout=30,
                         headers={"Content-Type": "application/json"})


def test_the_measure_counts_containers_not_scalars() -> None:
    samples: list[Any] = [1, [], {"a": [1]}, nested(64)]
    assert [text_depth(json.dumps(v)) for v in samples] == [0, 1, 2, 64]
    assert text_depth('{"s": "[[[{{{\\"[["}') == 1  # brackets in strings do not count
    assert (too_deep(nested(64), 64), too_deep(nested(65), 64)) == (False, True)
    looped: list[Any] = []
    looped.append(looped)
    assert too_deep(looped, 64)  # ends, and says so


@pytest.mark.parametrize("field", ["payload", "metadata"])
def test_rest_create_accepts_64_levels_and_refuses_65_naming_the_field(
        server: LiveServer, field: str) -> None:
    ok = post(server, "/api/v1/tasks", {"type": "echo", field: nested(LIMIT)})
    assert ok.status_code == 201, ok.text[:300]
    assert ok.json()[field] == nested(LIMIT)

    refused = post(server, "/api/v1/tasks", {"type": "echo", field: nested(LIMIT + 1)})
    assert refused.status_code == 400
    assert refused.json() == {"error": "Bad Request", "message": too_deep_text(field)}


def test_rest_batch_names_the_item_and_the_field(server: LiveServer) -> None:
    tasks: list[dict[str, Any]] = [{"type": "echo", "payload": nested(LIMIT)} for _ in range(5)]
    ok = post(server, "/api/v1/tasks/batch", {"tasks": tasks})
    assert ok.status_code == 201, ok.text[:300]

    tasks[3] = {"type": "echo", "payload": nested(LIMIT + 1)}
    refused = post(server, "/api/v1/tasks/batch", {"tasks": tasks})
    assert refused.status_code == 400
    assert refused.json()["message"] == f"tasks[3]: {too_deep_text('payload')}"


@pytest.mark.parametrize("body", [
    # 9,000 levels, which the JSON decoder takes (written as text: Python 3.11's encoder
    # would hit its recursion limit)
    '{"type": "echo", "payload": ' + '{"a": ' * 8_999 + "{}" + "}" * 9_000,
    '{"type": "echo", "payload": ' + '{"a": ' * 10_000 + "1" + "}" * 10_001,
    "[" * 100_000 + "]" * 100_000,
    json.dumps({"type": "echo", "payload": {}, "not_a_field": nested(80)}),
])
def test_a_body_nested_too_deeply_anywhere_is_a_quick_clean_400(
        server: LiveServer, body: str) -> None:
    started = time.monotonic()
    reply = post(server, "/api/v1/tasks", body)
    assert reply.status_code == 400, reply.text[:300]
    assert reply.json() == {"error": "Bad Request",
                            "message": too_deep_text("request body", LIMIT + 8)}
    assert time.monotonic() - started < 3.0


def test_brackets_inside_strings_are_not_nesting(server: LiveServer) -> None:
    reply = post(server, "/api/v1/tasks", {"type": "echo", "payload": {"text": "[{" * 50_000}})
    assert reply.status_code == 201, reply.text[:300]


def test_producer_accepts_64_levels_and_refuses_65() -> None:
    assert producer.enqueue("echo", nested(LIMIT)).payload == nested(LIMIT)
    producer.enqueue("echo", {}, metadata=nested(LIMIT))
    for call in (lambda: producer.enqueue("echo", nested(LIMIT + 1)),
                 lambda: producer.enqueue("echo", {}, metadata=nested(LIMIT + 1)),
                 lambda: producer.enqueue_many([{"type": "echo"},
                                                {"type": "echo", "payload": nested(LIMIT + 1)}])):
        with pytest.raises(ValidationError, match="nested too deeply") as caught:
            call()
        assert caught.value.field in ("payload", "metadata")
    assert producer.inspector().queue_depths() == {"low": 2, "normal": 0, "high": 0,
                                                   "critical": 0}


def test_producer_limit_follows_the_setting() -> None:
    with override_settings(TASKQUEUE={**settings.TASKQUEUE, "MAX_JSON_DEPTH": 3}):
        producer.enqueue("echo", nested(3))
        with pytest.raises(ValidationError, match=r"more than 3 levels"):
            producer.enqueue("echo", nested(4))


def enqueue_cli(payload: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("tq", "enqueue", "echo", payload, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue()


def test_cli_enqueue_accepts_64_levels_and_refuses_deeper_cleanly() -> None:
    code, out = enqueue_cli(json.dumps(nested(LIMIT)))
    assert code == 0, out
    assert json.loads(out)["payload"] == nested(LIMIT)
    for text in (json.dumps(nested(LIMIT + 1)), "[" * 100_000 + "]" * 100_000):
        assert enqueue_cli(text) == (1, f"ValidationError: {too_deep_text('payload')}")
    code, message = enqueue_cli("[" * 100_000 + '"')
    assert code == 2 and message.startswith("payload is not JSON"), message


def test_django_task_arguments_are_bounded(redis_client: redis.Redis) -> None:
    # The stored payload is {"args": [...], "kwargs": {...}}: two levels around the arguments.
    result = cast(Any, demo_tasks.add).enqueue(nested(LIMIT - 2), 1)
    assert producer.get(result.id).payload["args"][0] == nested(LIMIT - 2)
    with pytest.raises(ValueError, match=f"may nest at most {LIMIT} levels"):
        cast(Any, demo_tasks.add).enqueue(nested(LIMIT - 1), 1)
    with pytest.raises(ValueError, match="nested too deeply"):
        cast(Any, demo_tasks.shout).enqueue("x", times=nested(20_000))
    assert producer.inspector().queue_depths()["normal"] == 1
