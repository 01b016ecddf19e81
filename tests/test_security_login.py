"""Logins and tokens: failed-login throttling in Redis, tokens that die with the user's
password or status, refresh of deleted or inactive users, refresh-token revocation.

The in-process tests go through Django and DRF against the session's real Redis; the
daphne tests run two real servers on one migrated database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings

from tasks_app.conf import tq_settings
from tasks_app.devserver.redis import free_port
from tests.api_support import Reply, error
from tests.servers import ROOT, LiveServer
from tests.test_security_auth_matrix import ws_outcome

PASSWORD = "correct horse battery"
LOGIN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/token/refresh"
REVOKE = "/api/v1/auth/token/revoke"
FAILURES = "tq:{default/login}:login-failures:"


def auth_on(**extra: Any) -> Any:
    """override_settings with auth on for the test Redis."""
    return override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL,
                                        "AUTH_ENABLED": True, **extra})


def post(path: str, body: Any, address: str = "10.0.0.1", **headers: str) -> Reply:
    """POST JSON through Django from the client address ``address``."""
    client = Client(HTTP_HOST="localhost", raise_request_exception=False)
    response = client.post(path, json.dumps(body), "application/json", headers=headers,
                           REMOTE_ADDR=address)
    return Reply(response.status_code, response.json(), dict(response.items()))


def get(path: str, token: str) -> int:
    """Status of an authenticated GET."""
    client = Client(HTTP_HOST="localhost", raise_request_exception=False)
    return int(client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code)


def login(username: str, password: str, address: str = "10.0.0.1") -> Reply:
    return post(LOGIN, {"username": username, "password": password}, address)


@pytest.fixture
def hashings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every PBKDF2 computation (password check or dummy hash) while the test runs."""
    seen: list[str] = []
    original = PBKDF2PasswordHasher.encode

    def counting(self: PBKDF2PasswordHasher, password: str, salt: str,
                 iterations: int | None = None) -> str:
        seen.append(salt)
        return original(self, password, salt, iterations)

    monkeypatch.setattr(PBKDF2PasswordHasher, "encode", counting)
    return seen


def assert_throttled(reply: Reply, window: int) -> None:
    status, phrase, message = error(reply)
    assert (status, phrase) == (429, "Too Many Requests")
    seconds = int(reply.headers["Retry-After"])
    assert 1 <= seconds <= window
    assert message == f"rate limit exceeded, retry in {seconds} s"


# ---- login throttle ----------------------------------------------------------------------

@pytest.mark.django_db
def test_eleventh_failure_for_a_username_is_429_even_with_the_right_password(
        hashings: list[str], redis_client: redis.Redis) -> None:
    User.objects.create_user("alice", password=PASSWORD)
    hashings.clear()
    with auth_on():
        for attempt in range(10):  # from ten addresses: the username is what is counted
            assert login("alice", "wrong", f"10.0.1.{attempt}").status == 401
        assert len(hashings) == 10
        hashings.clear()
        blocked = login("alice", PASSWORD, "10.0.2.1")
        also_blocked = login("ALICE", PASSWORD, "10.0.2.2")  # same counter, case-folded
        assert hashings == []  # refused before any password hashing
        other = login("bob", "wrong", "10.0.2.3")
    assert_throttled(blocked, 900)
    assert_throttled(also_blocked, 900)
    assert other.status == 401 and len(hashings) == 1
    keys = [str(k) for k in redis_client.keys(f"{FAILURES}username:*")]
    assert len(keys) == 2 and all(len(k.rsplit(":", 1)[1]) == 32 for k in keys)
    assert not any("alice" in str(k) for k in redis_client.keys("*"))


@pytest.mark.django_db
def test_per_address_limit_counts_failures_across_usernames() -> None:
    User.objects.create_user("alice", password=PASSWORD)
    with auth_on(LOGIN_MAX_FAILURES_PER_ADDRESS=5, LOGIN_FAILURE_WINDOW=60):
        for attempt in range(5):
            assert login(f"user-{attempt}", "wrong", "10.0.3.1").status == 401
        blocked = login("alice", PASSWORD, "10.0.3.1")
        elsewhere = login("alice", PASSWORD, "10.0.3.2")
    assert_throttled(blocked, 60)
    assert elsewhere.status == 200 and set(elsewhere.body) == {"access", "refresh"}


@pytest.mark.django_db
def test_successful_and_malformed_logins_are_not_counted(redis_client: redis.Redis) -> None:
    User.objects.create_user("alice", password=PASSWORD)
    with auth_on(LOGIN_MAX_FAILURES_PER_USERNAME=2, LOGIN_MAX_FAILURES_PER_ADDRESS=2):
        replies = [login("alice", PASSWORD).status for _ in range(4)]
        replies += [post(LOGIN, {"username": "alice"}).status for _ in range(3)]
        replies.append(login("alice", PASSWORD).status)
    assert replies == [200] * 4 + [400] * 3 + [200]
    assert {redis_client.get(k) for k in redis_client.keys(f"{FAILURES}*")} == {"0"}


@pytest.mark.django_db
def test_the_block_ends_with_the_window(redis_client: redis.Redis) -> None:
    User.objects.create_user("alice", password=PASSWORD)
    with auth_on(LOGIN_MAX_FAILURES_PER_USERNAME=1, LOGIN_FAILURE_WINDOW=30):
        assert login("alice", "wrong").status == 401
        assert login("alice", PASSWORD).status == 429
        (key,) = redis_client.keys(f"{FAILURES}username:*")
        assert 0 < redis_client.pttl(key) <= 30_000  # set by the first failure, not extended
        redis_client.pexpire(key, 20)  # fast-forward to the end of the window
        time.sleep(0.1)
        assert login("alice", PASSWORD, "10.0.4.1").status == 200


@pytest.mark.django_db
def test_logins_are_refused_with_503_while_redis_is_unreachable(hashings: list[str]) -> None:
    User.objects.create_user("alice", password=PASSWORD)
    hashings.clear()
    with override_settings(TASKQUEUE={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                                      "AUTH_ENABLED": True}):
        reply = login("alice", PASSWORD)
    assert error(reply) == (503, "Service Unavailable", "service unavailable")
    assert hashings == []  # the throttle fails closed, before any hashing


# ---- refresh, password change, deactivation, staff removal (in process) ----------------------

def pair(username: str = "alice", password: str = PASSWORD) -> dict[str, str]:
    reply = login(username, password)
    assert reply.status == 200, reply
    return dict(reply.body)


def assert_invalid(reply: Reply) -> None:
    assert error(reply)[:2] == (401, "Unauthorized")
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="taskqueue"'


@pytest.mark.django_db
def test_refresh_of_a_deleted_user_is_401() -> None:
    user = User.objects.create_user("alice", password=PASSWORD)
    with auth_on():
        tokens = pair()
        user.delete()
        assert_invalid(post(REFRESH, {"refresh": tokens["refresh"]}))
        assert get("/api/v1/tasks", tokens["access"]) == 401


@pytest.mark.django_db
def test_deactivated_user_tokens_are_401() -> None:
    user = User.objects.create_user("alice", password=PASSWORD)
    with auth_on():
        tokens = pair()
        user.is_active = False
        user.save()
        assert_invalid(post(REFRESH, {"refresh": tokens["refresh"]}))
        assert get("/api/v1/tasks", tokens["access"]) == 401
        assert login("alice", PASSWORD).status == 401


@pytest.mark.django_db
def test_password_change_kills_tokens_issued_before_it() -> None:
    user = User.objects.create_user("alice", password=PASSWORD)
    with auth_on():
        old = pair()
        assert get("/api/v1/tasks", old["access"]) == 200
        user.set_password("a new password 42")
        user.save()
        assert get("/api/v1/tasks", old["access"]) == 401
        assert_invalid(post(REFRESH, {"refresh": old["refresh"]}))
        new = pair(password="a new password 42")
        assert get("/api/v1/tasks", new["access"]) == 200
        refreshed = post(REFRESH, {"refresh": new["refresh"]})
        assert get("/api/v1/tasks", refreshed.body["access"]) == 200


@pytest.mark.django_db
def test_staff_removal_takes_admin_power_from_existing_tokens() -> None:
    user = User.objects.create_user("alice", password=PASSWORD, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_queue"))
    with auth_on():
        old = pair()
        assert get("/admin/queues", old["access"]) == 200
        user.is_staff = False
        user.save()
        assert get("/admin/queues", old["access"]) == 401
        assert_invalid(post(REFRESH, {"refresh": old["refresh"]}))
        assert get("/admin/queues", pair()["access"]) == 403


# ---- revocation ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_revoke_blacklists_a_refresh_token() -> None:
    User.objects.create_user("alice", password=PASSWORD)
    with auth_on():
        mine, other = pair(), pair()
        revoked = post(REVOKE, {"refresh": mine["refresh"]})
        assert (revoked.status, revoked.body) == (200, {"revoked": 1})
        assert_invalid(post(REFRESH, {"refresh": mine["refresh"]}))
        assert_invalid(post(REVOKE, {"refresh": mine["refresh"]}))
        assert post(REFRESH, {"refresh": other["refresh"]}).status == 200
        assert_invalid(post(REVOKE, {"refresh": mine["access"]}))  # not a refresh token
        assert error(post(REVOKE, {}))[0] == 400


@pytest.mark.django_db
def test_revoke_everywhere_blacklists_every_refresh_token_of_the_user() -> None:
    User.objects.create_user("alice", password=PASSWORD)
    User.objects.create_user("bob", password=PASSWORD)
    with auth_on():
        sessions = [pair() for _ in range(3)]
        bobs = pair("bob")
        revoked = post(REVOKE, {"refresh": sessions[0]["refresh"], "everywhere": True})
        assert (revoked.status, revoked.body) == (200, {"revoked": 3})
        for session in sessions:
            assert_invalid(post(REFRESH, {"refresh": session["refresh"]}))
        assert post(REFRESH, {"refresh": bobs["refresh"]}).status == 200


# ---- real daphne processes ---------------------------------------------------------------------

def manage(database: Path, code: str) -> None:
    """Run Python in ``manage.py shell`` on the servers' database."""
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, check=True,
                   env={**os.environ, "DATABASE_PATH": str(database)}, timeout=120)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("login-db") / "db.sqlite3"
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env={**os.environ, "DATABASE_PATH": str(path)}, check=True, timeout=300)
    manage(path, "from django.contrib.auth.models import User; "
                 f"User.objects.create_user('carol', password={PASSWORD!r})")
    return path


@pytest.fixture
def servers(database: Path, tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    env = {"DATABASE_PATH": str(database), "TASKQUEUE_AUTH_ENABLED": "1",
           "TASKQUEUE_LOGIN_MAX_FAILURES_PER_USERNAME": "3",
           "TASKQUEUE_LOGIN_FAILURE_WINDOW": "60"}
    with LiveServer(tmp_path, env) as first, LiveServer(tmp_path, env) as second:
        yield first, second


def live_login(server: LiveServer, username: str, password: str) -> requests.Response:
    return requests.post(f"{server.url}{LOGIN}", json={"username": username,
                                                       "password": password}, timeout=30)


def test_two_daphne_processes_share_the_failure_counter_in_redis(
        servers: tuple[LiveServer, LiveServer], redis_client: redis.Redis) -> None:
    first, second = servers
    statuses = [live_login(s, "carol", "wrong").status_code for s in (first, second, first)]
    blocked = live_login(second, "carol", PASSWORD)
    assert statuses == [401, 401, 401]
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) <= 60
    assert blocked.json()["error"] == "Too Many Requests"
    keys = [str(k) for k in redis_client.keys(f"{FAILURES}*")]
    assert {k.split(":")[3] for k in keys} == {"username", "address"}
    assert all(0 < redis_client.ttl(k) <= 60 for k in keys)


def test_parallel_failures_cannot_slip_past_the_limit(
        servers: tuple[LiveServer, LiveServer]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    targets = [servers[i % 2] for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda s: live_login(s, "eve", "guess").status_code, targets))
    assert sorted(statuses) == [401] * 3 + [429] * 9  # units are reserved before hashing


def test_password_change_closes_the_door_on_old_tokens_over_http_and_ws(
        servers: tuple[LiveServer, LiveServer], database: Path) -> None:
    server, _ = servers
    old = live_login(server, "carol", PASSWORD).json()
    bearer = {"Authorization": f"Bearer {old['access']}"}
    assert requests.get(f"{server.url}/api/v1/tasks", headers=bearer, timeout=30).ok
    assert ws_outcome(server, f"?token={old['access']}") == "open"
    manage(database, "from django.contrib.auth.models import User; "
                     "u = User.objects.get(username='carol'); "
                     "u.set_password('another password 7'); u.save()")
    try:
        stale = requests.get(f"{server.url}/api/v1/tasks", headers=bearer, timeout=30)
        assert stale.status_code == 401
        assert stale.json() == {"error": "Unauthorized", "message": "token is invalid or expired"}
        assert ws_outcome(server, f"?token={old['access']}") == 4401
        new = live_login(server, "carol", "another password 7").json()
        assert ws_outcome(server, f"?token={new['access']}") == "open"
    finally:
        manage(database, "from django.contrib.auth.models import User; "
                         "u = User.objects.get(username='carol'); "
                         f"u.set_password({PASSWORD!r}); u.save()")


SITE_WITHOUT_BLACKLIST = """
import json
from django.contrib.auth.models import User
from django.test import Client
User.objects.create_user("dave", password="pw-long-enough-1")
client = Client(HTTP_HOST="localhost")
def post(path, body):
    reply = client.post(path, json.dumps(body), "application/json")
    return reply.status_code, reply.json()
status, tokens = post("/api/v1/auth/token", {"username": "dave", "password": "pw-long-enough-1"})
print(json.dumps([status, post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]})[0],
                  post("/api/v1/auth/token/revoke", {"refresh": tokens["refresh"]})]))
"""


def test_a_site_without_the_blacklist_app_logs_in_and_refreshes_but_cannot_revoke(
        tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_PATH": str(tmp_path / "db.sqlite3"),
           "DJANGO_SETTINGS_MODULE": "tests.settings_without_blacklist"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env=env, check=True, timeout=300)
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", SITE_WITHOUT_BLACKLIST],
                          cwd=ROOT, env=env, check=True, timeout=120, capture_output=True,
                          text=True)
    login_status, refresh_status, revoke = json.loads(done.stdout.strip().splitlines()[-1])
    assert (login_status, refresh_status) == (200, 200)
    assert revoke == [404, {"error": "Not Found", "message":
                            "token revocation needs rest_framework_simplejwt.token_blacklist"}]


def admin_login(http: requests.Session, server: LiveServer, username: str,
                password: str) -> requests.Response:
    """The Django admin's sign-in form, posted as a browser posts it."""
    url = f"{server.url}/django-admin/login/"
    http.get(url, timeout=30)
    return http.post(url, timeout=30, allow_redirects=False, data={
        "username": username, "password": password, "next": "/django-admin/",
        "csrfmiddlewaretoken": http.cookies["csrftoken"]})


def test_the_django_admin_sign_in_shares_the_failure_counters(
        servers: tuple[LiveServer, LiveServer], database: Path) -> None:
    """The admin's form checks the same passwords (staff ones above all): guesses there
    count as guesses on the API, and past the limit it answers 429 without checking."""
    first, second = servers
    manage(database, "from django.contrib.auth.models import User; User.objects.create_user("
                     f"'dave', password={PASSWORD!r}, is_staff=True)")
    browser = requests.Session()
    assert admin_login(browser, first, "dave", PASSWORD).status_code == 302  # not counted
    signed_in = browser.cookies["sessionid"]
    browser.cookies.clear()
    browser.cookies.set("sessionid", signed_in)  # a staff session guessing is counted too
    statuses = [admin_login(browser, s, "dave", "guess").status_code
                for s in (first, second, first)]
    blocked = admin_login(browser, second, "dave", PASSWORD)
    assert statuses == [200, 200, 200]  # the form again, with its error
    assert blocked.status_code == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert browser.cookies["sessionid"] == signed_in  # no new session
    assert live_login(first, "dave", PASSWORD).status_code == 429  # one counter for both
