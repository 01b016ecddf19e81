"""Authentication and permissions: the auth matrix, API keys (settings and hashed DB keys), JWT."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import override_settings
from django.utils import timezone

from taskqueue_project.settings import taskqueue_from_env
from tasks_app.api.tokens import access_for
from tasks_app.conf import tq_settings
from tasks_app.models import APIKey
from tests.api_support import broker, call, create, error
from tests.factories import register

CLIENT_KEY = "client-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
AUTH_ON: dict[str, Any] = {"AUTH_ENABLED": True, "API_KEYS": [CLIENT_KEY],
                           "ADMIN_API_KEYS": [ADMIN_KEY]}

# (method, path, body, admin only, status when allowed); {task} and {worker} are seeded.
ENDPOINTS: list[tuple[str, str, Any, bool, int]] = [
    ("POST", "/api/v1/tasks", {"type": "echo"}, False, 201),
    ("POST", "/api/v1/tasks/batch", {"tasks": [{"type": "echo"}]}, False, 201),
    ("GET", "/api/v1/tasks", None, False, 200),
    ("GET", "/api/v1/tasks/{task}", None, False, 200),
    ("DELETE", "/api/v1/tasks/{task}", None, False, 200),
    ("GET", "/admin/health", None, True, 200),
    ("GET", "/admin/workers", None, True, 200),
    ("GET", "/admin/workers/{worker}", None, True, 200),
    ("POST", "/admin/workers/{worker}/pause", None, True, 200),
    ("POST", "/admin/workers/{worker}/resume", None, True, 200),
    ("GET", "/admin/queues", None, True, 200),
    ("POST", "/admin/queues/high/pause", None, True, 200),
    ("POST", "/admin/queues/high/resume", None, True, 200),
    ("GET", "/admin/dlq", None, True, 200),
    ("POST", "/admin/dlq/retry", {"retry_all": True}, True, 200),
    ("DELETE", "/admin/dlq", None, True, 200),
    ("DELETE", "/admin/queues/high", None, True, 200),
]

# credential -> (allowed on task endpoints, allowed on admin endpoints); None = 401.
CREDENTIALS: dict[str, tuple[bool | None, bool | None]] = {
    "none": (None, None),
    "bad key": (None, None),
    "good key": (True, False),
    "admin key": (True, True),
    "db key": (True, False),
    "db admin key": (True, True),
    "bad key as bearer": (None, None),
    "good key as bearer": (True, False),
    "admin key as bearer": (True, True),
    "db key as bearer": (True, False),
    "db admin key as bearer": (True, True),
    "expired jwt": (None, None),
    "user jwt": (True, False),
    "superuser jwt": (True, True),  # staff without permissions: test_api_admin_permissions
}


def auth_settings(**extra: Any) -> dict[str, Any]:
    """TASKQUEUE with auth on, for the test Redis."""
    return {"REDIS_URL": tq_settings.REDIS_URL, **AUTH_ON, **extra}


def jwt_for(user: User, expired: bool = False) -> str:
    """An access token for ``user`` (already expired if asked)."""
    token = access_for(user)
    if expired:
        token.set_exp(from_time=timezone.now() - timedelta(hours=1), lifetime=timedelta(minutes=5))
    return str(token)


def headers_for(credential: str) -> dict[str, str]:
    """The request headers that carry ``credential``."""
    if credential == "none":
        return {}
    if "key" in credential:
        name = credential.removesuffix(" as bearer")
        keys = {"bad key": "not-a-key", "good key": CLIENT_KEY, "admin key": ADMIN_KEY}
        if name.startswith("db"):
            _, key = APIKey.objects.create_key(name=name, is_admin="admin" in name)
            keys[name] = key
        if credential.endswith("as bearer"):  # what SDKs send: still an API key, not a JWT
            return {"Authorization": f"Bearer {keys[name]}"}
        return {"X-API-Key": keys[name]}
    superuser = "superuser" in credential
    user = User.objects.create_user(credential.replace(" ", "-"),
                                    is_staff=superuser or "staff" in credential,
                                    is_superuser=superuser)
    return {"Authorization": f"Bearer {jwt_for(user, expired='expired' in credential)}"}


def seeded_path(path: str) -> str:
    """Fill {task} with a fresh pending task and {worker} with a live worker."""
    if "{task}" in path:
        path = path.replace("{task}", create()["id"])
    if "{worker}" in path:
        path = path.replace("{worker}", register(broker(), "worker-auth"))
    return path


@pytest.mark.django_db
@pytest.mark.parametrize("credential", list(CREDENTIALS))
@pytest.mark.parametrize(("method", "path", "body", "admin", "ok"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_auth_matrix(credential: str, method: str, path: str, body: Any, admin: bool,
                     ok: int) -> None:
    target = seeded_path(path)
    with override_settings(TASKQUEUE=auth_settings()):
        reply = call(method, target, body, **headers_for(credential))
    allowed = CREDENTIALS[credential][1 if admin else 0]
    if allowed is None:
        assert error(reply)[:2] == (401, "Unauthorized")
        assert "Bearer" in reply.headers["WWW-Authenticate"]
        assert "X-API-Key" in reply.headers["WWW-Authenticate"]
    elif allowed is False:
        assert error(reply) == (403, "Forbidden", "admin credentials required")
    else:
        assert reply.status == ok, reply.body


@pytest.mark.parametrize(("method", "path", "body", "admin", "ok"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_auth_is_off_by_default(method: str, path: str, body: Any, admin: bool, ok: int) -> None:
    assert tq_settings.AUTH_ENABLED is False
    assert call(method, seeded_path(path), body).status == ok


def test_missing_credentials_message_and_challenges() -> None:
    with override_settings(TASKQUEUE=auth_settings()):
        reply = call("GET", "/api/v1/tasks")
    assert error(reply) == (401, "Unauthorized", "authentication credentials were not provided")
    assert reply.headers["WWW-Authenticate"] == (
        'ApiKey realm="taskqueue", header="X-API-Key", Bearer realm="taskqueue"')


def test_bad_key_message() -> None:
    with override_settings(TASKQUEUE=auth_settings()):
        reply = call("GET", "/api/v1/tasks", **{"X-API-Key": "wrong"})
    assert error(reply) == (401, "Unauthorized", "invalid API key")


@pytest.mark.django_db
@pytest.mark.parametrize(("bearer", "message"), [
    ("wrong-key", "invalid API key"),
    ("prefix.secret", "invalid API key"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiMSJ9.c2ln", "token is invalid or expired"),
])
def test_a_bearer_credential_is_a_jwt_only_when_it_looks_like_one(bearer: str,
                                                                  message: str) -> None:
    with override_settings(TASKQUEUE=auth_settings()):
        reply = call("GET", "/api/v1/tasks", Authorization=f"Bearer {bearer}")
    assert error(reply) == (401, "Unauthorized", message)
    assert reply.headers["WWW-Authenticate"] == (
        'ApiKey realm="taskqueue", header="X-API-Key", Bearer realm="taskqueue"')


def test_keys_as_bearer_tokens_follow_the_api_key_switch() -> None:
    with override_settings(TASKQUEUE=auth_settings(AUTH_API_KEYS=False)):
        reply = call("GET", "/api/v1/tasks", Authorization=f"Bearer {CLIENT_KEY}")
    assert error(reply) == (401, "Unauthorized", "token is invalid or expired")


@pytest.mark.django_db
def test_api_key_method_can_be_switched_off() -> None:
    user = User.objects.create_user("u")
    with override_settings(TASKQUEUE=auth_settings(AUTH_API_KEYS=False)):
        by_key = call("GET", "/api/v1/tasks", **{"X-API-Key": CLIENT_KEY})
        by_jwt = call("GET", "/api/v1/tasks", Authorization=f"Bearer {jwt_for(user)}")
    assert (by_key.status, by_jwt.status) == (401, 200)
    assert by_key.headers["WWW-Authenticate"] == 'Bearer realm="taskqueue"'


@pytest.mark.django_db
def test_jwt_method_can_be_switched_off() -> None:
    user = User.objects.create_user("u")
    with override_settings(TASKQUEUE=auth_settings(AUTH_JWT=False)):
        by_key = call("GET", "/api/v1/tasks", **{"X-API-Key": CLIENT_KEY})
        by_jwt = call("GET", "/api/v1/tasks", Authorization=f"Bearer {jwt_for(user)}")
        token = call("POST", "/api/v1/auth/token", {"username": "u", "password": "p"})
    assert (by_key.status, by_jwt.status, token.status) == (200, 401, 404)
    assert by_jwt.headers["WWW-Authenticate"] == 'ApiKey realm="taskqueue", header="X-API-Key"'


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["revoked", "expired"])
def test_revoked_or_expired_db_keys_are_refused(change: str) -> None:
    record, key = APIKey.objects.create_key(name="ci", is_admin=True)
    if change == "revoked":
        record.revoked = True
    else:
        record.expiry_date = timezone.now() - timedelta(seconds=1)
    record.save()
    with override_settings(TASKQUEUE=auth_settings()):
        reply = call("GET", "/admin/queues", **{"X-API-Key": key})
    assert error(reply) == (401, "Unauthorized", "invalid API key")


@pytest.mark.django_db
def test_db_keys_are_stored_hashed() -> None:
    record, key = APIKey.objects.create_key(name="ci")
    stored = APIKey.objects.values_list("id", "prefix", "hashed_key").get()
    assert all(key not in value for value in stored)
    assert record.hashed_key.startswith("sha512$$")


def test_env_turns_auth_on_and_lists_keys() -> None:
    env = {"TASKQUEUE_AUTH_ENABLED": "1", "TASKQUEUE_API_KEYS": "a, b,,",
           "TASKQUEUE_ADMIN_API_KEYS": "root", "TASKQUEUE_AUTH_JWT": "0"}
    assert taskqueue_from_env(env) == {"AUTH_ENABLED": True, "API_KEYS": ["a", "b"],
                                       "ADMIN_API_KEYS": ["root"], "AUTH_JWT": False}


@pytest.mark.django_db
def test_token_pair_for_a_user_then_refresh() -> None:
    alice = User.objects.create_user("alice", password="correct horse battery", is_staff=True)
    alice.user_permissions.add(Permission.objects.get(codename="view_queue"))
    with override_settings(TASKQUEUE=auth_settings()):
        pair = call("POST", "/api/v1/auth/token",
                    {"username": "alice", "password": "correct horse battery"})
        assert pair.status == 200 and set(pair.body) == {"access", "refresh"}
        fresh = call("POST", "/api/v1/auth/token/refresh", {"refresh": pair.body["refresh"]})
        assert fresh.status == 200 and "access" in fresh.body
        admin = call("GET", "/admin/queues", Authorization=f"Bearer {fresh.body['access']}")
        assert admin.status == 200


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "body", "status"), [
    ("/api/v1/auth/token", {"username": "alice", "password": "wrong"}, 401),
    ("/api/v1/auth/token", {"username": "nobody", "password": "x"}, 401),
    ("/api/v1/auth/token", {"username": "alice"}, 400),
    ("/api/v1/auth/token", ["alice"], 400),
    ("/api/v1/auth/token/refresh", {"refresh": "not.a.token"}, 401),
    ("/api/v1/auth/token/refresh", {}, 400),
])
def test_token_errors(path: str, body: Any, status: int) -> None:
    User.objects.create_user("alice", password="correct horse battery")
    reply = call("POST", path, body)
    assert error(reply)[0] == status
    if status == 401:
        assert reply.headers["WWW-Authenticate"] == 'Bearer realm="taskqueue"'


@pytest.mark.django_db
def test_inactive_user_token_is_refused() -> None:
    user = User.objects.create_user("bob", is_staff=True)
    token = jwt_for(user)
    user.is_active = False
    user.save()
    with override_settings(TASKQUEUE=auth_settings()):
        reply = call("GET", "/admin/queues", Authorization=f"Bearer {token}")
    assert error(reply) == (401, "Unauthorized", "token is invalid or expired")


@pytest.mark.django_db
def test_admin_keys_are_created_in_the_django_admin() -> None:
    from django.test import Client

    root = User.objects.create_superuser("root", password="x")
    client = Client(HTTP_HOST="localhost")
    client.force_login(root)
    assert client.get("/django-admin/tasks_app/apikey/").status_code == 200
    reply = client.post("/django-admin/tasks_app/apikey/add/",
                        {"name": "ops", "is_admin": "on"}, follow=True)
    assert reply.status_code == 200
    shown = [str(m) for m in reply.context["messages"]]
    key = next(m for m in shown if "The API key for ops is" in m).split(": ")[1].split(". ")[0]
    assert APIKey.objects.get().is_admin is True
    with override_settings(TASKQUEUE=auth_settings()):
        assert call("GET", "/admin/queues", **{"X-API-Key": key}).status == 200
