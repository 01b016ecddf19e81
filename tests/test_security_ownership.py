"""Who owns what: Idempotency-Key records are per principal, and with
TASK_VISIBILITY "owner" a task (REST and /ws) is seen only by its creator and admins.

REST through Django's test client with auth on (two client API keys, an admin key,
a JWT user, a staff JWT user); /ws against a real daphne.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from websockets.sync.client import ClientConnection, connect

from tasks_app import producer
from tasks_app.api.tokens import access_for
from tasks_app.conf import tq_settings
from tasks_app.core.events import expand
from tasks_app.core.inspect import Inspector
from tasks_app.core.keys import Keys, scoped
from tasks_app.live.groups import group_channel
from tests.api_support import Reply, broker, call, redis_snapshot
from tests.factories import WORKER, make_spec, open_broker, register, take
from tests.servers import LiveServer

pytestmark = pytest.mark.django_db

KEY_A = f"client-a-{uuid.uuid4().hex}"
KEY_B = f"client-b-{uuid.uuid4().hex}"
ADMIN_KEY = f"admin-{uuid.uuid4().hex}"
AUTH_ON: dict[str, Any] = {"AUTH_ENABLED": True, "API_KEYS": [KEY_A, KEY_B],
                           "ADMIN_API_KEYS": [ADMIN_KEY]}
SECRET = f"sekrit-{uuid.uuid4().hex}"


def settings(**extra: Any) -> Any:
    return override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL, **AUTH_ON, **extra})


def as_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def as_user(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_for(user)}"}


def post(headers: dict[str, str], payload: dict[str, Any], idem: str | None = None) -> Reply:
    extra = {"Idempotency-Key": idem} if idem else {}
    return call("POST", "/api/v1/tasks", {"type": "echo", "payload": payload},
                **headers, **extra)


@pytest.fixture
def user() -> User:
    return User.objects.create_user("plain-user", password="pw-plain-123456")


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("staff-user", password="pw-staff-123456", is_staff=True)


# ---- idempotency scoping ---------------------------------------------------------------

def test_same_idempotency_key_from_another_api_key_creates_its_own_task() -> None:
    with settings():
        first = post(as_key(KEY_A), {"secret": SECRET}, "order-42")
        other = post(as_key(KEY_B), {"mine": 1}, "order-42")
    assert first.status == 201 and other.status == 201, (first, other)
    assert other.body["id"] != first.body["id"]
    assert other.body["payload"] == {"mine": 1}
    assert SECRET not in json.dumps(other.body)
    assert broker().get(other.body["id"]).payload == {"mine": 1}


def test_same_principal_repeating_gets_its_first_task_with_200() -> None:
    with settings():
        first_a = post(as_key(KEY_A), {"n": "a"}, "order-42")
        first_b = post(as_key(KEY_B), {"n": "b"}, "order-42")
        again_a = post(as_key(KEY_A), {"n": "a2"}, "order-42")
        again_b = post(as_key(KEY_B), {"n": "b2"}, "order-42")
    assert (again_a.status, again_a.body["id"]) == (200, first_a.body["id"])
    assert (again_b.status, again_b.body["id"]) == (200, first_b.body["id"])
    assert again_b.body["payload"] == {"n": "b"}


def test_jwt_user_and_api_key_have_separate_idempotency_scopes(user: User) -> None:
    with settings():
        by_key = post(as_key(KEY_A), {"secret": SECRET}, "order-42")
        by_user = post(as_user(user), {"n": "user"}, "order-42")
        again = post(as_user(user), {"n": "user again"}, "order-42")
    assert by_user.status == 201 and by_user.body["id"] != by_key.body["id"]
    assert SECRET not in json.dumps(by_user.body)
    assert (again.status, again.body["id"]) == (200, by_user.body["id"])


def test_batch_idempotency_is_scoped_too() -> None:
    body = {"tasks": [{"type": "echo", "payload": {"secret": SECRET}}]}
    with settings():
        first = call("POST", "/api/v1/tasks/batch", body, **as_key(KEY_A),
                     **{"Idempotency-Key": "b-1"})
        other = call("POST", "/api/v1/tasks/batch", {"tasks": [{"type": "echo"}]},
                     **as_key(KEY_B), **{"Idempotency-Key": "b-1"})
    assert first.status == 201 and other.status == 201
    assert other.body["tasks"][0]["id"] != first.body["tasks"][0]["id"]
    assert SECRET not in json.dumps(other.body)


def test_auth_off_callers_share_the_anonymous_scope() -> None:
    first = post({}, {"n": 1}, "anon-1")
    again = post({}, {"n": 2}, "anon-1")
    assert (again.status, again.body["id"]) == (200, first.body["id"])
    assert broker().client.exists(broker().keys.idempotency("anon-1", "anonymous"))


def test_producer_scope_is_separate_from_http_callers() -> None:
    from_code = producer.submit([{"type": "echo"}], idempotency_key="order-42")
    over_http = post({}, {"n": 1}, "order-42")
    for_user = producer.submit([{"type": "echo"}], idempotency_key="order-42",
                               scope="user:7")
    repeated = producer.submit([{"type": "echo"}], idempotency_key="order-42")
    assert over_http.status == 201
    ids = {from_code.tasks[0].id, over_http.body["id"], for_user.tasks[0].id}
    assert len(ids) == 3
    assert repeated.duplicate and repeated.tasks[0].id == from_code.tasks[0].id


def test_scoped_names_cannot_collide() -> None:
    assert scoped("key:a", "b") != scoped("key", "a:b")
    assert scoped("user:1", "2:x") != scoped("user:12", "x")
    keys = Keys("ns")
    assert keys.idempotency("order-42", "user:1").startswith("tq:{ns}:idem:")
    assert keys.idempotency("1:user:1:x", "a") != keys.idempotency("x", "user:1")


def test_every_task_event_carries_the_owner_for_the_server_side_filter() -> None:
    """Each script that reports a task (enqueue, dequeue, ack, fail, recover, cancel, purge)
    puts the owner into the event, from the fields it already reads."""
    channel = group_channel()
    with open_broker(tq_settings.REDIS_URL, events_channel=channel, lease_seconds=0.05) as core:
        listener = core.client.pubsub()
        listener.subscribe(channel)
        register(core)
        specs = [make_spec(max_retries=m) for m in (0, 0, 1, 0, 0)]
        core.submit(specs, scope="key:owner1")
        done, failed, _lost = take(core), take(core), take(core)
        core.ack(done, WORKER, "1")
        core.fail(failed, WORKER, "boom")
        time.sleep(0.1)
        assert core.recover()[0]
        core.cancel(specs[3].id)
        assert Inspector(core).purge(0) == 1
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            message = listener.get_message(timeout=0.1)
            if message and message["type"] == "message":
                seen += expand(json.loads(message["data"]))
        listener.close()
    kinds = [e["type"] for e in seen]
    assert set(kinds) == {"task.submitted", "task.started", "task.completed", "task.failed",
                          "task.dead_lettered", "task.retrying", "task.cancelled"}, kinds
    assert kinds.count("task.cancelled") == 2
    assert all(e["data"]["owner"] == "key:owner1" for e in seen), seen


# ---- queues one caller may bring into existence -------------------------------------------

def test_one_key_cannot_take_every_place_in_the_queue_registry() -> None:
    """Each new queue name takes one of MAX_QUEUES places; one key may take at most
    MAX_QUEUES_PER_CLIENT, so it cannot lock every other client out of new queues. Queues
    that exist stay open to it, and so do the queues the settings name."""
    with settings(MAX_QUEUES=10, MAX_QUEUES_PER_CLIENT=2, QUEUES=["reports"]):
        for name in ("a-1", "a-2"):
            made = call("POST", "/api/v1/tasks", {"type": "echo", "queue": name},
                        **as_key(KEY_A))
            assert made.status == 201, made
        before = redis_snapshot()
        refused = call("POST", "/api/v1/tasks", {"type": "echo", "queue": "a-3"},
                       **as_key(KEY_A))
        assert refused.status == 400 and "MAX_QUEUES_PER_CLIENT" in refused.body["message"]
        flow = call("POST", "/api/v1/workflows", {"queue": "a-4", "chain": [{"type": "echo"}]},
                    **as_key(KEY_A))
        assert flow.status == 400 and "MAX_QUEUES_PER_CLIENT" in flow.body["message"]
        assert redis_snapshot() == before
        # the other key has places of its own, and may use the first key's queues
        assert call("POST", "/api/v1/tasks", {"type": "echo", "queue": "a-3"},
                    **as_key(KEY_B)).status == 201
        for name in ("a-3", "a-1", "reports", "default"):  # known or configured: not new
            assert call("POST", "/api/v1/tasks", {"type": "echo", "queue": name},
                        **as_key(KEY_A)).status == 201
        assert call("POST", "/api/v1/workflows", {"queue": "a-2", "chain": [{"type": "echo"}]},
                    **as_key(KEY_A)).status == 201
        # the site's own code is trusted: it is charged for no queue
        for name in ("code-1", "code-2", "code-3"):
            assert producer.enqueue("echo", queue=name).queue == name
        assert producer.chain(producer.step("echo"), queue="code-4").queue == "code-4"


def test_schedules_charge_their_caller_for_a_new_queue_and_a_refused_move_changes_nothing(
        ) -> None:
    """A schedule names its queue too: creating or moving one to a new queue charges the
    caller (an admin key, a staff user) like a task create, and a move that is refused
    leaves the schedule where it was."""
    def schedule(method: str, path: str, name: str, queue: str) -> Reply:
        return call(method, path, {"name": name, "type": "echo", "every": 60, "queue": queue},
                    **as_key(ADMIN_KEY))

    with settings(MAX_QUEUES_PER_CLIENT=2):
        for i in (1, 2):
            assert schedule("POST", "/admin/schedules", f"s{i}", f"s-{i}").status == 201
        kept = call("GET", "/admin/schedules/s1", **as_key(ADMIN_KEY)).body
        before = redis_snapshot()
        refused = schedule("POST", "/admin/schedules", "s3", "s-3")
        assert refused.status == 400 and "MAX_QUEUES_PER_CLIENT" in refused.body["message"]
        moved = schedule("PUT", "/admin/schedules/s1", "s1", "s-3")
        assert moved.status == 400 and "MAX_QUEUES_PER_CLIENT" in moved.body["message"]
        assert redis_snapshot() == before
        assert call("GET", "/admin/schedules/s1", **as_key(ADMIN_KEY)).body == kept
        # a key with places left may create there
        assert call("POST", "/api/v1/tasks", {"type": "echo", "queue": "s-3"},
                    **as_key(KEY_A)).status == 201
        assert schedule("PUT", "/admin/schedules/s1", "s1", "s-3").status == 200


# ---- TASK_VISIBILITY over REST -----------------------------------------------------------

def test_owner_visibility_hides_another_principals_task_like_an_unknown_id(
        user: User, staff: User) -> None:
    with settings(TASK_VISIBILITY="owner"):
        task_id = post(as_key(KEY_A), {"secret": SECRET}).body["id"]
        unknown = call("GET", f"/api/v1/tasks/{uuid.uuid4()}", **as_key(KEY_B))
        for stranger in (as_key(KEY_B), as_user(user)):
            got = call("GET", f"/api/v1/tasks/{task_id}", **stranger)
            cancelled = call("DELETE", f"/api/v1/tasks/{task_id}", **stranger)
            assert (got.status, got.body) == (404, unknown.body)
            assert (cancelled.status, cancelled.body) == (404, unknown.body)
        assert broker().get(task_id).state == "pending"
        for allowed in (as_key(KEY_A), as_key(ADMIN_KEY), as_user(staff)):
            got = call("GET", f"/api/v1/tasks/{task_id}", **allowed)
            assert got.status == 200 and got.body["payload"] == {"secret": SECRET}
            assert "owner" not in got.body
        assert call("DELETE", f"/api/v1/tasks/{task_id}", **as_key(KEY_A)).status == 200
        assert broker().get(task_id).state == "cancelled"


def test_owner_visibility_for_a_jwt_user_and_for_tasks_made_by_python_code(user: User) -> None:
    with settings(TASK_VISIBILITY="owner"):
        mine = post(as_user(user), {"n": 1}).body["id"]
        from_code = producer.enqueue("echo", {"n": 2}).id
        assert call("GET", f"/api/v1/tasks/{mine}", **as_user(user)).status == 200
        assert call("GET", f"/api/v1/tasks/{mine}", **as_key(KEY_A)).status == 404
        assert call("GET", f"/api/v1/tasks/{from_code}", **as_user(user)).status == 404
        assert call("GET", f"/api/v1/tasks/{from_code}", **as_key(ADMIN_KEY)).status == 200


def test_all_visibility_is_todays_behaviour() -> None:
    with settings():
        task_id = post(as_key(KEY_A), {"n": 1}).body["id"]
        assert call("GET", f"/api/v1/tasks/{task_id}", **as_key(KEY_B)).status == 200
        assert call("DELETE", f"/api/v1/tasks/{task_id}", **as_key(KEY_B)).status == 200


def test_owner_visibility_with_auth_off_shows_everything() -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL,
                                      "TASK_VISIBILITY": "owner"}):
        from_code = producer.enqueue("echo").id
        assert call("GET", f"/api/v1/tasks/{from_code}").status == 200


# ---- TASK_VISIBILITY over /ws (real daphne) --------------------------------------------

@pytest.fixture(scope="module")
def owner_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"TASKQUEUE_AUTH_ENABLED": "1", "TASKQUEUE_API_KEYS": f"{KEY_A},{KEY_B}",
           "TASKQUEUE_ADMIN_API_KEYS": ADMIN_KEY, "TASKQUEUE_TASK_VISIBILITY": "owner"}
    with LiveServer(tmp_path_factory.mktemp("owner-ws"), env) as live:
        yield live


def http_post(server: LiveServer, key: str, payload: dict[str, Any]) -> str:
    request = urllib.request.Request(
        f"{server.url}/api/v1/tasks", json.dumps({"type": "echo", "payload": payload}).encode(),
        {"Content-Type": "application/json", "X-API-Key": key}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["id"])


def received(sock: ClientConnection, quiet: float = 1.0) -> list[dict[str, Any]]:
    """Every event until the socket has been quiet for ``quiet`` seconds."""
    got = []
    while True:
        try:
            got.append(json.loads(sock.recv(timeout=quiet)))
        except TimeoutError:
            return got


def test_ws_delivers_task_events_only_to_their_owner_and_admins(
        owner_server: LiveServer) -> None:
    url = f"{owner_server.ws_url}/ws?types=task.*"
    with connect(f"{url}&api_key={KEY_A}") as sock_a, \
            connect(f"{url}&api_key={KEY_B}") as sock_b, \
            connect(f"{url}&api_key={ADMIN_KEY}") as sock_admin:
        time.sleep(0.5)  # the hub's subscription reaches Redis
        task_a = http_post(owner_server, KEY_A, {"secret": SECRET})
        task_b = http_post(owner_server, KEY_B, {"n": 1})
        assert broker().cancel(task_a).state == "cancelled"
        events_a, events_b, events_admin = (received(s) for s in (sock_a, sock_b, sock_admin))
    seen = {name: [(e["type"], e["data"]["task_id"]) for e in events]
            for name, events in (("a", events_a), ("b", events_b), ("admin", events_admin))}
    assert seen["a"] == [("task.submitted", task_a), ("task.cancelled", task_a)]
    assert seen["b"] == [("task.submitted", task_b)]
    assert sorted(seen["admin"]) == sorted(seen["a"] + seen["b"])
    for event in events_a + events_b + events_admin:
        assert "owner" not in event["data"], event


def test_ws_keeps_schedule_events_from_owner_filtered_clients(owner_server: LiveServer) -> None:
    """Schedules are admin business: a client limited to its own tasks gets none of their
    events (which name the schedule, its type and the task it created)."""
    from tasks_app.core.registry import registry
    from tasks_app.core.schedules import Schedules, parse_schedule

    url = f"{owner_server.ws_url}/ws?types=schedule.*,task.*"
    with connect(f"{url}&api_key={KEY_A}") as sock_a, \
            connect(f"{url}&api_key={ADMIN_KEY}") as sock_admin:
        time.sleep(0.5)  # the hub's subscription reaches Redis
        schedules = Schedules(broker())
        schedules.create(parse_schedule({"name": "nightly", "type": "echo", "every": 3600},
                                        registry))
        task_id = schedules.trigger("nightly")
        events_a, events_admin = received(sock_a), received(sock_admin)
    assert events_a == []
    assert ("schedule.fired", task_id) in [(e["type"], e["data"].get("task_id"))
                                           for e in events_admin]



def http_call(server: LiveServer, key: str, method: str, path: str,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{server.url}{path}", data,
                                     {"Content-Type": "application/json", "X-API-Key": key},
                                     method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.load(response))


def test_ws_delivers_workflow_events_only_to_their_owner_and_admins(
        owner_server: LiveServer) -> None:
    """A workflow event names the workflow, its queue and (failed) its failed step's task:
    another client learns none of it, as GET /api/v1/workflows/{id} is a 404 to it."""
    url = f"{owner_server.ws_url}/ws?types=workflow.*"
    with connect(f"{url}&api_key={KEY_A}") as sock_a, \
            connect(f"{url}&api_key={KEY_B}") as sock_b, \
            connect(f"{url}&api_key={ADMIN_KEY}") as sock_admin:
        time.sleep(0.5)  # the hub's subscription reaches Redis
        made = {}
        for name, key in (("a", KEY_A), ("b", KEY_B)):
            flow = {"chain": [{"type": "echo", "payload": {"secret": SECRET}}]}
            made[name] = http_call(owner_server, key, "POST", "/api/v1/workflows", flow)["id"]
            http_call(owner_server, key, "DELETE", f"/api/v1/workflows/{made[name]}")
        events_a, events_b, events_admin = (received(s) for s in (sock_a, sock_b, sock_admin))
    seen = {name: [(e["type"], e["data"]["workflow_id"]) for e in events]
            for name, events in (("a", events_a), ("b", events_b), ("admin", events_admin))}
    assert seen["a"] == [("workflow.cancelled", made["a"])]
    assert seen["b"] == [("workflow.cancelled", made["b"])]
    assert sorted(seen["admin"]) == sorted(seen["a"] + seen["b"])
    for event in events_a + events_b + events_admin:
        assert "owner" not in event["data"], event


def test_ws_workflow_events_follow_the_workflow_view_permission_for_staff(
        staff: User) -> None:
    """A staff user sees every task's events, but other clients' workflows' events only
    with tasks_app.view_workflow, as GET /api/v1/workflows/{id} asks."""
    from django.contrib.auth.models import Permission

    from tasks_app.visibility import event_scopes

    with settings(TASK_VISIBILITY="owner"):
        assert event_scopes(staff) == (None, f"user:{staff.pk}", False)
        staff.user_permissions.add(Permission.objects.get(
            content_type__app_label="tasks_app", codename="view_workflow"))
        assert event_scopes(User.objects.get(pk=staff.pk)) == (None, None, False)


def test_ws_schedule_events_follow_the_schedule_view_permission_for_staff(
        staff: User, user: User) -> None:
    """With TASK_VISIBILITY "owner", schedule events (schedule name, type, the task it
    created) go to admin keys and to staff holding workers_app.view_schedule, as
    GET /admin/schedules asks; a staff user without it gets none, like a client."""
    from django.contrib.auth.models import Permission

    from tasks_app.api.authentication import KeyPrincipal
    from tasks_app.core import events as ev
    from tasks_app.live.filters import EventFilter
    from tasks_app.visibility import event_scopes

    fired = ev.event(ev.SCHEDULE_FIRED, {"schedule": "nightly", "type": "echo"})

    def sees(principal: Any) -> bool:
        owner, workflow_owner, schedules = event_scopes(principal)
        return EventFilter(owner=owner, workflow_owner=workflow_owner,
                           schedules=schedules).match(fired)

    with settings(TASK_VISIBILITY="owner"):
        assert not sees(staff) and not sees(user)
        staff.user_permissions.add(Permission.objects.get(
            content_type__app_label="workers_app", codename="view_schedule"))
        assert sees(User.objects.get(pk=staff.pk))
        admin = KeyPrincipal(ident="key:admin", is_staff=True)
        assert sees(admin)
    with settings():  # "all": every client sees every task, schedule events included
        assert sees(staff) and sees(user)


def test_a_staff_user_cannot_cancel_anothers_workflow_by_cancelling_its_step(
        staff: User) -> None:
    """Cancelling a step cancels its workflow: for another client's workflow, a staff user
    needs what DELETE /api/v1/workflows/{id} asks (view_workflow and cancel_workflow)."""
    from django.contrib.auth.models import Permission

    chain = {"chain": [{"type": "echo"}, {"type": "echo"}]}
    with settings(TASK_VISIBILITY="owner"):
        made = call("POST", "/api/v1/workflows", chain, **as_key(KEY_A)).body
        step = made["steps"][0]["task_id"]
        refused = call("DELETE", f"/api/v1/tasks/{step}", **as_user(staff))
        assert (refused.status, refused.body) == (403, {
            "error": "Forbidden",
            "message": "missing permissions tasks_app.view_workflow, tasks_app.cancel_workflow"})
        assert call("DELETE", f"/api/v1/workflows/{made['id']}", **as_user(staff)).status == 404
        assert broker().get(step).state == "pending"
        assert producer.get_workflow(made["id"]).state == "pending"
        plain = post(as_key(KEY_A), {"n": 1}).body["id"]  # a task of no workflow: as before
        assert call("DELETE", f"/api/v1/tasks/{plain}", **as_user(staff)).status == 200
        mine = call("POST", "/api/v1/workflows", chain, **as_user(staff)).body
        own_step = mine["steps"][0]["task_id"]
        assert call("DELETE", f"/api/v1/tasks/{own_step}", **as_user(staff)).status == 200
        staff.user_permissions.add(*Permission.objects.filter(
            codename__in=("view_workflow", "cancel_workflow")))
        staff = User.objects.get(pk=staff.pk)
        assert call("DELETE", f"/api/v1/tasks/{step}", **as_user(staff)).status == 200
        assert producer.get_workflow(made["id"]).state == "cancelled"
        unknown = call("DELETE", f"/api/v1/tasks/{uuid.uuid4()}", **as_user(staff))
        assert unknown.status == 404
