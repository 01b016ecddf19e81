"""The Django admin's Redis sections in headless Chromium against a live daphne and worker.

The flows an operator follows: sign in, find a dead-lettered task, retry it from the list
and watch it complete; clear the dead letter queue; pause and resume a worker. Screenshots
of the DLQ list, an entry page and the workers page are saved under test-artifacts/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks_app import producer
from tasks_app.connection import get_broker
from tasks_app.core.inspect import Inspector
from tests.browser import (  # noqa: F401  (the *_fixture names are fixtures)
    STAFF,
    SUPERUSER,
    LiveSite,
    browser_fixture,
    expect,
    live_site_fixture,
    live_worker_fixture,
    login,
    new_page,
    screenshot,
    signed_in_states_fixture,
    superuser_page_fixture,
    watch,
    worker_pool_fixture,
)
from tests.factories import dead_letter
from tests.procs import WorkerPool, WorkerProcess, wait_for, wait_for_state

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

DLQ_URL = "/django-admin/tasks_app/deadletterentry/"
WORKERS_URL = "/django-admin/workers_app/worker/"
QUEUES_URL = "/django-admin/workers_app/queue/"
TASK_TIMEOUT = 10.0


def dead_letter_by_worker(count: int) -> list[str]:
    """Enqueue ``fail`` tasks without retries and wait until a live worker dead-letters them."""
    ids = [producer.enqueue("fail", {"message": f"no luck #{i}"}, max_retries=0).id
           for i in range(count)]
    for task_id in ids:
        wait_for_state(task_id, "dead_letter", TASK_TIMEOUT)
    return ids


def run_action(page: Page, action: str, task_ids: tuple[str, ...] = ()) -> None:
    """Pick rows and an action on the DLQ list, then confirm on Django's intermediate page."""
    for task_id in task_ids:
        page.check(f'tr[data-task-id="{task_id}"] input.action-select')
    page.select_option('select[name="action"]', action)
    with page.expect_navigation():
        page.click('button[name="index"]')
    expect(page.locator("#confirm-question")).to_contain_text("Are you sure")
    with page.expect_navigation():
        page.click('#content-main input[type="submit"]')


def test_sign_in_see_a_dead_task_retry_it_and_watch_it_complete(
        browser: Browser, live_site: LiveSite, worker_pool: WorkerPool) -> None:
    [echo_id] = dead_letter(get_broker(), 1, error="RuntimeError: upstream said 503")
    worker = worker_pool.start(concurrency=2, inspector=Inspector(get_broker()), name="live")
    [fail_id] = dead_letter_by_worker(1)
    context, page = new_page(browser, live_site)
    problems = watch(page)
    login(page, live_site, SUPERUSER, next_path=DLQ_URL)
    assert page.url.endswith(DLQ_URL)
    rows = page.locator("#result_list tbody tr[data-task-id]")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-task-id", fail_id)  # newest first
    expect(rows.nth(0)).to_contain_text("no luck #0")
    expect(rows.nth(1)).to_contain_text("upstream said 503")
    screenshot(page, "admin-dlq-list")

    with page.expect_navigation():
        page.click(f'tr[data-task-id="{echo_id}"] a')
    expect(page.locator("#dlq-error")).to_contain_text("RuntimeError: upstream said 503")
    expect(page.locator("#dlq-details")).to_contain_text("max retries exceeded")
    expect(page.locator("#dlq-payload")).to_be_visible()
    screenshot(page, "admin-dlq-entry")

    page.goto(live_site.url(DLQ_URL))
    run_action(page, "retry_selected", (echo_id,))
    expect(page.locator(".messagelist .success")).to_have_text("1 task re-queued.")
    expect(page.locator(f'tr[data-task-id="{echo_id}"]')).to_have_count(0)
    expect(page.locator(f'tr[data-task-id="{fail_id}"]')).to_have_count(1)
    wait_for_state(echo_id, "completed", TASK_TIMEOUT)
    assert worker.alive
    context.close()
    assert not problems.script_errors and not problems.bad_responses


def test_clear_the_dead_letter_queue(superuser_page: Page, live_site: LiveSite,
                                     live_worker: WorkerProcess) -> None:
    dead_letter_by_worker(3)
    page = superuser_page
    page.goto(live_site.url(DLQ_URL))
    expect(page.locator("#result_list tbody tr[data-task-id]")).to_have_count(3)
    run_action(page, "clear_dlq")
    expect(page.locator(".messagelist .success")).to_have_text("3 tasks deleted.")
    expect(page.locator("#result_list")).to_contain_text("The dead letter queue is empty.")
    assert producer.inspector().dlq_size() == 0


def test_pause_and_resume_a_worker(superuser_page: Page, live_site: LiveSite,
                                   live_worker: WorkerProcess) -> None:
    inspector = Inspector(get_broker())
    page = superuser_page
    page.goto(live_site.url(WORKERS_URL))
    row = page.locator(f'tr[data-worker="{live_worker.id}"]')
    expect(row.locator(".field-state")).to_have_text("idle")
    with page.expect_navigation():
        row.locator('input[value="Pause"]').click()
    expect(page.locator(".messagelist .success")).to_contain_text("paused")
    expect(row.locator(".field-state")).to_have_text("paused")
    assert inspector.worker(live_worker.id).state == "paused"
    screenshot(page, "admin-workers")
    with page.expect_navigation():
        row.locator('input[value="Resume"]').click()
    expect(row.locator(".field-state")).to_have_text("idle")
    task = producer.enqueue("echo", {"after": "resume"})
    wait_for_state(task.id, "completed", TASK_TIMEOUT)
    wait_for(lambda: inspector.worker(live_worker.id).state == "idle", TASK_TIMEOUT)


def test_pause_and_resume_a_named_queue(superuser_page: Page, live_site: LiveSite,
                                        worker_pool: WorkerPool) -> None:
    held = producer.enqueue("echo", {"queue": "emails"}, queue="emails")
    page = superuser_page
    worker_pool.start("--queues", "emails,default", inspector=Inspector(get_broker()))
    wait_for_state(held.id, "completed", TASK_TIMEOUT)
    page.goto(live_site.url(QUEUES_URL))
    row = page.locator('tr[data-named-queue="emails"]')
    expect(row.locator(".field-paused")).to_have_text("no")
    with page.expect_navigation():
        row.locator('input[value="Pause"]').click()
    expect(page.locator(".messagelist .success")).to_have_text("Named queue “emails” paused.")
    expect(row.locator(".field-paused")).to_have_text("paused")
    waiting = producer.enqueue("echo", {}, queue="emails")
    other = producer.enqueue("echo", {})
    wait_for_state(other.id, "completed", TASK_TIMEOUT)
    page.reload()
    expect(row.locator(".field-depth")).to_have_text("1")
    assert producer.get(waiting.id).state.value == "pending"
    screenshot(page, "admin-queues")
    with page.expect_navigation():
        row.locator('input[value="Resume"]').click()
    expect(row.locator(".field-paused")).to_have_text("no")
    wait_for_state(waiting.id, "completed", TASK_TIMEOUT)


def test_staff_without_permissions_get_the_admins_refusal(
        browser: Browser, live_site: LiveSite) -> None:
    dead_letter(get_broker(), 1)
    context, page = new_page(browser, live_site)
    login(page, live_site, STAFF, next_path="/django-admin/")
    expect(page.locator("#content-main")).not_to_contain_text("Dead letter queue")
    for url in (DLQ_URL, WORKERS_URL):
        response = page.goto(live_site.url(url))
        assert response is not None and response.status == 403, url
    context.close()
