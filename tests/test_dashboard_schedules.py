"""The dashboard's schedules panel: in the snapshot (and the page) only for staff holding the
schedules' view permission; in headless Chromium, the panel follows a live schedule's ticks
(next run, the last task's state) through schedule.* events, refetching at most once a second."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import pytest
from django.test import Client

from tasks_app import permissions, producer
from tasks_app.core.schedules import ScheduleSpec
from tests.browser import (  # noqa: F401  (the *_fixture names are fixtures)
    LiveSite,
    browser_fixture,
    expect,
    live_site_fixture,
    live_worker_fixture,
    operator_page_fixture,
    screenshot,
    signed_in_states_fixture,
    superuser_page_fixture,
    worker_pool_fixture,
)
from tests.procs import WorkerProcess, wait_for
from tests.test_dashboard import embedded, staff_with

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request


@pytest.mark.django_db
def test_only_staff_with_the_schedules_view_permission_get_the_panel(client: Client) -> None:
    store = producer.schedules()
    store.create(ScheduleSpec("soon", "echo", every=5))
    store.create(ScheduleSpec("later", "echo", every=3600))
    store.create(ScheduleSpec("stopped", "echo", every=1, enabled=False))
    task_id = store.trigger("later")
    client.force_login(staff_with(*permissions.DASHBOARD))
    assert "schedules" not in client.get("/dashboard/snapshot").json()["snapshot"]
    page = client.get("/dashboard/").content.decode()
    assert "schedules" not in embedded(page, "tq-initial") and 'id="schedules-panel"' not in page
    client.force_login(staff_with(*permissions.DASHBOARD, permissions.SCHEDULE_VIEW,
                                  username="sched-viewer"))
    panel = client.get("/dashboard/snapshot").json()["snapshot"]["schedules"]
    assert panel["count"] == 3
    assert [s["name"] for s in panel["items"]] == ["soon", "later", "stopped"]  # soonest first
    later = panel["items"][1]
    assert later == {**store.get("later").to_dict(), "last_state": "pending"}
    assert later["last_task_id"] == task_id and panel["items"][0]["last_state"] is None
    page = client.get("/dashboard/").content.decode()
    assert embedded(page, "tq-initial")["schedules"]["count"] == 3
    assert 'id="schedules-panel"' in page


def test_the_panel_follows_ticks_and_refetches_at_most_once_a_second(
        superuser_page: Page, operator_page: Page, live_site: LiveSite,
        live_worker: WorkerProcess) -> None:
    store = producer.schedules()
    store.create(ScheduleSpec("tick", "echo", every=1))
    store.create(ScheduleSpec("hourly", "echo", cron="0 * * * *", timezone="Europe/Paris"))
    page = superuser_page
    page.goto(live_site.url("/dashboard/"))
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    fetches: list[float] = []

    def count(request: Request) -> None:
        if request.url.endswith("/dashboard/snapshot"):
            fetches.append(time.monotonic())

    page.on("request", count)
    row = page.locator('#schedules-body tr[data-schedule="tick"]')
    expect(row.locator(".when")).to_have_text("every 1s")
    expect(row.locator(".result")).to_have_text("completed", timeout=5000)
    hourly = page.locator('#schedules-body tr[data-schedule="hourly"]')
    expect(hourly.locator(".when")).to_have_text("0 * * * * (Europe/Paris)")
    expect(hourly.locator(".result")).to_have_text("—")
    first = row.get_attribute("data-last-task")
    later = wait_for(lambda: (v := row.get_attribute("data-last-task")) != first and v, 5.0)
    assert producer.get(str(later)).metadata["schedule"] == "tick"  # a newer tick's task
    expect(row.locator(".next")).to_have_text(re.compile(r"\d\d:\d\d:\d\d \((in \d+s|due)\)"))
    fired_row = page.locator('#feed li[data-type="schedule.fired"]').first
    expect(fired_row.locator(".what")).to_contain_text("tick")
    expect(fired_row.locator(".detail")).to_contain_text(re.compile(r"tick \d\d:\d\d:\d\d · lag"))
    screenshot(page, "dashboard-schedules")
    fetches.clear()
    started = time.monotonic()
    page.wait_for_timeout(4000)  # (lets Playwright deliver the request events)
    spans = time.monotonic() - started
    assert 2 <= len(fetches) <= spans + 1, fetches  # events every tick, one fetch a second
    store.pause("tick")  # publishes no event: shown at the next one (here a run of hourly's)
    page.wait_for_timeout(1500)
    fired = store.trigger("hourly")
    expect(row.locator(".state")).to_have_text("paused", timeout=3000)
    expect(row.locator(".next")).to_have_text("—")
    expect(hourly).to_have_attribute("data-last-task", fired)
    operator_page.goto(live_site.url("/dashboard/"))
    expect(operator_page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    assert operator_page.locator("#schedules-panel").count() == 0
