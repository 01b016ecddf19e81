"""The Django admin's "Type limits" section (on the queues page): staff see every limited
type with its counts, and those who may pause queues set and remove limits, validated as
the REST API validates them (its permissions are compared with the API's in
tests/test_api_admin_permissions.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tasks_app import producer
from tasks_app.core.limits import TypeLimit
from tests.api_support import redis_snapshot

pytestmark = pytest.mark.django_db
PAGE = "/django-admin/workers_app/queue/"
FORM = PAGE + "type-limits/"


@pytest.fixture
def client() -> Client:
    """A superuser's session."""
    user = User.objects.create_superuser("limits-admin", password="limits-pass-9f2c")
    c = Client(HTTP_HOST="localhost")
    c.force_login(user)
    return c


def test_the_queues_page_lists_limited_types(client: Client) -> None:
    producer.type_limits().set("email", TypeLimit(5, "100/s"))
    page = client.get(PAGE).content.decode()
    assert 'id="type-limits"' in page and 'data-type-limit="email"' in page
    assert '<td class="field-rate">100/s</td>' in page


def test_set_and_remove_limits(client: Client) -> None:
    reply = client.post(FORM, {"action": "set", "type": "email", "concurrency": "2",
                               "rate": "10/m"}, follow=True)
    assert "Limits of “email” set." in reply.content.decode()
    assert producer.type_limits().get("email").limit == TypeLimit(2, "10/m")
    reply = client.post(FORM, {"action": "clear", "type": "email"}, follow=True)
    assert "Limits of “email” removed." in reply.content.decode()
    assert producer.type_limits().all() == []


@pytest.mark.parametrize(("form", "says"), [
    ({"concurrency": "0"}, "concurrency must be"), ({"rate": "5/d"}, "rate must be"),
    ({"concurrency": "x"}, "concurrency must be"), ({}, "concurrency or rate")])
def test_bad_input_changes_nothing_and_says_why(client: Client, form: dict[str, str],
                                                says: str) -> None:
    producer.type_limits().set("email", TypeLimit(4))
    before = redis_snapshot()
    reply = client.post(FORM, {"action": "set", "type": "email", **form}, follow=True)
    assert "Limits not changed: " + says in reply.content.decode()
    assert redis_snapshot() == before
