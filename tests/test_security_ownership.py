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
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework_simplejwt.tokens import AccessToken
from websockets.sync.client import ClientConnection, connect

from tasks_app import producer
from tasks_app.conf import tq_settings
from tasks_app.core.keys import Keys, scoped
from tests.api_support import Reply, broker, call
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
    return {"Authorization": f"Bearer {AccessToken.for_user(user)}"}


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
