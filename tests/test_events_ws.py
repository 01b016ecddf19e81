"""/ws through Channels' WebsocketCommunicator against the real channels-redis layer."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from taskqueue_project.asgi import application
from tasks_app import producer
from tasks_app.core import events as ev
from tasks_app.core.broker import Broker
from tasks_app.core.task import ms_to_iso
from tasks_app.live import groups, publisher
from tests.factories import make_spec

pytestmark = pytest.mark.django_db(transaction=True)  # Channels closes stale DB connections

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


async def connect(path: str = "/ws", headers: list[tuple[bytes, bytes]] | None = None
                  ) -> WebsocketCommunicator:
    client = WebsocketCommunicator(application, path, headers=headers or [])
    connected, _ = await client.connect(timeout=5)
    assert connected
    await asyncio.sleep(0.1)  # let the group subscription reach Redis
    return client


async def next_event(client: WebsocketCommunicator, timeout: float = 3) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await client.receive_from(timeout))
    return event


async def send_batch(batch: list[dict[str, Any]]) -> None:
    """Publish like the system does: task events to the task group, the rest to the other."""
    tasks = [e for e in batch if e["type"].startswith("task.")]
    rest = [e for e in batch if not e["type"].startswith("task.")]
    layer = get_channel_layer()
    if tasks:
        await layer.group_send(groups.TASK_GROUP, publisher.batch_message(tasks))
    if rest:
        await layer.group_send(groups.GROUP, publisher.batch_message(rest))


def worker_event(worker_id: str = "w1") -> dict[str, Any]:
    return ev.event(ev.WORKER_JOINED, ev.worker_data(worker_id, "idle"))


def task_event(task_id: str, kind: str = ev.TASK_STARTED) -> dict[str, Any]:
    return ev.event(kind, {"task_id": task_id, "type": "echo", "priority": "high"})


def test_submitted_event_reaches_a_client_in_the_reference_format() -> None:
    async def scenario() -> None:
        client = await connect()
        task = producer.enqueue("echo", {"x": 1}, priority="high")
        got = await next_event(client)
        assert got["type"] == "task.submitted"
        assert ISO_Z.match(got["timestamp"])
        assert got["data"]["task_id"] == task.id
        assert got["data"]["type"] == "echo"
        assert got["data"]["priority"] == "high"
        await client.disconnect()

    run(scenario)


def test_cancel_publishes_task_cancelled() -> None:
    async def scenario() -> None:
        task = producer.enqueue("echo", {})
        client = await connect(f"/ws?task_id={task.id}")
        producer.cancel(task.id)
        got = await next_event(client)
        assert (got["type"], got["data"]["task_id"]) == ("task.cancelled", task.id)
        await client.disconnect()

    run(scenario)


def test_queue_filter_passes_only_that_queues_task_events() -> None:
    async def scenario() -> None:
        client = await connect("/ws?queue=emails,reports&types=task.*")
        producer.enqueue("echo", {})
        wanted = producer.enqueue("echo", {}, queue="emails")
        got = await next_event(client)
        assert (got["data"]["task_id"], got["data"]["queue"]) == (wanted.id, "emails")
        assert await client.receive_nothing(0.3)
        await client.disconnect()

    run(scenario)


def test_type_filter_passes_only_matching_events() -> None:
    async def scenario() -> None:
        client = await connect("/ws?types=worker.*")
        await send_batch([task_event("t1"), worker_event("w9"), task_event("t2")])
        got = await next_event(client)
        assert got["type"] == "worker.joined" and got["data"]["worker_id"] == "w9"
        assert await client.receive_nothing(0.3)
        await client.disconnect()

    run(scenario)


def test_a_filter_with_too_many_or_too_long_type_patterns_is_closed_with_4400() -> None:
    """Each pattern is matched against every event the process forwards: a URL full of
    them would make one client cost as much as a thousand, so at most 32 of 64 characters."""
    async def scenario() -> None:
        for query in (",".join(f"t{i}.*" for i in range(33)), "worker." + "*" * 60):
            client = WebsocketCommunicator(application, f"/ws?types={query}")
            connected, _ = await client.connect(timeout=5)
            assert connected
            assert await client.receive_output(3) == {"type": "websocket.close", "code": 4400}
        most = ",".join(["worker.*"] + [f"t{i}.*" for i in range(31)])
        client = await connect(f"/ws?types={most}&types=x")  # repeated: 33 in all
        assert await client.receive_output(3) == {"type": "websocket.close", "code": 4400}
        client = await connect(f"/ws?types={most}")
        await send_batch([worker_event("w-32")])
        assert (await next_event(client))["data"]["worker_id"] == "w-32"
        await client.disconnect()

    run(scenario)


def test_task_id_filter() -> None:
    async def scenario() -> None:
        client = await connect("/ws?task_id=wanted")
        await send_batch([task_event("other"), task_event("wanted", ev.TASK_COMPLETED)])
        got = await next_event(client)
        assert (got["type"], got["data"]["task_id"]) == ("task.completed", "wanted")
        assert await client.receive_nothing(0.3)
        await client.disconnect()

    run(scenario)


def test_past_the_rate_task_events_pause_for_the_second_but_worker_events_flow() -> None:
    async def scenario() -> None:
        client = await connect()
        await send_batch([task_event(f"t{i}") for i in range(10)])
        received = [await next_event(client) for _ in range(4)]
        assert [e["type"] for e in received] == ["task.started"] * 3 + ["events.dropped"]
        assert received[3]["data"]["limit_per_second"] == 3
        await send_batch([task_event("during-pause"), worker_event("w2")])
        got = await next_event(client)
        assert (got["type"], got["data"]["worker_id"]) == ("worker.joined", "w2")
        assert await client.receive_nothing(0.3)
        await asyncio.sleep(1.0)
        await send_batch([task_event("after-pause")])
        assert (await next_event(client))["data"]["task_id"] == "after-pause"
        await client.disconnect()

    with override_settings(TASKQUEUE={"WS_MAX_EVENTS_PER_SECOND": 3}):
        run(scenario)


def test_without_clients_the_scripts_build_no_task_events(broker_for_lua: Broker) -> None:
    channel = groups.group_channel()
    assert broker_for_lua.client.pubsub_numsub(channel) == [(channel, 0)]

    async def scenario() -> None:
        client = await connect()
        assert broker_for_lua.client.pubsub_numsub(channel) == [(channel, 1)]
        await client.disconnect()
        await asyncio.sleep(0.2)
        assert broker_for_lua.client.pubsub_numsub(channel) == [(channel, 0)]

    run(scenario)


@pytest.mark.parametrize(("origin", "accepted"), [
    (None, True),
    (b"http://localhost:8080", True),
    (b"http://evil.example", False),
])
def test_origin_must_be_an_allowed_host(origin: bytes | None, accepted: bool) -> None:
    async def scenario() -> None:
        headers = [(b"origin", origin)] if origin else []
        client = WebsocketCommunicator(application, "/ws", headers=headers)
        connected, _ = await client.connect(timeout=5)
        assert connected is accepted
        await client.disconnect()

    run(scenario)


def test_a_script_event_carries_the_redis_time_of_its_transition(broker_for_lua: Broker
                                                                  ) -> None:
    """The scripts publish compact rows; expand() gives the wire events, stamped with the
    Redis clock of the step that made them (the task's own created_at)."""
    sub = broker_for_lua.client.pubsub()
    sub.subscribe(broker_for_lua.config.events_channel)
    assert sub.get_message(timeout=1)["type"] == "subscribe"
    task = broker_for_lua.enqueue(make_spec(priority=2))
    message = sub.get_message(timeout=1)
    email = broker_for_lua.enqueue(replace(make_spec(), queue="emails"))
    in_emails = sub.get_message(timeout=1)
    sub.close()
    [submitted] = ev.expand(json.loads(message["data"]))
    assert submitted == {"type": "task.submitted", "timestamp": ms_to_iso(task.created_at),
                         "data": {"task_id": task.id, "type": task.type, "priority": "high",
                                  "queue": "default", "state": "pending"}}
    [elsewhere] = ev.expand(json.loads(in_emails["data"]))
    assert (elsewhere["data"]["task_id"], elsewhere["data"]["queue"]) == (email.id, "emails")


@pytest.fixture
def broker_for_lua() -> Broker:
    from tasks_app.connection import get_broker

    return get_broker()


def test_a_client_that_falls_behind_its_buffer_is_disconnected() -> None:
    async def scenario() -> None:
        client = await connect()
        await send_batch([task_event(f"t{i}") for i in range(20)])
        closed = await client.receive_output(3)
        assert closed == {"type": "websocket.close", "code": 4408}

    with override_settings(TASKQUEUE={"WS_CLIENT_BUFFER": 10}):
        run(scenario)


AUTH_ON = {"AUTH_ENABLED": True, "API_KEYS": ["ws-user-key-1"], "ADMIN_API_KEYS": []}


@pytest.mark.parametrize(("path", "subprotocols", "accepted"), [
    ("/ws", [], False),
    ("/ws?api_key=wrong-key", [], False),
    ("/ws?api_key=ws-user-key-1", [], True),
    ("/ws", ["taskqueue", "apikey.ws-user-key-1"], True),
    ("/ws?token=not-a-jwt", [], False),
])
def test_with_auth_on_only_clients_with_credentials_get_events(
        path: str, subprotocols: list[str], accepted: bool) -> None:
    async def scenario() -> None:
        client = WebsocketCommunicator(application, path, subprotocols=subprotocols)
        connected, _ = await client.connect(timeout=5)
        assert connected
        if not accepted:
            assert await client.receive_output(3) == {"type": "websocket.close", "code": 4401}
            return
        await asyncio.sleep(0.1)
        await send_batch([worker_event("w-auth")])
        assert (await next_event(client))["data"]["worker_id"] == "w-auth"
        await client.disconnect()

    with override_settings(TASKQUEUE=AUTH_ON):
        run(scenario)


def test_with_auth_on_a_jwt_in_the_query_is_accepted() -> None:
    from django.contrib.auth.models import User

    from tasks_app.api.tokens import access_for

    user = User.objects.create_user("ws-user", password="pw-12345678")
    token = str(access_for(user))

    async def scenario() -> None:
        client = await connect(f"/ws?token={token}")
        await send_batch([worker_event("w-jwt")])
        assert (await next_event(client))["data"]["worker_id"] == "w-jwt"
        await client.disconnect()

    with override_settings(TASKQUEUE=AUTH_ON):
        run(scenario)


@pytest.mark.parametrize("granted", [(), ("view_workflow", "view_schedule")])
def test_a_staff_users_socket_gets_others_workflow_and_schedule_events_only_with_view(
        granted: tuple[str, ...]) -> None:
    """With TASK_VISIBILITY "owner" a staff user sees every task's events; another client's
    workflow events need tasks_app.view_workflow and schedule events
    workers_app.view_schedule, as their REST and Django admin pages do."""
    from django.contrib.auth.models import Permission, User

    from tasks_app.api.tokens import access_for

    staff = User.objects.create_user("ws-staff", password="pw-12345678", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=granted))
    token = str(access_for(staff))
    own = {"workflow_id": "w-own", "queue": "default", "state": "cancelled",
           "owner": f"user:{staff.pk}"}
    batch = [ev.event(ev.WORKFLOW_CANCELLED, {**own, "workflow_id": "w-other",
                                              "owner": "key:other"}),
             ev.event(ev.SCHEDULE_FIRED, {"schedule": "nightly", "type": "echo"}),
             ev.event(ev.WORKFLOW_CANCELLED, own)]

    async def scenario() -> None:
        client = await connect(f"/ws?token={token}&types=workflow.*,schedule.*")
        await send_batch(batch)
        got = [await next_event(client) for _ in range(3 if granted else 1)]
        assert await client.receive_nothing(0.3)
        await client.disconnect()
        seen = [e["data"].get("workflow_id") or e["data"].get("schedule") for e in got]
        assert seen == (["w-other", "nightly", "w-own"] if granted else ["w-own"])

    with override_settings(TASKQUEUE={**AUTH_ON, "TASK_VISIBILITY": "owner"}):
        run(scenario)


def test_one_client_holds_at_most_ws_max_sockets_per_client_sockets() -> None:
    """Each socket costs the web process a buffer and a filter run per event: with auth on,
    one principal's sockets past WS_MAX_SOCKETS_PER_CLIENT are closed with 4429; another
    client is not affected, and a closed socket gives its place back."""
    async def opened(key: str) -> WebsocketCommunicator:
        client = WebsocketCommunicator(application, f"/ws?api_key={key}")
        connected, _ = await client.connect(timeout=5)
        assert connected
        return client

    async def scenario() -> None:
        first, second = await opened("ws-user-key-1"), await opened("ws-user-key-1")
        third = await opened("ws-user-key-1")
        assert await third.receive_output(3) == {"type": "websocket.close", "code": 4429}
        other = await opened("ws-user-key-2")
        await asyncio.sleep(0.1)
        await send_batch([worker_event("w-cap")])
        for client in (first, second, other):
            assert (await next_event(client))["data"]["worker_id"] == "w-cap"
        await first.disconnect()
        again = await opened("ws-user-key-1")
        await asyncio.sleep(0.1)
        await send_batch([worker_event("w-again")])
        assert (await next_event(again))["data"]["worker_id"] == "w-again"
        for client in (second, other, again):
            await client.disconnect()

    capped = {**AUTH_ON, "API_KEYS": ["ws-user-key-1", "ws-user-key-2"],
              "WS_MAX_SOCKETS_PER_CLIENT": 2}
    with override_settings(TASKQUEUE=capped):
        run(scenario)


def test_a_socket_whose_connect_fails_gives_its_place_back() -> None:
    """With Redis away a connect fails before the socket opens and no disconnect follows:
    the socket's place under WS_MAX_SOCKETS_PER_CLIENT is given back, so a client that keeps
    reconnecting through an outage is not shut out (4429) once Redis is back."""
    dead = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                        "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}

    async def attempt() -> None:
        client = WebsocketCommunicator(application, "/ws?api_key=ws-user-key-1")
        try:
            connected, _ = await client.connect(timeout=5)
        except Exception:  # noqa: BLE001  (whatever the unreachable layer raises)
            connected = False
        assert not connected

    async def scenario() -> None:
        client = WebsocketCommunicator(application, "/ws?api_key=ws-user-key-1")
        connected, _ = await client.connect(timeout=5)
        assert connected
        await asyncio.sleep(0.1)
        await send_batch([worker_event("w-back")])
        assert (await next_event(client))["data"]["worker_id"] == "w-back"
        await client.disconnect()

    capped = {**AUTH_ON, "API_KEYS": ["ws-user-key-1"], "WS_MAX_SOCKETS_PER_CLIENT": 1}
    with override_settings(TASKQUEUE=capped):
        with override_settings(CHANNEL_LAYERS=dead):
            for _ in range(2):
                run(attempt)
        run(scenario)
