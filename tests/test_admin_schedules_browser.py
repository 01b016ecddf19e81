"""The Django admin's Schedules section in headless Chromium against a live daphne and a
live worker: the list fills in as ticks fire, pause stops them, "Run now" creates a task
that the worker runs."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from tasks_app import producer
from tasks_app.core.schedules import ScheduleSpec
from tests.browser import (  # noqa: F401  (the *_fixture names are fixtures)
    LiveSite,
    browser_fixture,
    expect,
    live_site_fixture,
    live_worker_fixture,
    screenshot,
    signed_in_states_fixture,
    superuser_page_fixture,
    worker_pool_fixture,
)
from tests.procs import WorkerProcess, wait_for, wait_for_state

if TYPE_CHECKING:
    from playwright.sync_api import Page

LIST = "/django-admin/workers_app/schedule/"
TIMEOUT = 10.0


def test_list_pause_and_run_now(superuser_page: Page, live_site: LiveSite,
                                live_worker: WorkerProcess) -> None:
    store = producer.schedules()
    store.create(ScheduleSpec("tick", "echo", every=1))
    store.create(ScheduleSpec("orphan", "nobody-handles-this", every=1))
    first = wait_for(lambda: store.get("tick").last_task_id, TIMEOUT)
    wait_for_state(first, "completed", TIMEOUT)
    wait_for(lambda: store.get("orphan").error, TIMEOUT)
    page = superuser_page
    page.goto(live_site.url(LIST))
    row = page.locator('tr[data-schedule="tick"]')
    expect(row.locator(".field-when")).to_have_text("every 1s")
    expect(row.locator(".field-paused")).to_have_text("no")
    expect(row.locator(".field-last-task")).to_contain_text(re.compile(r"\((completed|pending|"
                                                                       r"running)\)"))
    expect(page.locator('tr[data-schedule="orphan"] .field-error')).to_contain_text(
        "no handler for task type 'nobody-handles-this'")
    screenshot(page, "admin-schedules")

    with page.expect_navigation():
        row.locator('input[value="Pause"]').click()
    expect(page.locator(".messagelist .success")).to_have_text("Schedule “tick” paused.")
    expect(row.locator(".field-paused")).to_have_text("paused")
    expect(row.locator(".field-next-run")).to_have_text("—")
    last = store.get("tick").last_task_id
    time.sleep(2.5)
    assert store.get("tick").last_task_id == last, "a paused schedule fired"

    with page.expect_navigation():
        row.locator('input[value="Run now"]').click()
    message = page.locator(".messagelist .success")
    expect(message).to_contain_text("Schedule “tick” ran now: task ")
    task_id = re.findall(r"task ([0-9a-f-]{36})", message.inner_text())[0]
    assert task_id != last and store.get("tick").last_task_id == task_id
    wait_for_state(task_id, "completed", TIMEOUT)
    page.reload()
    expect(row.locator(".field-last-task")).to_have_text(f"{task_id} (completed)")
    assert producer.get(task_id).metadata["schedule"] == "tick"
