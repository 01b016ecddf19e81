"""The Django admin's Workflows section, through Django's test client against real Redis:
the list (state, queue, steps, step states, the failed step linking to its DLQ entry), a
workflow's page (its steps in order, where it stopped marked), the POST-only cancel; and
each page or action allowed exactly when the REST route doing the same thing on another
client's workflow is (``GET``/``DELETE /api/v1/workflows/{id}``)."""

from __future__ import annotations

import html as html_lib
import re
import uuid

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from tasks_app import permissions as perms
from tasks_app import producer
from tasks_app.conf import tq_settings
from tasks_app.core.broker import Broker
from tasks_app.core.workflows import Workflow
from tests.api_support import broker, call, error, redis_snapshot
from tests.factories import WORKER, register
from tests.test_api_admin_permissions import bearer, user_with

pytestmark = pytest.mark.django_db

LIST = "/django-admin/tasks_app/workflow/"
CLIENT_KEY = f"wf-client-{uuid.uuid4().hex}"


def page_of(workflow_id: str) -> str:
    return f"{LIST}{workflow_id}/change/"


def cancel_of(workflow_id: str) -> str:
    return f"{LIST}{workflow_id}/cancel/"


def count(add: float = 1, **options: object) -> dict[str, object]:
    return producer.step("count", {"add": add}, **options)


@pytest.fixture
def b() -> Broker:
    found = broker()
    register(found, WORKER, concurrency=16)
    return found


def admin_client(*held: str, csrf: bool = False) -> Client:
    client = Client(HTTP_HOST="localhost", enforce_csrf_checks=csrf)
    client.force_login(user_with(*held, superuser=not held))
    return client


def run_next(b: Broker, fail: bool = False, permanent: bool = False) -> None:
    """Take one task and complete it (or fail it: for good, or dead-lettered once it runs
    out of retries), as a worker would."""
    jobs = b.take(WORKER, (0, 1, 2, 3), 1)
    assert isinstance(jobs, list) and jobs
    if fail or permanent:
        b.fail(jobs[0], WORKER, "boom", permanent=permanent)
    else:
        b.ack(jobs[0], WORKER, "1")


def row(html: str, attr: str, value: str) -> str:
    found = re.search(rf'<tr {attr}="{re.escape(value)}"[^>]*>(.*?)</tr>', html, re.S)
    assert found, html
    return found.group(0)


def cell(html: str, field: str) -> str:
    found = re.search(rf'class="[^"]*field-{field}[^"]*">(.*?)</(?:t[dh]|div)>', html, re.S)
    assert found, html
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def test_the_list_shows_state_steps_and_the_failed_step_linking_to_its_dlq_entry(
        b: Broker) -> None:
    failing = producer.chain(count(max_retries=0), count(), count())
    run_next(b, fail=True)
    done = producer.chain(count())
    run_next(b)
    fresh = producer.group(count(), count(), then=count())
    html = admin_client().get(LIST).content.decode()
    assert html.index(fresh.id) < html.index(done.id) < html.index(failing.id)  # newest first
    line = row(html, "data-workflow", failing.id)
    assert cell(line, "state") == "failed" and cell(line, "queue") == "default"
    assert cell(line, "step-count") == "3"
    assert cell(line, "step-states") == "2 cancelled, 1 dead_letter"
    failed_id = failing.steps[0].task_id
    assert cell(line, "failed-step") == f"step 0: {failed_id} (dead_letter)"
    assert f'href="/django-admin/tasks_app/deadletterentry/{failed_id}/change/"' in line
    assert f'href="{page_of(failing.id)}"' in line
    assert cell(row(html, "data-workflow", done.id), "state") == "completed"
    assert cell(row(html, "data-workflow", done.id), "failed-step") == "—"
    fresh_line = row(html, "data-workflow", fresh.id)
    assert cell(fresh_line, "state") == "pending"
    assert cell(fresh_line, "step-states") == "2 pending, 1 waiting"


def test_a_workflows_page_shows_its_steps_in_order_and_where_it_stopped(b: Broker) -> None:
    flow = producer.chain(count(), {"group": [count(), count(max_retries=0)]}, count())
    run_next(b)
    run_next(b)
    run_next(b, fail=True)
    html = admin_client().get(page_of(flow.id)).content.decode()
    assert cell(html, "state") == "failed"
    steps = [row(html, "data-step", str(i)) for i in range(4)]
    assert [cell(s, "task") for s in steps] == [s.task_id for s in flow.steps]
    assert [cell(s, "type") for s in steps] == ["count"] * 4
    assert [cell(s, "state") for s in steps] == [
        "completed", "completed", "dead_letter", "cancelled"]
    assert [cell(s, "after") for s in steps] == ["—", "0", "0", "1, 2"]
    assert ["tq-stopped" in s for s in steps] == [False, False, True, False]  # where it stopped
    assert "/deadletterentry/" in steps[2] and 'value="Cancel workflow"' in html
    stopped = producer.chain(count(), count())
    run_next(b, permanent=True)
    html = admin_client().get(page_of(stopped.id)).content.decode()
    steps = [row(html, "data-step", str(i)) for i in range(2)]
    assert [cell(s, "state") for s in steps] == ["failed", "cancelled"]
    assert ["tq-stopped" in s for s in steps] == [True, False]
    assert cell(html, "failed-step") == f"step 0: {stopped.steps[0].task_id} (failed)"
    assert "/deadletterentry/" not in "".join(steps)  # a failed task is not in the DLQ
    missing = admin_client().get(page_of(str(uuid.uuid4())), follow=True)
    assert "There is no workflow" in missing.content.decode()


def test_cancel_is_post_only_and_marks_the_steps_it_cancelled(b: Broker) -> None:
    flow = producer.chain(count(), count(), count())
    run_next(b)
    client = admin_client()
    assert client.get(cancel_of(flow.id)).status_code == 405
    assert producer.get_workflow(flow.id).state == "running"
    reply = client.post(cancel_of(flow.id), follow=True)
    html = reply.content.decode()
    assert reply.redirect_chain[-1][0] == page_of(flow.id)
    assert "cancelled (2 of 3 steps cancelled)" in html
    assert producer.get_workflow(flow.id).state == "cancelled"
    assert cell(html, "state") == "cancelled" and 'value="Cancel workflow"' not in html
    steps = [row(html, "data-step", str(i)) for i in range(3)]
    assert ["tq-stopped" in s for s in steps] == [False, True, True]


def test_a_completed_workflow_cannot_be_cancelled(b: Broker) -> None:
    flow = producer.chain(count())
    run_next(b)
    reply = admin_client().post(cancel_of(flow.id), follow=True)
    assert "has completed: nothing to cancel" in reply.content.decode()
    assert producer.get_workflow(flow.id).state == "completed"


def test_cancel_needs_the_csrf_token(b: Broker) -> None:
    flow = producer.chain(count())
    client = admin_client(csrf=True)
    assert client.post(cancel_of(flow.id)).status_code == 403
    assert producer.get_workflow(flow.id).state == "pending"


def test_staff_without_the_permissions_get_403_and_nothing_changes(b: Broker) -> None:
    flow = producer.chain(count(), count())
    viewer = admin_client(perms.WORKFLOW_VIEW)
    nobody = admin_client(perms.DLQ_VIEW)
    for path in (LIST, page_of(flow.id)):
        assert nobody.get(path).status_code == 403
        assert viewer.get(path).status_code == 200
    assert 'value="Cancel workflow"' not in viewer.get(page_of(flow.id)).content.decode()
    before = redis_snapshot()
    for client in (nobody, viewer, admin_client(perms.WORKFLOW_CANCEL)):
        assert client.post(cancel_of(flow.id)).status_code == 403
    assert redis_snapshot() == before
    allowed = admin_client(perms.WORKFLOW_VIEW, perms.WORKFLOW_CANCEL)
    assert allowed.post(cancel_of(flow.id)).status_code == 302
    assert producer.get_workflow(flow.id).state == "cancelled"
    index = nobody.get("/django-admin/").content.decode()
    assert LIST not in index and LIST in allowed.get("/django-admin/").content.decode()


def owner_visibility() -> override_settings:
    return override_settings(TASKQUEUE={
        "REDIS_URL": tq_settings.REDIS_URL, "AUTH_ENABLED": True, "API_KEYS": [CLIENT_KEY],
        "TASK_VISIBILITY": "owner"})


def others_workflow() -> Workflow:
    """A workflow another client (an API key) created."""
    with owner_visibility():
        made = call("POST", "/api/v1/workflows", {"chain": [count(), count()]},
                    **{"X-API-Key": CLIENT_KEY})
    assert made.status == 201, made.body
    return producer.get_workflow(made.body["id"])


HELD = [(), (perms.WORKFLOW_VIEW,), (perms.WORKFLOW_CANCEL,),
        (perms.WORKFLOW_VIEW, perms.WORKFLOW_CANCEL)]


@pytest.mark.parametrize("held", HELD,
                         ids=lambda held: "+".join(n.split(".")[1] for n in held) or "none")
def test_the_django_admin_and_the_api_agree(held: tuple[str, ...]) -> None:
    """Whatever a staff user holds, a workflows page or action on another client's workflow
    is allowed exactly when the REST route doing the same thing is (the API answers 404 for
    a workflow the user may not see, 403 for one it may see but not cancel), and a refused
    one changes nothing."""
    user = user_with(*held)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    token = bearer(User.objects.get(pk=user.pk))
    for method, admin_path, api_method in (("GET", LIST, "GET"), ("GET", "page", "GET"),
                                           ("POST", "cancel", "DELETE")):
        flow = others_workflow()
        path = {"page": page_of(flow.id), "cancel": cancel_of(flow.id)}.get(admin_path,
                                                                             admin_path)
        before = redis_snapshot()
        by_admin = getattr(client, method.lower())(path).status_code
        if by_admin == 403:
            assert redis_snapshot() == before, path
        flow = others_workflow()
        with owner_visibility():
            reply = call(api_method, f"/api/v1/workflows/{flow.id}", **token)
        assert by_admin in (200, 302, 403) and reply.status in (200, 403, 404), (
            path, by_admin, reply.status)
        assert (by_admin != 403) == (reply.status == 200), (held, method, path, reply.body)
        if reply.status == 403:
            assert error(reply) == (403, "Forbidden",
                                    f"missing permission {perms.WORKFLOW_CANCEL}")


def test_a_staff_user_without_the_permissions_still_sees_its_own_workflows() -> None:
    """Under owner visibility a staff user lacking them is scoped as a client: its own
    workflows only (GET and DELETE), others' are 404."""
    user = user_with()
    token = bearer(user)
    with owner_visibility():
        made = call("POST", "/api/v1/workflows", {"chain": [count()]}, **token)
        assert made.status == 201
        assert call("GET", f"/api/v1/workflows/{made.body['id']}", **token).status == 200
        other = others_workflow()
        assert call("GET", f"/api/v1/workflows/{other.id}", **token).status == 404
        assert call("DELETE", f"/api/v1/workflows/{made.body['id']}", **token).status == 200
