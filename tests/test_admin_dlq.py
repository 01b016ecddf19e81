"""The Django admin over Redis (dead letter queue, workers, queues) through the test client.

The data is real: tasks are dead-lettered by the broker on the session's Redis, and the
admin must read it back one page at a time, act on it, and refuse users without permission.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.test import Client

from tasks_app import producer
from tasks_app.connection import get_broker
from tasks_app.core.errors import TaskNotFound
from tasks_app.core.states import TaskState
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import WORKER, make_spec, register, take

pytestmark = pytest.mark.django_db

DLQ = "/django-admin/tasks_app/deadletterentry/"
WORKERS = "/django-admin/workers_app/worker/"
QUEUES = "/django-admin/workers_app/queue/"
RETRY, DELETE = "tasks_app.retry_deadletterentry", "tasks_app.delete_deadletterentry"
VIEW_DLQ = "tasks_app.view_deadletterentry"
ALL_DLQ = (VIEW_DLQ, RETRY, DELETE)

MakeClient = Callable[..., Client]


def dead_letter(count: int, task_type: str = "echo", error: str = "boom") -> list[str]:
    """Dead-letter ``count`` tasks of one type through the broker; ids oldest first."""
    broker = get_broker()
    register(broker)
    specs = [make_spec(task_type, max_retries=0, payload={"n": i}) for i in range(count)]
    broker.enqueue_many(specs)
    ids = []
    for _ in specs:
        job = take(broker)
        broker.fail(job, WORKER, error)
        ids.append(job.id)
    return ids


def row_ids(html: str) -> list[str]:
    """The task ids of the list's rows, in page order."""
    return re.findall(r'<tr data-task-id="([^"]+)"', html)


def next_link(html: str) -> str:
    """The href of the list's next-page link."""
    match = re.search(r'<a href="([^"]+)" class="dlq-next">', html)
    assert match, "no next-page link"
    return match.group(1).replace("&amp;", "&")


def state_of(task_id: str) -> TaskState | None:
    """A task's state, or None once its record is gone."""
    try:
        return producer.get(task_id).state
    except TaskNotFound:
        return None


@pytest.fixture
def make_client(client: Client, django_user_model: type[User]) -> MakeClient:
    """A client signed in as a new staff user holding the given permissions."""

    def make(*perms: str, staff: bool = True) -> Client:
        user = django_user_model.objects.create_user(
            f"u{django_user_model.objects.count()}", password="x", is_staff=staff)
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(Permission.objects.get(
                content_type__app_label=app_label, codename=codename))
        client.force_login(user)
        return client

    return make


def test_list_shows_each_entry_newest_first(make_client: MakeClient) -> None:
    ids = dead_letter(3, error="it broke")
    html = make_client(VIEW_DLQ).get(DLQ).content.decode()
    assert row_ids(html) == list(reversed(ids))
    assert "3 entries in the dead letter queue" in html
    row = html[html.index(f'data-task-id="{ids[0]}"'):].split("</tr>")[0]
    for cell in (f'href="{DLQ}{ids[0]}/change/"', ">echo<", ">low<", ">max retries exceeded<",
                 ">it broke<", 'field-attempts">1<', " UTC<"):
        assert cell in row, cell


def test_empty_queue_says_so(make_client: MakeClient) -> None:
    html = make_client(VIEW_DLQ).get(DLQ).content.decode()
    assert "The dead letter queue is empty." in html and row_ids(html) == []


@pytest.mark.standalone  # counts commands in one server's commandstats
def test_a_page_of_2000_reads_one_page_from_redis(make_client: MakeClient,
                                                   redis_client: redis.Redis) -> None:
    ids = list(reversed(dead_letter(2000)))
    client = make_client(VIEW_DLQ)
    redis_client.config_resetstat()
    first = client.get(DLQ).content.decode()
    stats = redis_client.info("commandstats")
    assert row_ids(first) == ids[:100]
    assert "2000 entries in the dead letter queue" in first
    assert stats["cmdstat_xrevrange"]["calls"] == 1
    assert stats["cmdstat_hgetall"]["calls"] == 100  # the page's task records, no more
    second = client.get(DLQ + next_link(first)).content.decode()
    assert row_ids(second) == ids[100:200]
    assert 'class="dlq-first"' in second


def test_the_last_page_has_no_next_link(make_client: MakeClient) -> None:
    ids = list(reversed(dead_letter(150)))
    client = make_client(VIEW_DLQ)
    last = client.get(DLQ + next_link(client.get(DLQ).content.decode())).content.decode()
    assert row_ids(last) == ids[100:] and 'class="dlq-next"' not in last


def test_search_by_task_id_is_a_direct_lookup(make_client: MakeClient,
                                              redis_client: redis.Redis) -> None:
    ids = dead_letter(600)
    client = make_client(VIEW_DLQ)
    redis_client.config_resetstat()
    html = client.get(DLQ, {"q": ids[0]}).content.decode()
    assert row_ids(html) == [ids[0]] and "Found by task id." in html
    assert "cmdstat_xrevrange" not in redis_client.info("commandstats")


def test_search_and_filters_by_type_and_reason(make_client: MakeClient) -> None:
    echoes = dead_letter(3)
    fails = dead_letter(2, task_type="fail")
    client = make_client(VIEW_DLQ)
    newest_fails = list(reversed(fails))
    assert row_ids(client.get(DLQ, {"type": "fail"}).content.decode()) == newest_fails
    assert row_ids(client.get(DLQ, {"q": "FAI"}).content.decode()) == newest_fails
    html = client.get(DLQ, {"reason": "max retries exceeded"}).content.decode()
    assert row_ids(html) == list(reversed(echoes + fails))
    assert "5 matches in 5 entries scanned" in html and "at most 10000 entries" in html
    assert row_ids(client.get(DLQ, {"reason": "worker lost"}).content.decode()) == []
    assert row_ids(client.get(DLQ, {"type": "echo", "q": "nomatch"}).content.decode()) == []


def test_entry_page_shows_payload_metadata_error_attempts_and_times(
        make_client: MakeClient) -> None:
    [task_id] = dead_letter(1, error="Traceback: it <broke>")
    html = make_client(VIEW_DLQ).get(f"{DLQ}{task_id}/change/").content.decode()
    for text in (task_id, "echo", "max retries exceeded", "Traceback: it &lt;broke&gt;",
                 "&quot;n&quot;: 0", "Attempts:", "Max retries:", "Added to the DLQ:",
                 "Dead since:", "Created:", "dead_letter", "Metadata"):
        assert text in html, text
    assert "retry-entry" not in html and "delete-entry" not in html  # view-only user


def test_deep_or_huge_stored_data_keeps_the_pages_small(make_client: MakeClient) -> None:
    deep: dict[str, Any] = {}
    # Stored before MAX_JSON_DEPTH existed: indented, about 1 MB of spaces (700 levels, as
    # deep as Python 3.11's JSON encoder and decoder go under pytest's recursion limit).
    for _ in range(700):
        deep = {"a": deep}
    broker = get_broker()
    register(broker)
    broker.enqueue_many([make_spec(max_retries=0, payload=deep)])
    job = take(broker)
    broker.fail(job, WORKER, "E" * 2_000_000)
    client = make_client(VIEW_DLQ)

    page = client.get(f"{DLQ}{job.id}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert len(html) < 400_000, len(html)
    assert "(nested more than 64 levels: shown without indentation)" in html
    assert "… (cut at 100,000 characters)" in html
    assert len(client.get(DLQ).content) < 100_000


def test_entry_page_of_a_task_not_in_the_dlq_goes_back_to_the_list(
        make_client: MakeClient) -> None:
    response = make_client(VIEW_DLQ).get(f"{DLQ}nope/change/", follow=True)
    assert response.redirect_chain == [(DLQ, 302)]
    assert "is not in the dead letter queue" in response.content.decode()


@pytest.mark.parametrize(("action", "picked", "left", "message", "gone_state"), [
    ("retry_selected", 2, 3, "2 tasks re-queued.", TaskState.PENDING),
    ("delete_selected", 1, 4, "1 task deleted.", None),
    ("retry_all", 0, 0, "5 tasks re-queued.", TaskState.PENDING),
    ("clear_dlq", 0, 0, "5 tasks deleted.", None),
])
def test_each_action_confirms_then_reports_how_many(
        make_client: MakeClient, action: str, picked: int, left: int, message: str,
        gone_state: TaskState | None) -> None:
    ids = dead_letter(5)
    chosen = ids[:picked]
    client = make_client(*ALL_DLQ)
    form = {"action": action, "_selected_action": chosen}
    confirm = client.post(DLQ, form).content.decode()
    assert "Are you sure you want to" in confirm and 'name="post" value="yes"' in confirm
    assert all(f'name="_selected_action" value="{i}"' in confirm for i in chosen)
    assert producer.inspector().dlq_size() == 5, "the confirmation page changed nothing"
    if not picked:
        assert "<strong>all 5 tasks</strong>" in confirm
    done = client.post(DLQ, {**form, "post": "yes"}, follow=True)
    assert done.redirect_chain == [(DLQ, 302)]
    assert message in done.content.decode()
    assert producer.inspector().dlq_size() == left
    gone = chosen or ids
    assert [state_of(i) for i in gone] == [gone_state] * len(gone)
    assert all(state_of(i) is TaskState.DEAD_LETTER for i in ids if i not in gone)


def test_selected_actions_need_a_selection(make_client: MakeClient) -> None:
    dead_letter(2)
    response = make_client(*ALL_DLQ).post(DLQ, {"action": "retry_selected", "post": "yes"},
                                          follow=True)
    assert "Items must be selected" in response.content.decode()
    assert producer.inspector().dlq_size() == 2


def test_retrying_an_entry_already_gone_says_so(make_client: MakeClient) -> None:
    a, b = dead_letter(2)
    producer.inspector().dlq_retry(b)
    response = make_client(*ALL_DLQ).post(
        DLQ, {"action": "retry_selected", "_selected_action": [a, b], "post": "yes"}, follow=True)
    assert "1 task re-queued (1 task no longer in the dead letter queue)." in (
        response.content.decode())


def test_staff_without_permissions_are_refused_everything(make_client: MakeClient) -> None:
    [task_id] = dead_letter(1)
    client = make_client()
    assert "Dead letter queue" not in client.get("/django-admin/").content.decode()
    for url in (DLQ, f"{DLQ}{task_id}/change/", WORKERS, QUEUES):
        assert client.get(url).status_code == 403, url
    for action in ("retry_selected", "clear_dlq"):
        form = {"action": action, "_selected_action": [task_id], "post": "yes"}
        assert client.post(DLQ, form).status_code == 403
    assert client.post(f"{WORKERS}{WORKER}/pause/").status_code == 403
    assert client.post(f"{QUEUES}high/pause/").status_code == 403
    assert producer.inspector().dlq_size() == 1


def test_non_staff_are_sent_to_the_login_page(make_client: MakeClient) -> None:
    client = make_client(*ALL_DLQ, staff=False)
    response = client.get(DLQ)
    assert response.status_code == 302 and "/django-admin/login/" in response["Location"]


@pytest.mark.parametrize(("perms", "allowed"), [
    ((VIEW_DLQ,), set()),
    ((VIEW_DLQ, RETRY), {"retry_selected", "retry_all"}),
    ((VIEW_DLQ, DELETE), {"delete_selected", "clear_dlq"}),
])
def test_each_action_needs_its_permission(make_client: MakeClient, perms: tuple[str, ...],
                                          allowed: set[str]) -> None:
    [task_id] = dead_letter(1)
    client = make_client(*perms)
    html = client.get(DLQ).content.decode()
    offered = set(re.findall(r'<option value="(\w+)"', html))
    assert offered == allowed
    assert ('name="_selected_action"' in html) == bool(allowed)
    for action in {"retry_selected", "retry_all", "delete_selected", "clear_dlq"} - allowed:
        form = {"action": action, "_selected_action": [task_id], "post": "yes"}
        assert client.post(DLQ, form).status_code == 403, action
    assert producer.inspector().dlq_size() == 1


def test_admin_index_lists_the_redis_sections(make_client: MakeClient) -> None:
    html = make_client(VIEW_DLQ, "workers_app.view_worker", "workers_app.view_queue").get(
        "/django-admin/").content.decode()
    for url, name in ((DLQ, "Dead letter queue"), (WORKERS, "Workers"), (QUEUES, "Queues")):
        assert f'href="{url}"' in html and name in html


def test_workers_page_shows_state_and_pauses_and_resumes(make_client: MakeClient) -> None:
    register(get_broker(), "w-admin", concurrency=3)
    client = make_client("workers_app.view_worker", "workers_app.pause_worker")
    html = client.get(WORKERS).content.decode()
    row = html[html.index('data-worker="w-admin"'):].split("</tr>")[0]
    assert ">idle<" in row and "0 / 3" in row and " s ago<" in row and 'value="Pause"' in row
    paused = client.post(f"{WORKERS}w-admin/pause/", follow=True).content.decode()
    assert "Worker “w-admin” paused." in paused and 'value="Resume"' in paused
    assert producer.inspector().worker("w-admin").state == "paused"
    resumed = client.post(f"{WORKERS}w-admin/resume/", follow=True).content.decode()
    assert "Worker “w-admin” resumed." in resumed
    assert producer.inspector().worker("w-admin").state == "idle"
    gone = client.post(f"{WORKERS}nobody/pause/", follow=True).content.decode()
    assert "is not registered any more" in gone


def test_workers_page_without_pause_permission_has_no_buttons(make_client: MakeClient) -> None:
    register(get_broker(), "w-admin")
    client = make_client("workers_app.view_worker")
    html = client.get(WORKERS).content.decode()
    assert 'data-worker="w-admin"' in html and 'value="Pause"' not in html
    assert client.post(f"{WORKERS}w-admin/pause/").status_code == 403
    assert client.get(f"{WORKERS}w-admin/pause/").status_code == 405
    assert producer.inspector().worker("w-admin").state == "idle"


def test_queues_page_shows_depths_and_pauses_and_resumes(make_client: MakeClient) -> None:
    get_broker().enqueue_many([make_spec(priority=2), make_spec(priority=2)])
    client = make_client("workers_app.view_queue", "workers_app.pause_queue")
    html = client.get(QUEUES).content.decode()
    row = html[html.index('data-queue="high"'):].split("</tr>")[0]
    assert 'field-depth">2<' in row and 'field-paused">no<' in row
    paused = client.post(f"{QUEUES}high/pause/", follow=True).content.decode()
    assert "Queue “high” paused." in paused
    assert [q.paused for q in producer.inspector().queue_stats()] == [False, True, False, False]
    client.post(f"{QUEUES}high/resume/")
    assert not any(q.paused for q in producer.inspector().queue_stats())
    assert client.post(f"{QUEUES}urgent/pause/").status_code == 404


def test_queues_page_shows_named_queues_and_pauses_and_resumes_them(
        make_client: MakeClient) -> None:
    producer.enqueue_many([{"type": "echo", "queue": "emails", "priority": "high"}] * 2)
    client = make_client("workers_app.view_queue", "workers_app.pause_queue")
    html = client.get(QUEUES).content.decode()
    row = html[html.index('data-named-queue="emails"'):].split("</tr>")[0]
    assert 'field-depth">2<' in row and 'field-depths">0 / 2 / 0 / 0<' in row
    assert 'field-paused">no<' in row and 'value="Pause"' in row
    assert 'data-named-queue="default"' in html
    paused = client.post(f"{QUEUES}named/emails/pause/", follow=True).content.decode()
    assert "Named queue “emails” paused." in paused
    assert [q.paused for q in producer.inspector().named_queues()] == [False, True]
    row = paused[paused.index('data-named-queue="emails"'):].split("</tr>")[0]
    assert 'value="Resume"' in row
    client.post(f"{QUEUES}named/emails/resume/")
    assert not any(q.paused for q in producer.inspector().named_queues())
    assert client.post(f"{QUEUES}named/never-used/pause/").status_code == 404
    assert client.post(f"{QUEUES}named/-bad/pause/").status_code == 404
    assert client.get(f"{QUEUES}named/emails/pause/").status_code == 405


def test_queues_page_needs_its_own_permission(make_client: MakeClient) -> None:
    producer.enqueue("echo", {}, queue="emails")
    client = make_client("workers_app.view_queue")
    html = client.get(QUEUES).content.decode()
    assert 'value="Pause"' not in html and 'data-named-queue="emails"' in html
    assert client.post(f"{QUEUES}high/pause/").status_code == 403
    assert client.post(f"{QUEUES}named/emails/pause/").status_code == 403
    assert not any(q.paused for q in producer.inspector().named_queues())
    assert client.get(WORKERS).status_code == 403


def test_redis_down_is_a_503_page_not_a_crash(make_client: MakeClient,
                                              redis_server: EmbeddedRedis) -> None:
    client = make_client(VIEW_DLQ, "workers_app.view_worker")
    redis_server.stop()
    try:
        for url in (DLQ, WORKERS):
            response = client.get(url)
            assert response.status_code == 503, url
            assert "Redis is unavailable" in response.content.decode()
    finally:
        redis_server.start()
