"""Helpers for the REST API tests: a JSON client and seeds for tasks, workers and the DLQ."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.test import Client

from tasks_app.conf import tq_settings
from tasks_app.connection import get_broker
from tasks_app.core.broker import Broker

JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Reply:
    """Status, parsed JSON body and headers of one response."""

    status: int
    body: Any
    headers: dict[str, str]


def call(method: str, path: str, body: Any = None, *, raw: bytes | str | None = None,
         content_type: str = JSON_TYPE, **headers: str) -> Reply:
    """Send one request through Django; `body` is sent as JSON, `raw` as is."""
    client = Client(HTTP_HOST="localhost", raise_request_exception=False)
    return call_on(client, method, path, body, raw=raw, content_type=content_type, **headers)


def call_on(client: Client, method: str, path: str, body: Any = None, *,
            raw: bytes | str | None = None, content_type: str = JSON_TYPE,
            **headers: str) -> Reply:
    """Like `call`, through the given test client."""
    data: bytes | str | None = raw if raw is not None else (
        None if body is None else json.dumps(body))
    kwargs: dict[str, Any] = {"headers": headers}
    if data is not None:
        kwargs.update(data=data, content_type=content_type)
    response = getattr(client, method.lower())(path, **kwargs)
    text = response.content.decode() if response.content else ""
    assert response["Content-Type"].startswith(JSON_TYPE), (response.status_code, text[:200])
    parsed = json.loads(text) if text else None
    return Reply(response.status_code, parsed, {k: v for k, v in response.items()})


def error(reply: Reply) -> tuple[int, str, str]:
    """(status, error, message) of an error reply, after checking its shape."""
    assert set(reply.body) == {"error", "message"}, reply.body
    return reply.status, reply.body["error"], reply.body["message"]


def create(**fields: Any) -> dict[str, Any]:
    """Create one task through the API and return it."""
    reply = call("POST", "/api/v1/tasks", {"type": "echo", **fields})
    assert reply.status == 201, reply
    return dict(reply.body)


def broker() -> Broker:
    """The process-wide broker the API uses."""
    return get_broker()


def redis_snapshot() -> dict[Any, Any]:
    """Every key in Redis with its serialized value (to show a refused request wrote nothing)."""
    from tasks_app.core.topology import make_client

    client = make_client(tq_settings.REDIS_URL, decode_responses=False)
    try:
        return {key: client.dump(key) for key in client.keys("*")}
    finally:
        client.close()


def all_keys(pattern: str) -> list[Any]:
    """The keys matching ``pattern`` on every primary (one server, or each cluster master)."""
    client = broker().client
    if broker().cluster:
        return list(client.keys(pattern, target_nodes=client.PRIMARIES))
    return list(client.keys(pattern))

