"""The Django admin's Schedules section, through Django's test client against real Redis: the
list (timing, next and last run, last task, paused, the error of a type no worker handles),
the edit page (the API's validation, errors on the field they name), pause, resume, run now,
delete, POST and CSRF only; and each page or action allowed exactly when the REST route doing
the same thing is."""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tasks_app import permissions as perms
from tasks_app import producer
from tasks_app.core.schedules import Schedules, ScheduleSpec
from tests.api_support import broker, redis_snapshot
from tests.test_api_admin_permissions import Route, bearer, send, user_with

pytestmark = pytest.mark.django_db

LIST = "/django-admin/workers_app/schedule/"
PAGE = LIST + "nightly/change/"


def store() -> Schedules:
    return producer.schedules()


def seed() -> None:
    store().create(producer.schedule_spec({
        "name": "nightly", "type": "echo", "cron": "0 3 * * *", "timezone": "Europe/Paris",
        "payload": {"report": "sales"}}))


def admin_client(*held: str, superuser: bool = True, csrf: bool = False) -> Client:
    client = Client(HTTP_HOST="localhost", enforce_csrf_checks=csrf)
    client.force_login(user_with(*held, superuser=superuser and not held))
    return client


def row(html: str, name: str) -> str:
    found = re.search(rf'<tr data-schedule="{re.escape(name)}">(.*?)</tr>', html, re.S)
    assert found, html
    return found.group(1)


def cell(html: str, field: str) -> str:
    found = re.search(rf'class="field-{field}[^"]*">(.*?)</t[dh]>', html, re.S)
    assert found, html
    return html_lib.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def form_of(sched_name: str, **changes: Any) -> dict[str, Any]:
    """The edit form as the page fills it, with ``changes``."""
    sched = store().get(sched_name)
    data: dict[str, Any] = {"version": sched.version, "type": sched.spec.type,
                            "payload": '{"report": "sales"}', "cron": sched.spec.cron or "",
                            "every": sched.spec.every or "", "timezone": sched.spec.timezone,
                            "priority": "low", "queue": sched.spec.queue, "max_retries": "3",
                            "timeout": "300", "catchup": "latest", "enabled": "on"}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_the_list_shows_timing_runs_last_task_and_an_unhandled_type() -> None:
    seed()
    store().create(ScheduleSpec("orphan", "nobody-handles-this", every=5))
    task_id = store().trigger("nightly")
    fired = store().fire_one("default", "orphan", handles=lambda t: False)  # as a worker would
    assert fired == []
    page = admin_client().get(LIST)
    assert page.status_code == 200
    html = page.content.decode()
    nightly = row(html, "nightly")
    assert cell(nightly, "when") == "cron 0 3 * * * (Europe/Paris)"
    assert cell(nightly, "queue") == "default" and cell(nightly, "paused") == "no"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d 0[12]:00:00 UTC", cell(nightly, "next-run"))
    assert cell(nightly, "last-run").endswith("UTC")
    assert cell(nightly, "last-task") == f"{task_id} (pending)"
    assert cell(nightly, "error") == "—"
    orphan = row(html, "orphan")
    assert cell(orphan, "when") == "every 5s"
    assert "no handler for task type 'nobody-handles-this'" in cell(orphan, "error")
    assert "tq-schedule-error" in orphan


def test_the_last_task_links_to_its_dead_letter_entry() -> None:
    seed()
    task_id = store().trigger("nightly")
    b = broker()
    from tests.factories import register, take

    register(b, "w-sched")
    job = take(b, "w-sched")
    assert job.id == task_id
    b.fail(job, "w-sched", "broke")  # 3 retries left: retrying, not dead
    html = admin_client().get(LIST).content.decode()
    assert cell(row(html, "nightly"), "last-task") == f"{task_id} (retrying)"
    assert "/deadletterentry/" not in row(html, "nightly")
    b.client.hset(b.keys.task(task_id), "state", "dead_letter")
    html = admin_client().get(LIST).content.decode()
    assert f'href="/django-admin/tasks_app/deadletterentry/{task_id}/change/"' in \
        row(html, "nightly")


def test_editing_validates_as_the_api_and_shows_the_field_error() -> None:
    seed()
    client = admin_client()
    before = store().get("nightly")
    for changes, field, text in [
        ({"cron": "0 25 * * *"}, "cron", "invalid cron expression"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "timezone must be an IANA time zone"),
        ({"cron": "", "every": "0"}, "every", "every must be an integer number of seconds"),
        ({"every": "5"}, "cron", "give exactly one of cron or every"),
        ({"payload": "{nope"}, "payload", "payload is not JSON"),
        ({"type": "no-such-type"}, "type", "no-such-type"),
    ]:
        page = client.post(PAGE, form_of("nightly", **changes))
        assert page.status_code == 200, changes
        html = page.content.decode()
        errors = re.search(rf'form-row errors field-{field}">\s*<ul class="errorlist[^>]*>'
                           r"(.*?)</ul>", html, re.S)
        assert errors and text in errors.group(1), (changes, html[:3000])
        assert store().get("nightly") == before, changes
    saved = client.post(PAGE, form_of("nightly", cron="", every="60", priority="high"))
    assert saved.status_code == 302 and saved["Location"] == PAGE
    after = store().get("nightly")
    assert (after.spec.every, after.spec.cron, after.spec.priority) == (60, None, 2)
    assert after.spec.payload == {"report": "sales"}
    stale = client.post(PAGE, form_of("nightly", every="90") | {"version": before.version})
    assert stale.status_code == 200 and "The schedule changed since this page was loaded" in \
        stale.content.decode()
    assert store().get("nightly").spec.every == 60


def test_add_creates_and_refuses_a_taken_name() -> None:
    seed()
    client = admin_client()
    body = {"name": "poll", "type": "echo", "every": "30", "priority": "low",
            "catchup": "latest", "enabled": "on", "queue": "emails"}
    created = client.post(LIST + "add/", body)
    assert created.status_code == 302, created.content.decode()[:2000]
    assert store().get("poll").spec.queue == "emails"
    taken = client.post(LIST + "add/", {**body, "name": "nightly"})
    assert taken.status_code == 200 and "a schedule named &#x27;nightly&#x27; exists" in \
        taken.content.decode()


def test_pause_resume_run_now_and_delete() -> None:
    seed()
    client = admin_client()
    assert client.get(LIST + "nightly/pause/").status_code == 405  # POST only
    assert client.post(LIST + "nightly/pause/").status_code == 302
    assert store().get("nightly").paused
    assert cell(row(client.get(LIST).content.decode(), "nightly"), "next-run") == "—"
    done = client.post(LIST + "nightly/resume/", {"next": "change"})
    assert done["Location"] == PAGE and not store().get("nightly").paused
    ran = client.post(LIST + "nightly/trigger/", follow=True)
    task_id = store().get("nightly").last_task_id
    assert task_id and f"ran now: task {task_id}" in ran.content.decode()
    assert producer.get(task_id).metadata["trigger"] == "manual"
    assert client.post(LIST + "nightly/explode/").status_code == 404
    asked = client.get(LIST + "nightly/delete/")
    assert "Are you sure you want to delete the schedule" in asked.content.decode()
    assert store().count() == 1
    assert client.post(LIST + "nightly/delete/").status_code == 302
    assert store().count() == 0
    gone = client.post(LIST + "nightly/trigger/", follow=True)
    assert "does not exist any more" in gone.content.decode()


def test_actions_need_the_csrf_token() -> None:
    seed()
    client = admin_client(csrf=True)
    before = redis_snapshot()
    for url, data in [(LIST + "nightly/pause/", {}), (LIST + "nightly/trigger/", {}),
                      (LIST + "nightly/delete/", {}), (PAGE, form_of("nightly", every="5",
                                                                      cron=""))]:
        assert client.post(url, data).status_code == 403, url
    assert redis_snapshot() == before
    html = client.get(LIST).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert token
    ok = client.post(LIST + "nightly/pause/", {"csrfmiddlewaretoken": token.group(1)})
    assert ok.status_code == 302 and store().get("nightly").paused


# -- the admin and the REST API ask for the same permissions ------------------------------

NAME = "perm-sched"
ADMIN_LIST = LIST
ADMIN_PAGE = f"{LIST}{NAME}/change/"
EDIT = {"type": "echo", "every": "30", "priority": "low", "catchup": "latest",
        "enabled": "on", "version": "1"}
# (Django admin request, the REST route doing the same)
SAME_THING = [
    (("GET", ADMIN_LIST, None), Route("GET", "/admin/schedules", (perms.SCHEDULE_VIEW,))),
    (("GET", ADMIN_PAGE, None), Route("GET", f"/admin/schedules/{NAME}", (perms.SCHEDULE_VIEW,))),
    (("POST", ADMIN_PAGE, EDIT), Route("PUT", f"/admin/schedules/{NAME}", (),
                                       {"type": "echo", "every": 30})),
    (("POST", f"{LIST}add/", {**EDIT, "name": "perm-new"}),
     Route("POST", "/admin/schedules", (), {"name": "perm-new", "type": "echo", "every": 30})),
    (("POST", f"{LIST}{NAME}/pause/", None), Route("POST", f"/admin/schedules/{NAME}/pause", ())),
    (("POST", f"{LIST}{NAME}/resume/", None),
     Route("POST", f"/admin/schedules/{NAME}/resume", ())),
    (("POST", f"{LIST}{NAME}/trigger/", None),
     Route("POST", f"/admin/schedules/{NAME}/trigger", ())),
    (("GET", f"{LIST}{NAME}/delete/", None), Route("DELETE", f"/admin/schedules/{NAME}", ())),
    (("POST", f"{LIST}{NAME}/delete/", None), Route("DELETE", f"/admin/schedules/{NAME}", ())),
]
ALL = (perms.SCHEDULE_VIEW, perms.SCHEDULE_ADD, perms.SCHEDULE_CHANGE, perms.SCHEDULE_DELETE,
       perms.SCHEDULE_TRIGGER)
HELD = [(), *((name,) for name in ALL),
        *((perms.SCHEDULE_VIEW, name) for name in ALL[1:]), ALL]


def reset() -> None:
    """Only the schedule the routes act on, freshly made (version 1)."""
    for sched in store().all():
        store().delete(sched.name)
    store().create(ScheduleSpec(NAME, "echo", every=10))


@pytest.mark.parametrize("held", HELD,
                         ids=lambda held: "+".join(n.split(".")[1] for n in held) or "none")
def test_the_django_admin_and_the_api_agree(held: tuple[str, ...]) -> None:
    """Whatever a staff user holds, a schedules page or action is allowed exactly when the
    REST route doing the same thing is, and a refused one changes nothing."""
    user = user_with(*held)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    for (method, page, form), route in SAME_THING:
        reset()
        before = redis_snapshot()
        by_admin = getattr(client, method.lower())(page, form or {}).status_code
        if by_admin == 403:
            assert redis_snapshot() == before, page
        reset()
        by_api = send(route, bearer(User.objects.get(pk=user.pk))).status
        assert by_admin in (200, 302, 403) and by_api in (200, 201, 403), (page, by_admin, by_api)
        assert (by_admin != 403) == (by_api in (200, 201)), (held, method, page, route)
