"""Every endpoint against hostile and under-privileged credentials: no data, no state change.

The endpoints are enumerated from the URLconf (and the WebSocket routes from the
ASGI app): ``test_every_route_is_in_the_matrix`` fails when a route has no case
here, so a new endpoint cannot be forgotten.  With auth on, each refused request
must answer without any seeded task, worker or DLQ data in its body, and leave
Redis (and the users, groups and API keys) exactly as it was.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import jwt
import pytest
from django.contrib.auth.models import Group, User
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tasks_app import producer
from tasks_app.api.tokens import access_for
from tasks_app.conf import tq_settings
from tasks_app.core.schedules import Schedules, ScheduleSpec
from tasks_app.models import APIKey
from tests.api_support import broker, create, redis_snapshot
from tests.browser import seed_database
from tests.factories import dead_letter, register
from tests.servers import LiveServer

pytestmark = [pytest.mark.django_db,
              pytest.mark.once]  # 1,500 cases of one Python path: the newest-Python leg

MARK = f"sekrit-{uuid.uuid4().hex}"
CLIENT_KEY = f"client-{uuid.uuid4().hex}"
ADMIN_KEY = f"admin-{uuid.uuid4().hex}"
AUTH_ON = {"AUTH_ENABLED": True, "API_KEYS": [CLIENT_KEY], "ADMIN_API_KEYS": [ADMIN_KEY]}
LOGIN = "/django-admin/login/"


@dataclass
class World:
    """What the endpoints could leak or change."""

    task_id: str
    dlq_id: str
    worker_id: str
    user_id: int
    group_id: int
    key_id: str
    staff: User
    user: User
    schedule: str = ""
    workflow: str = ""

    def secrets(self) -> list[str]:
        return [MARK, self.task_id, self.dlq_id, self.worker_id, self.schedule, self.workflow]


@pytest.fixture
def world() -> World:
    """A pending task and a DLQ entry holding MARK, a live worker, a user, a group, a key."""
    with override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL}):
        (dlq_id,) = dead_letter(broker(), 1, error=MARK, worker_id=f"dlq-{MARK}")
        task = create(payload={"secret": MARK})
        worker_id = register(broker(), f"worker-{MARK}")
        schedule = Schedules(broker()).create(ScheduleSpec(
            f"sched-{MARK}", "echo", payload={"secret": MARK}, every=3600)).name
        workflow = producer.chain(producer.step("echo", {"secret": MARK}),
                                  producer.step("echo")).id
    staff = User.objects.create(username="staffer", is_staff=True, is_superuser=True,
                                password="!unusable")  # no hashing: the matrix is large
    user = User.objects.create(username="plain", password="!unusable")
    group = Group.objects.create(name=f"g-{MARK}")
    key, _ = APIKey.objects.create_key(name=f"k-{MARK}")
    return World(task["id"], dlq_id, worker_id, user.pk, group.pk, str(key.pk), staff, user,
                 schedule, workflow)


# ---- credentials -------------------------------------------------------------------------

def access_token(user: User, **claims: Any) -> str:
    token = access_for(user)
    for name, value in claims.items():
        token[name] = value
    return str(token)


def expired(w: World) -> dict[str, str]:
    token = access_for(w.staff)
    token.set_exp(from_time=timezone.now() - timedelta(hours=1), lifetime=timedelta(minutes=5))
    return {"Authorization": f"Bearer {token}"}


def resigned(w: World, key: str | None, algorithm: str) -> dict[str, str]:
    payload = dict(access_for(w.staff).payload)
    return {"Authorization": f"Bearer {jwt.encode(payload, cast(Any, key), algorithm=algorithm)}"}


def deleted_user_token(w: World) -> dict[str, str]:
    ghost = User.objects.create_user(f"ghost-{uuid.uuid4().hex[:6]}", is_staff=True)
    token = access_token(ghost)
    ghost.delete()
    return {"Authorization": f"Bearer {token}"}


def db_key(*, admin: bool, revoked: bool = False, past: bool = False) -> dict[str, str]:
    expiry = timezone.now() - timedelta(minutes=1) if past else None
    record, key = APIKey.objects.create_key(name="hostile", is_admin=admin, revoked=revoked,
                                            expiry_date=expiry)
    return {"X-API-Key": key}


Credential = Callable[[World], dict[str, str]]

# Never enough for anything but the public pages.
HOSTILE: dict[str, Credential] = {
    "missing": lambda w: {},
    "bearer without token": lambda w: {"Authorization": "Bearer"},
    "malformed jwt": lambda w: {"Authorization": "Bearer not.a.jwt"},
    "truncated jwt": lambda w: {"Authorization": f"Bearer {access_token(w.staff)[:-4]}"},
    "basic auth": lambda w: {"Authorization": "Basic c3RhZmZlcjpwdy1zdGFmZi0xMjM0NTY="},
    "expired jwt": expired,
    "wrong-signature jwt": lambda w: resigned(w, "another-signing-key-0123456789abcdef",
                                              "HS256"),
    "alg none jwt": lambda w: resigned(w, None, "none"),
    "refresh token as access": lambda w: {
        "Authorization": f"Bearer {RefreshToken.for_user(w.staff)}"},
    "deleted user's jwt": deleted_user_token,
    "unknown api key": lambda w: {"X-API-Key": f"unknown-{uuid.uuid4().hex}"},
    "empty api key": lambda w: {"X-API-Key": ""},
    "prefix-only api key": lambda w: {"X-API-Key": "abcdefgh."},
    "revoked admin db key": lambda w: db_key(admin=True, revoked=True),
    "expired admin db key": lambda w: db_key(admin=True, past=True),
}
# Valid, but not an admin: refused on admin endpoints.
NON_ADMIN: dict[str, Credential] = {
    "client api key": lambda w: {"X-API-Key": CLIENT_KEY},
    "client db key": lambda w: db_key(admin=False),
    "non-staff jwt": lambda w: {"Authorization": f"Bearer {access_token(w.user)}"},
    "non-staff jwt claiming staff": lambda w: {
        "Authorization": f"Bearer {access_token(w.user, is_staff=True, is_superuser=True)}"},
}
# For the session-based pages (Django admin, dashboard): API credentials never log in.
SESSION_REFUSED: dict[str, Credential] = {
    "anonymous": lambda w: {},
    "admin api key": lambda w: {"X-API-Key": ADMIN_KEY},
    "staff jwt": lambda w: {"Authorization": f"Bearer {access_token(w.staff)}"},
    "non-staff session": lambda w: {"session": "plain"},
}


# Hostile API credentials also tried on the session pages (they must not log anyone in).
SESSION_HEADERS = ("expired jwt", "wrong-signature jwt", "alg none jwt", "unknown api key")


# ---- endpoints ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One request: ``level`` is client, admin, metrics, session or public."""

    method: str
    path: str
    level: str
    body: dict[str, Any] | None = None

    def url(self, w: World) -> str:
        return fill(self.path, w)


def fill(text: str, w: World) -> str:
    """Put the seeded ids into a path or a form value."""
    return text.format(task=w.task_id, dlq=w.dlq_id, worker=w.worker_id, user=w.user_id,
                       group=w.group_id, key=w.key_id, schedule=w.schedule,
                       workflow=w.workflow)


def admin_model_cases(model: str, obj: str) -> list[Case]:
    base = f"/django-admin/{model}/"
    return [Case("GET", base, "session"), Case("POST", base, "session",
                                               {"action": "delete_selected",
                                                "_selected_action": obj, "post": "yes"}),
            Case("GET", f"{base}add/", "session"),
            Case("POST", f"{base}add/", "session", {"name": "x", "username": "x"}),
            Case("GET", f"{base}{obj}/history/", "session"),
            Case("GET", f"{base}{obj}/delete/", "session"),
            Case("POST", f"{base}{obj}/delete/", "session", {"post": "yes"}),
            Case("GET", f"{base}{obj}/change/", "session"),
            Case("POST", f"{base}{obj}/change/", "session", {"name": "changed"}),
            Case("GET", f"{base}{obj}/", "session")]


CASES: list[Case] = [
    # REST API: tasks (any client)
    Case("POST", "/api/v1/tasks", "client", {"type": "echo", "payload": {"x": 1}}),
    Case("GET", "/api/v1/tasks", "client"),
    Case("POST", "/api/v1/tasks/batch", "client", {"tasks": [{"type": "echo"}]}),
    Case("GET", "/api/v1/tasks/{task}", "client"),
    Case("DELETE", "/api/v1/tasks/{task}", "client"),
    Case("POST", "/api/v1/workflows", "client", {"chain": [{"type": "echo"}]}),
    Case("GET", "/api/v1/workflows/{workflow}", "client"),
    Case("DELETE", "/api/v1/workflows/{workflow}", "client"),
    # REST API: admin
    Case("GET", "/admin/health", "admin"),
    Case("GET", "/admin/workers", "admin"),
    Case("GET", "/admin/workers/{worker}", "admin"),
    Case("POST", "/admin/workers/{worker}/pause", "admin"),
    Case("POST", "/admin/workers/{worker}/resume", "admin"),
    Case("GET", "/admin/queues", "admin"),
    Case("POST", "/admin/queues/high/pause", "admin"),
    Case("POST", "/admin/queues/high/resume", "admin"),
    Case("GET", "/admin/named-queues", "admin"),
    Case("POST", "/admin/named-queues/default/pause", "admin"),
    Case("POST", "/admin/named-queues/default/resume", "admin"),
    Case("GET", "/admin/types", "admin"),
    Case("GET", "/admin/types/echo/limits", "admin"),
    Case("PUT", "/admin/types/echo/limits", "admin", {"concurrency": 1}),
    Case("DELETE", "/admin/types/echo/limits", "admin"),
    Case("GET", "/admin/dlq", "admin"),
    Case("DELETE", "/admin/dlq", "admin"),
    Case("POST", "/admin/dlq/retry", "admin", {"retry_all": True}),
    Case("POST", "/admin/dlq/retry", "admin", {"task_id": "{dlq}"}),
    Case("POST", "/admin/tasks/{dlq}/retry", "admin"),
    Case("DELETE", "/admin/queues/high", "admin"),
    Case("GET", "/admin/schedules", "admin"),
    Case("POST", "/admin/schedules", "admin", {"name": "new-sched", "type": "echo", "every": 60}),
    Case("GET", "/admin/schedules/{schedule}", "admin"),
    Case("PUT", "/admin/schedules/{schedule}", "admin", {"type": "echo", "every": 60}),
    Case("PATCH", "/admin/schedules/{schedule}", "admin", {"every": 60}),
    Case("DELETE", "/admin/schedules/{schedule}", "admin"),
    Case("POST", "/admin/schedules/{schedule}/pause", "admin"),
    Case("POST", "/admin/schedules/{schedule}/resume", "admin"),
    Case("POST", "/admin/schedules/{schedule}/trigger", "admin"),
    # Public by design: the landing page (links only), logging in, the schema and its docs page
    Case("GET", "/", "public"),
    Case("POST", "/api/v1/auth/token", "public", {"username": "staffer", "password": "wrong"}),
    Case("POST", "/api/v1/auth/token/refresh", "public", {"refresh": "not-a-token"}),
    Case("POST", "/api/v1/auth/token/revoke", "public", {"refresh": "not-a-token"}),
    Case("GET", "/api/schema/", "public"),
    Case("GET", "/api/docs/", "public"),
    # Prometheus
    Case("GET", "/metrics", "metrics"),
    # Dashboard (staff session)
    Case("GET", "/dashboard/", "session"),
    Case("GET", "/dashboard/snapshot", "session"),
    # Django admin
    Case("GET", "/django-admin/", "session"),
    Case("GET", LOGIN, "public"),
    Case("POST", LOGIN, "public", {"username": "staffer", "password": "wrong"}),
    Case("POST", "/django-admin/logout/", "public"),
    Case("GET", "/django-admin/password_change/", "session"),
    Case("POST", "/django-admin/password_change/", "session",
         {"old_password": "x", "new_password1": "n3w-Pass-word!", "new_password2":
          "n3w-Pass-word!"}),
    Case("GET", "/django-admin/password_change/done/", "session"),
    Case("GET", "/django-admin/autocomplete/?app_label=auth&model_name=user&field_name=x",
         "session"),
    Case("GET", "/django-admin/jsi18n/", "public"),
    Case("GET", "/django-admin/r/1/{user}/", "session"),
    *admin_model_cases("auth/group", "{group}"),
    *admin_model_cases("auth/user", "{user}"),
    Case("GET", "/django-admin/auth/user/{user}/password/", "session"),
    Case("POST", "/django-admin/auth/user/{user}/password/", "session",
         {"password1": "n3w-Pass-word!", "password2": "n3w-Pass-word!"}),
    *admin_model_cases("tasks_app/apikey", "{key}"),
    *admin_model_cases("token_blacklist/outstandingtoken", "1"),
    *admin_model_cases("token_blacklist/blacklistedtoken", "1"),
    Case("GET", "/django-admin/tasks_app/deadletterentry/", "session"),
    Case("POST", "/django-admin/tasks_app/deadletterentry/", "session",
         {"action": "retry", "_selected_action": "{dlq}", "post": "yes"}),
    Case("POST", "/django-admin/tasks_app/deadletterentry/", "session",
         {"action": "delete", "_selected_action": "{dlq}", "post": "yes"}),
    Case("GET", "/django-admin/tasks_app/deadletterentry/{dlq}/change/", "session"),
    Case("GET", "/django-admin/workers_app/worker/", "session"),
    Case("POST", "/django-admin/workers_app/worker/{worker}/pause/", "session"),
    Case("GET", "/django-admin/workers_app/queue/", "session"),
    Case("POST", "/django-admin/workers_app/queue/high/pause/", "session"),
    Case("POST", "/django-admin/workers_app/queue/named/default/pause/", "session"),
    Case("POST", "/django-admin/workers_app/queue/type-limits/", "session",
         {"action": "set", "type": "echo", "concurrency": "1"}),
    Case("GET", "/django-admin/workers_app/schedule/", "session"),
    Case("GET", "/django-admin/tasks_app/workflow/", "session"),
    Case("GET", "/django-admin/tasks_app/workflow/{workflow}/change/", "session"),
    Case("POST", "/django-admin/tasks_app/workflow/{workflow}/cancel/", "session"),
    Case("GET", "/django-admin/workers_app/schedule/add/", "session"),
    Case("POST", "/django-admin/workers_app/schedule/add/", "session",
         {"name": "new-sched", "type": "echo", "every": "60", "priority": "low",
          "catchup": "latest"}),
    Case("GET", "/django-admin/workers_app/schedule/{schedule}/change/", "session"),
    Case("POST", "/django-admin/workers_app/schedule/{schedule}/change/", "session",
         {"type": "echo", "every": "60", "priority": "low", "catchup": "latest",
          "version": "1"}),
    Case("POST", "/django-admin/workers_app/schedule/{schedule}/pause/", "session"),
    Case("POST", "/django-admin/workers_app/schedule/{schedule}/trigger/", "session"),
    Case("GET", "/django-admin/workers_app/schedule/{schedule}/delete/", "session"),
    Case("POST", "/django-admin/workers_app/schedule/{schedule}/delete/", "session"),
    Case("GET", "/django-admin/tasks_app/", "session"),
    Case("GET", "/django-admin/no-such-page/", "session"),
]

WS_CASES = ["/ws"]


def routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    """Every route of the URLconf, as ``ResolverMatch.route`` spells it."""
    for pattern in patterns:
        text = prefix + str(pattern.pattern).removeprefix("^")
        if isinstance(pattern, URLResolver):
            yield from routes(pattern.url_patterns, text)
        else:
            yield text


def test_every_route_is_in_the_matrix(world: World) -> None:
    from tasks_app.routing import websocket_urlpatterns

    websocket_routes = websocket_urlpatterns()
    covered = {resolve(case.url(world).split("?")[0]).route for case in CASES}
    missing = set(routes(get_resolver().url_patterns)) - covered
    assert not missing, f"routes without an auth-matrix case: {sorted(missing)}"
    ws = {"/" + str(route.pattern) for route in websocket_routes}
    assert ws <= set(WS_CASES), f"WebSocket routes without a case: {sorted(ws - set(WS_CASES))}"


# ---- HTTP matrix -------------------------------------------------------------------------

def credentials_for(level: str) -> dict[str, Credential]:
    if level == "client":
        return HOSTILE
    if level in ("admin", "metrics"):
        return {**HOSTILE, **NON_ADMIN}
    if level == "session":
        return {**SESSION_REFUSED, **{f"header {k}": HOSTILE[k] for k in SESSION_HEADERS}}
    return {**HOSTILE, "admin api key": SESSION_REFUSED["admin api key"]}  # public


def database_state() -> tuple[Any, ...]:
    return (list(User.objects.values_list("username", "password", "is_staff", "is_active")),
            list(Group.objects.values_list("name")),
            list(APIKey.objects.values_list("name", "revoked", "is_admin")))


def send(world: World, case: Case, headers: dict[str, str]) -> tuple[int, str, dict[str, str]]:
    client = Client(HTTP_HOST="localhost", raise_request_exception=False)
    headers = dict(headers)
    if headers.pop("session", None) == "plain":
        client.force_login(world.user)
    body = None if case.body is None else {
        k: (fill(v, world) if isinstance(v, str) else v)
        for k, v in case.body.items()}
    url = case.url(world)
    if case.method == "GET":
        response = client.get(url, headers=headers)
    elif case.path.startswith("/django-admin/") and case.method == "POST":
        response = client.post(url, body or {}, headers=headers)
    else:
        response = client.generic(case.method, url, "" if body is None else json.dumps(body),
                                  "application/json", headers=headers)
    text = response.content.decode("utf-8", "replace") if not response.streaming else ""
    return response.status_code, text, {k: v for k, v in response.items()}


MATRIX = [(case, name) for case in CASES for name in credentials_for(case.level)]


@pytest.mark.parametrize(("case", "credential"), MATRIX,
                         ids=[f"{c.method} {c.path} | {n}" for c, n in MATRIX])
def test_refused_credentials_get_no_data_and_change_nothing(world: World, case: Case,
                                                           credential: str) -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL, **AUTH_ON}):
        offered = credentials_for(case.level)[credential](world)
        before = (redis_snapshot(), database_state())
        status, text, headers = send(world, case, offered)
        after = (redis_snapshot(), database_state())
    if case.path in ("/api/v1/auth/token", LOGIN):  # a failed login is counted (throttle)
        after = ({k: v for k, v in after[0].items() if b":login-failures:" not in k}, after[1])
    leaked = [s for s in world.secrets() if s in text]
    assert not leaked, (status, text[:500])
    assert after == before, "a refused request changed state"
    assert status < 500, text[:500]
    if case.level in ("client", "admin", "metrics"):
        body = json.loads(text)
        assert set(body) == {"error", "message"}, body
        assert status in (401, 403), body
        if status == 401:
            assert "WWW-Authenticate" in headers
    elif case.level == "session":
        assert status in (302, 403, 404, 405), text[:300]
        if status == 302:
            assert headers["Location"].startswith(LOGIN), headers["Location"]
        if case.path.startswith("/django-admin/") and case.path != "/django-admin/no-such-page/":
            assert status != 404 or case.method != "GET", text[:300]


def test_control_staff_session_does_see_the_data(world: World) -> None:
    """The matrix would pass vacuously if the seeded data never showed: it does, to staff."""
    client = Client(HTTP_HOST="localhost")
    client.force_login(world.staff)
    with override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL, **AUTH_ON}):
        page = client.get("/django-admin/tasks_app/deadletterentry/")
        assert world.dlq_id in page.content.decode()
        reply = client.get(f"/api/v1/tasks/{world.task_id}", headers={"X-API-Key": ADMIN_KEY})
        assert MARK in reply.content.decode()
        page = client.get("/django-admin/workers_app/schedule/")
        assert world.schedule in page.content.decode()
        metrics = client.get("/metrics", headers={"X-API-Key": ADMIN_KEY})
        assert metrics.status_code == 200 and b"taskqueue_queue_depth" in metrics.content


# ---- WebSocket ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("matrix-ws")
    seed_database(folder / "db.sqlite3")  # a bearer credential that is no JWT is a key to look up
    env = {"TASKQUEUE_AUTH_ENABLED": "1", "TASKQUEUE_API_KEYS": CLIENT_KEY,
           "TASKQUEUE_ADMIN_API_KEYS": ADMIN_KEY, "DATABASE_PATH": str(folder / "db.sqlite3")}
    with LiveServer(folder, env) as live:
        yield live


def ws_outcome(server: LiveServer, query: str = "", origin: str | None = None,
               subprotocols: list[str] | None = None,
               headers: dict[str, str] | None = None) -> int | str:
    """'open' when the socket stays open 0.5 s; else the close code or the HTTP status."""
    try:
        with connect(f"{server.ws_url}/ws{query}", additional_headers=headers or None,
                     origin=origin, subprotocols=subprotocols,  # type: ignore[arg-type]
                     open_timeout=5) as sock:
            try:
                sock.recv(timeout=0.5)
            except TimeoutError:
                return "open"
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else "closed"
            return "open"
    except InvalidStatus as refused:
        return refused.response.status_code


WS_HOSTILE: dict[str, dict[str, Any]] = {
    "missing": {},
    "unknown key header": {"headers": {"X-API-Key": "unknown-key-0123456789"}},
    "unknown key query": {"query": "?api_key=unknown-key-0123456789"},
    "unknown key subprotocol": {"subprotocols": ["apikey.unknown-key-0123456789"]},
    "malformed jwt query": {"query": "?token=not.a.jwt"},
    "malformed bearer header": {"headers": {"Authorization": "Bearer x"}},
    "wrong-signature jwt": {"query": "?token=" + jwt.encode(
        {"token_type": "access", "user_id": "1", "exp": 4102444800, "jti": "x"},
        "another-signing-key-0123456789abcdef", algorithm="HS256")},
    "alg none jwt": {"query": "?token=" + jwt.encode(
        {"token_type": "access", "user_id": "1", "exp": 4102444800, "jti": "x"},
        cast(Any, None), algorithm="none")},
}


@pytest.mark.parametrize("name", list(WS_HOSTILE))
def test_ws_refuses_missing_and_invalid_credentials_with_4401(ws_server: LiveServer,
                                                               name: str) -> None:
    spec = WS_HOSTILE[name]
    outcome = ws_outcome(ws_server, spec.get("query", ""),
                         subprotocols=spec.get("subprotocols"), headers=spec.get("headers"))
    assert outcome == 4401


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1.evil.example"])
def test_ws_refuses_a_foreign_origin_even_with_a_valid_key(ws_server: LiveServer,
                                                           origin: str) -> None:
    outcome = ws_outcome(ws_server, origin=origin, headers={"X-API-Key": ADMIN_KEY})
    assert outcome == 403


def test_ws_control_valid_key_and_allowed_origin_stay_open(ws_server: LiveServer) -> None:
    assert ws_outcome(ws_server, headers={"X-API-Key": CLIENT_KEY}) == "open"
    assert ws_outcome(ws_server, origin="http://127.0.0.1",
                      headers={"X-API-Key": ADMIN_KEY}) == "open"


def test_live_metrics_refuse_anonymous_with_auth_on(ws_server: LiveServer,
                                                    tmp_path: Path) -> None:
    import requests

    anonymous = requests.get(f"{ws_server.url}/metrics", timeout=10)
    assert anonymous.status_code == 401 and "taskqueue_" not in anonymous.text
    client = requests.get(f"{ws_server.url}/metrics", headers={"X-API-Key": CLIENT_KEY},
                          timeout=10)
    assert client.status_code == 401
    admin = requests.get(f"{ws_server.url}/metrics", headers={"X-API-Key": ADMIN_KEY},
                         timeout=10)
    assert admin.status_code == 200 and "taskqueue_" in admin.text
