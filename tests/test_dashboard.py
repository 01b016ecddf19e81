"""/dashboard/ as Django serves it: who may see it, and the state and token it embeds.

What the page does with them in a browser is in test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from tasks_app import permissions, producer
from tasks_app.connection import get_broker
from tasks_app.devserver.redis import free_port
from tasks_app.live.auth import SocketToken, authenticate_scope
from tests.factories import register

LOGIN = "/django-admin/login/?next=/dashboard/"


def staff_with(*names: str, username: str = "ops") -> User:
    """A staff user holding exactly the permissions ``names``."""
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.add(*(Permission.objects.get(codename=n.split(".")[1]) for n in names))
    return user


@pytest.fixture
def staff(django_user_model: type[User]) -> User:
    """A staff user with the dashboard's three view permissions."""
    return staff_with(*permissions.DASHBOARD)


@pytest.fixture
def staff_client(client: Client, staff: User) -> Client:
    client.force_login(staff)
    return client


def embedded(html: str, element_id: str) -> Any:
    """The JSON of a ``json_script`` element of the page."""
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>',
                      html, re.S)
    assert match, f"no #{element_id} in the page"
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_the_admin_login(client: Client) -> None:
    reply = client.get("/dashboard/")
    assert reply.status_code == 302
    assert reply["Location"] == LOGIN


@pytest.mark.django_db
def test_signed_in_users_who_are_not_staff_are_sent_to_the_login_too(
        client: Client, django_user_model: type[User]) -> None:
    client.force_login(django_user_model.objects.create_user("guest", password="x"))
    reply = client.get("/dashboard/")
    assert reply.status_code == 302
    assert reply["Location"] == LOGIN


@pytest.mark.django_db
def test_staff_get_the_current_queues_workers_and_totals(staff_client: Client) -> None:
    producer.enqueue_many([{"type": "echo", "priority": "high"}] * 2 + [{"type": "echo"}])
    register(get_broker(), "worker-a", concurrency=4)

    reply = staff_client.get("/dashboard/")

    assert reply.status_code == 200
    assert "no-cache" in reply["Cache-Control"]
    state = embedded(reply.content.decode(), "tq-initial")
    assert {q["name"]: q["depth"] for q in state["queues"]} == {
        "critical": 0, "high": 2, "normal": 0, "low": 1}
    assert [(w["id"], w["concurrency"]) for w in state["workers"]] == [("worker-a", 4)]
    assert state["totals"]["submitted"] == 3
    assert state["dlq_size"] == 0
    assert 'href="/django-admin/tasks_app/deadletterentry/"' in reply.content.decode()


@pytest.mark.django_db
def test_the_page_carries_a_socket_token_for_the_signed_in_user(
        staff_client: Client, staff: User) -> None:
    config = embedded(staff_client.get("/dashboard/").content.decode(), "tq-config")
    token = SocketToken(config["token"])
    assert str(token["user_id"]) == str(staff.pk)
    assert token["exp"] - token["iat"] <= 120  # short-lived
    with pytest.raises(TokenError):
        AccessToken(config["token"])  # not an access token: the REST API refuses it
    assert config["ws_path"] == "/ws"


def ws_scope(token: str, session: str | None) -> dict[str, Any]:
    cookie = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode())]
    return {"query_string": f"token={token}".encode(), "headers": cookie if session else []}


@pytest.mark.django_db(transaction=True)
def test_that_token_opens_the_socket_when_auth_is_on_with_its_session_only(
        staff_client: Client, staff: User) -> None:
    config = embedded(staff_client.get("/dashboard/").content.decode(), "tq-config")
    session = staff_client.cookies[settings.SESSION_COOKIE_NAME].value
    other = Client()
    other.force_login(staff)
    other_session = other.cookies[settings.SESSION_COOKIE_NAME].value
    authenticate = async_to_sync(authenticate_scope)
    with override_settings(TASKQUEUE={**settings.TASKQUEUE, "AUTH_ENABLED": True}):
        grant = authenticate(ws_scope(config["token"], session))
        assert grant is not None and grant.principal == staff
        assert authenticate(ws_scope("not-a-token", session)) is None
        assert authenticate(ws_scope(config["token"], None)) is None
        assert authenticate(ws_scope(config["token"], other_session)) is None


@pytest.mark.django_db
def test_the_snapshot_endpoint_gives_staff_a_fresh_state_and_token(
        staff_client: Client) -> None:
    producer.enqueue("echo", {}, priority="critical")
    reply = staff_client.get("/dashboard/snapshot")
    assert reply.status_code == 200
    body = reply.json()
    assert SocketToken(body["token"])
    assert body["snapshot"]["queues"][0] == {"name": "critical", "depth": 1, "scheduled": 0,
                                             "paused": False}


@pytest.mark.django_db
def test_the_snapshot_endpoint_refuses_everyone_else(
        client: Client, django_user_model: type[User]) -> None:
    assert client.get("/dashboard/snapshot").status_code == 403
    client.force_login(django_user_model.objects.create_user("guest", password="x"))
    reply = client.get("/dashboard/snapshot")
    assert reply.status_code == 403
    assert reply.json()["error"] == "Forbidden"


@pytest.mark.django_db
def test_without_redis_the_page_still_loads_and_says_so(staff_client: Client) -> None:
    away = {**settings.TASKQUEUE, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with override_settings(TASKQUEUE=away):
        page = staff_client.get("/dashboard/")
        snapshot = staff_client.get("/dashboard/snapshot")
    assert page.status_code == 200
    assert "Redis is unreachable" in page.content.decode()
    assert snapshot.status_code == 503
    assert "Redis is unreachable" in snapshot.json()["snapshot"]["error"]


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="tests.urls_without_admin", LOGIN_URL="/accounts/login/")
def test_a_site_without_the_admin_urls_still_serves_the_dashboard(
        client: Client, staff: User) -> None:
    """Without admin.site.urls (check W004) the page must not fail with a 500: visitors are
    sent to settings.LOGIN_URL, and staff get the page without the DLQ admin link."""
    reply = client.get("/queue/dashboard/")
    assert reply.status_code == 302
    assert reply["Location"] == "/accounts/login/?next=/queue/dashboard/"

    client.force_login(staff)
    page = client.get("/queue/dashboard/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="dlq-link"' not in html
    assert embedded(html, "tq-config")["dlq_url"] is None
    assert 'href="/accounts/login/?next=/queue/dashboard/"' in html  # the sign-in link


@pytest.mark.django_db
def test_with_the_admin_the_page_links_its_login_index_and_dlq(staff_client: Client) -> None:
    html = staff_client.get("/dashboard/").content.decode()
    assert f'href="{LOGIN}"' in html
    assert 'href="/django-admin/"' in html
    assert 'href="/django-admin/tasks_app/deadletterentry/"' in html


@pytest.mark.django_db
@pytest.mark.parametrize("lacking", permissions.DASHBOARD)
def test_staff_lacking_one_view_permission_get_a_403_that_names_it(
        client: Client, lacking: str) -> None:
    client.force_login(staff_with(*(n for n in permissions.DASHBOARD if n != lacking)))
    refusal = {"error": "Forbidden", "message": f"missing permission {lacking}"}
    for path in ("/dashboard/", "/dashboard/snapshot"):
        reply = client.get(path)
        assert (reply.status_code, reply.json()) == (403, refusal), path  # no state, no token


@pytest.mark.django_db
def test_staff_without_any_permission_are_told_all_three(client: Client) -> None:
    client.force_login(staff_with())
    assert client.get("/dashboard/snapshot").json()["message"] == (
        "missing permissions " + ", ".join(permissions.DASHBOARD))


@pytest.mark.django_db
def test_superusers_get_the_dashboard(client: Client) -> None:
    client.force_login(User.objects.create_superuser("root", password="x"))
    assert client.get("/dashboard/").status_code == 200
    assert client.get("/dashboard/snapshot").status_code == 200
