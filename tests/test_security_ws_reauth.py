"""An open /ws socket is only as good as its credential: a revoked or expired API key, an
expired JWT or a signed-out dashboard session ends it with close code 4401.  The
dashboard's socket token opens /ws only (the REST API answers 401), and an API key sent
the way SDKs send it (``Authorization: Bearer <key>``, ``/ws?token=<key>``) is accepted.

Real daphne processes on a seeded database of their own; real WebSocket and HTTP clients.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tasks_app import producer
from tests import servers
from tests.browser import OPERATOR, seed_database
from tests.servers import ROOT, LiveServer

pytestmark = pytest.mark.once  # sockets outliving their credentials: the newest-Python leg
CLIENT_KEY = f"client-{uuid.uuid4().hex}"
ADMIN_KEY = f"admin-{uuid.uuid4().hex}"
AUTH_ON = {"TASKQUEUE_AUTH_ENABLED": "1", "TASKQUEUE_API_KEYS": CLIENT_KEY,
           "TASKQUEUE_ADMIN_API_KEYS": ADMIN_KEY}
JWT_SECONDS = 4
PROMPT = 2.0  # seconds: "at once" on a loaded two-core machine


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ws-reauth-db") / "db.sqlite3"
    seed_database(path)
    return path


def site(tmp_path_factory: pytest.TempPathFactory, database: Path, **env: str) -> LiveServer:
    return LiveServer(tmp_path_factory.mktemp("ws-reauth"),
                      {**AUTH_ON, "DATABASE_PATH": str(database), **env})


@pytest.fixture(scope="module")
def checking(tmp_path_factory: pytest.TempPathFactory, database: Path) -> Iterator[LiveServer]:
    """Re-checks every open socket twice a second."""
    with site(tmp_path_factory, database, TASKQUEUE_WS_REAUTH_INTERVAL="0.5") as live:
        yield live


@pytest.fixture(scope="module")
def rarely_checking(tmp_path_factory: pytest.TempPathFactory,
                    database: Path) -> Iterator[LiveServer]:
    """Re-checks once a minute, so a socket closed sooner was closed by its expiry or by
    the sign-out itself; its access tokens live JWT_SECONDS."""
    with site(tmp_path_factory, database, TASKQUEUE_WS_REAUTH_INTERVAL="60",
              TASKQUEUE_JWT_ACCESS_SECONDS=str(JWT_SECONDS)) as live:
        yield live


def in_database(database: Path, code: str) -> str:
    """Run ``code`` with Django set up on ``database``; its stdout."""
    env = {**os.environ, "DATABASE_PATH": str(database),
           "DJANGO_SECRET_KEY": servers.test_secret_key(),
           "DJANGO_SETTINGS_MODULE": "taskqueue_project.settings"}
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()\n" + code],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True,
                          timeout=60)
    return done.stdout.strip()


def new_db_key(database: Path, admin: bool = False, expires_in: float | None = None) -> str:
    name = f"live-{uuid.uuid4().hex[:8]}"
    expiry = (f"timezone.now() + timedelta(seconds={expires_in})" if expires_in is not None
              else "None")
    return in_database(database, f"""
from datetime import timedelta
from django.utils import timezone
from tasks_app.models import APIKey
_, key = APIKey.objects.create_key(name={name!r}, is_admin={admin}, expiry_date={expiry})
print(key)""")


def revoke(database: Path, key: str) -> None:
    in_database(database, f"""
from tasks_app.models import APIKey
APIKey.objects.filter(prefix={key.partition(".")[0]!r}).update(revoked=True)""")


def is_open(sock: ClientConnection, seconds: float) -> bool:
    """True when the socket is still open after ``seconds`` (events are read and dropped)."""
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.recv(timeout=left)
    except TimeoutError:
        return True
    except ConnectionClosed:
        return False
    return True


def close_code(sock: ClientConnection, within: float) -> int | None:
    """The close code the server sends within ``within`` seconds (None: still open)."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.recv(timeout=left)
    except TimeoutError:
        return None
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return None


def receives_events(sock: ClientConnection) -> bool:
    task = producer.enqueue("echo", {})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if task.id in str(sock.recv(timeout=5)):
            return True
    return False


class Browser:
    """A signed-in staff user's cookies, as a browser would hold them."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = requests.Session()
        login = f"{server.url}/django-admin/login/"
        self.http.get(login, timeout=10)
        reply = self.http.post(login, timeout=10, data={
            "username": OPERATOR.username, "password": OPERATOR.password, "next": "/dashboard/",
            "csrfmiddlewaretoken": self.http.cookies["csrftoken"]})
        assert reply.ok and "sessionid" in self.http.cookies, reply.status_code

    def socket_token(self) -> str:
        reply = self.http.get(f"{self.server.url}/dashboard/snapshot", timeout=10)
        assert reply.ok, reply.status_code
        return str(reply.json()["token"])

    @property
    def session(self) -> str:
        return str(self.http.cookies["sessionid"])

    def dashboard_socket(self, token: str | None = None) -> ClientConnection:
        """/ws as the dashboard opens it: its token in the query, the session cookie sent."""
        return connect(f"{self.server.ws_url}/ws?token={token or self.socket_token()}",
                       additional_headers={"Cookie": f"sessionid={self.session}"})

    def sign_out(self) -> None:
        reply = self.http.post(f"{self.server.url}/django-admin/logout/", timeout=10,
                               data={"csrfmiddlewaretoken": self.http.cookies["csrftoken"]})
        assert reply.ok, reply.status_code


# ---- re-validation of open sockets -------------------------------------------------------

def test_a_db_key_revoked_while_its_socket_is_open_ends_it_with_4401(
        checking: LiveServer, database: Path) -> None:
    key = new_db_key(database)
    with connect(f"{checking.ws_url}/ws?api_key={key}") as sock:
        assert receives_events(sock)
        assert is_open(sock, 1.5)  # three checks passed
        revoke(database, key)
        revoked = time.monotonic()
        assert close_code(sock, 5) == 4401
        assert time.monotonic() - revoked < 0.5 + PROMPT


def test_a_db_key_socket_ends_when_the_key_expires(rarely_checking: LiveServer,
                                                   database: Path) -> None:
    key = new_db_key(database, expires_in=6)
    with connect(f"{rarely_checking.ws_url}/ws?api_key={key}") as sock:
        assert close_code(sock, 6 + PROMPT + 2) == 4401


def test_a_jwt_socket_ends_when_the_token_expires(rarely_checking: LiveServer) -> None:
    reply = requests.post(f"{rarely_checking.url}/api/v1/auth/token", timeout=10,
                          json={"username": OPERATOR.username, "password": OPERATOR.password})
    token = reply.json()["access"]
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    with connect(f"{rarely_checking.ws_url}/ws?token={token}") as sock:
        assert receives_events(sock)
        assert close_code(sock, JWT_SECONDS + PROMPT + 2) == 4401
        assert exp <= time.time() < exp + PROMPT


def test_signing_out_ends_the_dashboard_socket_at_once(rarely_checking: LiveServer) -> None:
    browser = Browser(rarely_checking)
    with browser.dashboard_socket() as sock:
        assert receives_events(sock)
        browser.sign_out()
        signed_out = time.monotonic()
        assert close_code(sock, 5) == 4401
        assert time.monotonic() - signed_out < PROMPT  # not the once-a-minute check


def test_a_dashboard_socket_ends_when_its_session_is_deleted(
        checking: LiveServer, database: Path) -> None:
    """No sign-out message (e.g. sessions cleared on the server): the periodic check."""
    browser = Browser(checking)
    with browser.dashboard_socket() as sock:
        assert is_open(sock, 1.0)
        in_database(database, "from django.contrib.sessions.models import Session\n"
                              f"Session.objects.filter(session_key={browser.session!r}).delete()")
        deleted = time.monotonic()
        assert close_code(sock, 5) == 4401
        assert time.monotonic() - deleted < 0.5 + PROMPT


# ---- the dashboard's socket token --------------------------------------------------------

@pytest.mark.parametrize("path", ["/admin/queues", "/api/v1/tasks"])
def test_the_dashboard_token_is_refused_by_the_rest_api(rarely_checking: LiveServer,
                                                        path: str) -> None:
    token = Browser(rarely_checking).socket_token()
    reply = requests.get(f"{rarely_checking.url}{path}", timeout=10,
                         headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 401
    assert reply.json()["error"] == "Unauthorized"


def test_the_dashboard_token_opens_ws_only_with_its_session(
        rarely_checking: LiveServer) -> None:
    browser, other = Browser(rarely_checking), Browser(rarely_checking)
    token = browser.socket_token()
    with browser.dashboard_socket(token) as sock:
        assert receives_events(sock)
    with connect(f"{rarely_checking.ws_url}/ws?token={token}") as sock:  # no cookie
        assert close_code(sock, 5) == 4401
    with other.dashboard_socket(token) as sock:  # another session's cookie
        assert close_code(sock, 5) == 4401


# ---- API keys as bearer tokens -----------------------------------------------------------

def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_an_api_key_works_as_a_bearer_token(rarely_checking: LiveServer,
                                            database: Path) -> None:
    url = rarely_checking.url
    db_admin = new_db_key(database, admin=True)
    created = requests.post(f"{url}/api/v1/tasks", json={"type": "echo"}, timeout=10,
                            headers=bearer(CLIENT_KEY))
    assert created.status_code == 201
    task = requests.get(f"{url}/api/v1/tasks/{created.json()['id']}", timeout=10,
                        headers=bearer(CLIENT_KEY))
    assert task.status_code == 200 and task.json()["type"] == "echo"
    statuses = {key: requests.get(f"{url}/admin/queues", headers=bearer(key),
                                  timeout=10).status_code
                for key in (ADMIN_KEY, db_admin, CLIENT_KEY, "wrong-key", "abcdefgh.wrong")}
    assert statuses == {ADMIN_KEY: 200, db_admin: 200, CLIENT_KEY: 403, "wrong-key": 401,
                        "abcdefgh.wrong": 401}


def test_a_wrong_bearer_key_gets_401_with_both_challenges(rarely_checking: LiveServer) -> None:
    reply = requests.get(f"{rarely_checking.url}/api/v1/tasks", headers=bearer("wrong-key"),
                         timeout=10)
    assert reply.status_code == 401
    assert reply.json() == {"error": "Unauthorized", "message": "invalid API key"}
    assert reply.headers["WWW-Authenticate"] == (
        'ApiKey realm="taskqueue", header="X-API-Key", Bearer realm="taskqueue"')


@pytest.mark.parametrize("how", ["query", "header"])
def test_an_api_key_as_a_token_opens_ws(rarely_checking: LiveServer, database: Path,
                                        how: str) -> None:
    for key in (CLIENT_KEY, new_db_key(database)):
        options: dict[str, Any] = ({"additional_headers": bearer(key)} if how == "header"
                                   else {})
        query = f"?token={key}" if how == "query" else ""
        with connect(f"{rarely_checking.ws_url}/ws{query}", **options) as sock:
            assert receives_events(sock)
    with connect(f"{rarely_checking.ws_url}/ws?token=wrong-key") as sock:
        assert close_code(sock, 5) == 4401


# ---- what an open socket may see follows its credential ------------------------------------

@pytest.fixture(scope="module")
def owner_checking(tmp_path_factory: pytest.TempPathFactory,
                   database: Path) -> Iterator[LiveServer]:
    """TASK_VISIBILITY owner, re-checking every open socket twice a second."""
    with site(tmp_path_factory, database, TASKQUEUE_WS_REAUTH_INTERVAL="0.5",
              TASKQUEUE_TASK_VISIBILITY="owner") as live:
        yield live


def task_ids_seen(sock: ClientConnection, quiet: float = 1.0) -> set[str]:
    """The task ids of the events received until ``quiet`` seconds pass without one."""
    seen: set[str] = set()
    try:
        while True:
            seen.add(str(json.loads(sock.recv(timeout=quiet))["data"].get("task_id")))
    except (TimeoutError, ConnectionClosed):
        return seen


def test_an_admin_key_demoted_while_its_socket_is_open_stops_seeing_others_tasks(
        owner_checking: LiveServer, database: Path) -> None:
    """Unchecking "is admin" on a key in the Django admin takes away every task's events
    from its open sockets at the next check, as it does from its REST calls at once."""
    url = owner_checking.url
    key = new_db_key(database, admin=True)

    def others_task() -> str:
        reply = requests.post(f"{url}/api/v1/tasks", json={"type": "echo"}, timeout=10,
                              headers={"X-API-Key": CLIENT_KEY})
        assert reply.status_code == 201, reply.text
        return str(reply.json()["id"])

    with connect(f"{owner_checking.ws_url}/ws?types=task.*&api_key={key}") as sock:
        time.sleep(0.5)  # the hub's subscription reaches Redis
        before = others_task()
        assert before in task_ids_seen(sock)
        in_database(database, f"""
from tasks_app.models import APIKey
APIKey.objects.filter(prefix={key.partition(".")[0]!r}).update(is_admin=False)""")
        time.sleep(0.5 + PROMPT)  # past the next check
        after = others_task()
        assert requests.get(f"{url}/api/v1/tasks/{after}", headers={"X-API-Key": key},
                            timeout=10).status_code == 404
        assert after not in task_ids_seen(sock)
