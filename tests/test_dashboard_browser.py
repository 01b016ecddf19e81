"""The dashboard in headless Chromium against a live daphne and real workers.

Every "within 2 s" below is the issue's promise: after a change (tasks enqueued, a
worker paused, a task dead-lettered) the charts and the feed show it within 2 seconds,
with no reload and no polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks_app import producer
from tasks_app.connection import get_broker
from tasks_app.core.inspect import Inspector
from tests.browser import (  # noqa: F401  (the *_fixture names are fixtures)
    OPERATOR,
    STAFF,
    VIEWER,
    LiveSite,
    browser_fixture,
    expect,
    live_site_fixture,
    live_worker_fixture,
    login,
    new_page,
    operator_page_fixture,
    operator_phone_page_fixture,
    screenshot,
    signed_in_states_fixture,
    watch,
    worker_pool_fixture,
)
from tests.factories import register
from tests.procs import WorkerPool, WorkerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

PROMISE_MS = 2000
DLQ_URL = "/django-admin/tasks_app/deadletterentry/"


def open_dashboard(page: Page, live_site: LiveSite) -> Page:
    """Load /dashboard/ and wait until its socket is live."""
    page.goto(live_site.url("/dashboard/"))
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    return page


def worker_row(page: Page, worker_id: str) -> Any:
    """The workers-table row of one worker."""
    return page.locator(f'#workers-body tr[data-worker="{worker_id}"]')


def feed_row(page: Page, event_type: str, task_id: str) -> Any:
    """The feed entry of one task event."""
    return page.locator(f'#feed li[data-type="{event_type}"][data-task-id="{task_id}"]')


def chart_number(page: Page, chart: str, name: str) -> float:
    """A chart's data-peak or data-sum (what it currently draws)."""
    return float(page.locator(f"#{chart}").get_attribute(f"data-{name}") or 0)


def wait_until(page: Page, check: Callable[[], bool], timeout_ms: int = PROMISE_MS) -> None:
    """Poll a condition on the page side of the test until it holds."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not check():
        assert time.monotonic() < deadline, f"not true within {timeout_ms} ms"
        page.wait_for_timeout(50)


def test_anonymous_visitors_sign_in_first_and_staff_need_the_view_permissions(
        browser: Browser, live_site: LiveSite) -> None:
    context, page = new_page(browser, live_site)
    page.goto(live_site.url("/dashboard/"))
    assert "/django-admin/login/" in page.url and "next=/dashboard/" in page.url
    login(page, live_site, VIEWER)
    expect(page.locator(".errornote")).to_contain_text("staff account")
    login(page, live_site, STAFF)
    assert page.url == live_site.url("/dashboard/")
    expect(page.locator("body")).to_contain_text(
        "missing permissions workers_app.view_queue, workers_app.view_worker, "
        "tasks_app.view_deadletterentry")
    expect(page.locator("#conn")).to_have_count(0)
    context.close()

    context, page = new_page(browser, live_site)
    problems = watch(page)
    login(page, live_site, OPERATOR)
    assert page.url == live_site.url("/dashboard/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    expect(page.locator("#dlq-link")).to_have_attribute("href", DLQ_URL)
    expect(page.locator("#no-workers-banner")).to_be_visible()
    served = [r for r in problems.bad_responses if "/static/" in r or "/dashboard/" in r]
    assert served == [], "static files and the page are served with DEBUG off"
    context.close()


def test_enqueued_tasks_move_the_depth_chart_and_feed_within_2s(
        operator_page: Page, live_site: LiveSite, live_worker: WorkerProcess) -> None:
    page = open_dashboard(operator_page, live_site)
    row = worker_row(page, live_worker.id)
    expect(row).to_have_attribute("data-state", "idle")
    expect(page.locator("#no-workers-banner")).to_be_hidden()
    Inspector(get_broker()).pause_worker(live_worker.id)
    expect(row.locator(".state")).to_have_text("paused", timeout=PROMISE_MS)

    high = producer.enqueue_many([{"type": "echo", "priority": "high"}] * 5)
    low = producer.enqueue_many([{"type": "echo", "priority": "low"}] * 3)
    expect(page.locator("#depth-legend [data-series=high] b")).to_have_text("5",
                                                                           timeout=PROMISE_MS)
    expect(page.locator("#depth-legend [data-series=low] b")).to_have_text("3")
    expect(page.locator("[data-kpi=pending]")).to_have_text("8")
    assert chart_number(page, "depth-chart", "peak") == 8
    for task in high + low:
        expect(feed_row(page, "task.submitted", task.id)).to_have_count(1)

    Inspector(get_broker()).resume_worker(live_worker.id)
    last = low[-1]
    expect(feed_row(page, "task.completed", last.id)).to_have_count(1, timeout=PROMISE_MS)
    expect(feed_row(page, "task.completed", last.id).locator(".detail")).to_contain_text("ms")
    expect(page.locator("#depth-legend [data-series=high] b")).to_have_text("0",
                                                                           timeout=PROMISE_MS)
    expect(page.locator("[data-kpi=completed-sub]")).to_have_text("8 total", timeout=PROMISE_MS)
    wait_until(page, lambda: round(chart_number(page, "rate-chart", "sum")) == 8)
    expect(page.locator("[data-kpi=completed]")).not_to_have_text("0/s")
    expect(row.locator(".processed")).to_have_text("8")


def test_named_queues_show_their_depths_and_task_rows_their_queue(
        operator_page: Page, live_site: LiveSite, worker_pool: WorkerPool) -> None:
    producer.enqueue("echo", {}, queue="emails")  # the queue exists when the page loads
    page = open_dashboard(operator_page, live_site)
    emails = page.locator('#named-queues-body tr[data-named-queue="emails"]')
    expect(emails.locator(".depth")).to_have_text("1")
    expect(page.locator('#named-queues-body tr[data-named-queue="default"]')).to_be_visible()
    tasks = producer.enqueue_many([{"type": "echo", "queue": "emails", "priority": "high"}] * 2)
    expect(emails.locator(".depth")).to_have_text("3", timeout=PROMISE_MS)
    expect(emails.locator(".high")).to_have_text("2", timeout=PROMISE_MS)
    submitted = feed_row(page, "task.submitted", tasks[0].id)
    expect(submitted.locator(".queue")).to_have_text("emails", timeout=PROMISE_MS)
    producer.inspector().pause_named_queue("emails")
    reports = producer.enqueue("echo", {}, queue="reports")
    expect(emails.locator(".state")).to_have_text("paused", timeout=PROMISE_MS)
    row = page.locator('#named-queues-body tr[data-named-queue="reports"]')
    expect(row.locator(".depth")).to_have_text("1", timeout=PROMISE_MS)
    expect(feed_row(page, "task.submitted", reports.id).locator(".queue")).to_have_text("reports")
    worker_pool.start("--queues", "emails,reports", inspector=Inspector(get_broker()))
    expect(row.locator(".depth")).to_have_text("0", timeout=5000)
    expect(emails.locator(".depth")).to_have_text("3")  # paused: nothing taken
    screenshot(page, "dashboard-named-queues")
    assert page.locator("#queues-link").get_attribute("href") == \
        "/django-admin/workers_app/queue/"


def test_limited_types_show_their_running_and_parked_counts(
        operator_page: Page, live_site: LiveSite) -> None:
    from tasks_app.core.limits import TypeLimit

    page = open_dashboard(operator_page, live_site)
    expect(page.locator("#type-limits-panel")).to_be_hidden()  # no limits: no panel
    producer.type_limits().set("echo", TypeLimit(1, "5/s"))
    for _ in range(3):
        producer.enqueue("echo", {})
    register(get_broker(), "w-limits", concurrency=4)
    get_broker().take("w-limits", (3, 2, 1, 0), 4)  # one runs, two wait for the limit
    row = page.locator('#type-limits-body tr[data-type="echo"]')
    expect(row.locator(".parked")).to_have_text("2", timeout=PROMISE_MS)
    expect(row.locator(".running")).to_have_text("1")
    expect(row.locator(".rate")).to_have_text("5/s")
    assert page.locator("#type-limits-link").get_attribute("href") == \
        "/django-admin/workers_app/queue/#type-limits"


def test_a_running_task_reporting_progress_shows_a_bar_until_it_ends(
        operator_page: Page, live_site: LiveSite, live_worker: WorkerProcess) -> None:
    page = open_dashboard(operator_page, live_site)
    expect(page.locator("#progress-panel")).to_be_hidden()
    task = producer.enqueue("steps", {"steps": 10, "interval": 0.3})
    row = page.locator(f'#progress-list li[data-task-id="{task.id}"]')
    expect(row.locator(".type")).to_have_text("steps", timeout=5000)
    expect(row.locator(".figures")).to_contain_text("/ 10")
    expect(row.locator(".message")).to_contain_text("of 10")
    bar = row.locator(".bar")
    wait_until(page, lambda: int(bar.get_attribute("aria-valuenow") or 0) >= 2, 5000)
    assert bar.get_attribute("aria-valuemax") == "10"
    width = float(bar.locator("i").evaluate("node => parseFloat(node.style.width)"))
    assert 0 < width < 100
    assert feed_row(page, "task.progress", task.id).count() == 0  # bars, not feed lines
    screenshot(page, "dashboard-progress")
    expect(feed_row(page, "task.completed", task.id)).to_have_count(1, timeout=8000)
    expect(row).to_have_count(0)
    expect(page.locator("#progress-panel")).to_be_hidden()


def test_a_dead_lettered_task_shows_in_the_feed_and_the_dlq_count_within_2s(
        operator_page: Page, live_site: LiveSite, live_worker: WorkerProcess) -> None:
    page = open_dashboard(operator_page, live_site)
    expect(page.locator("[data-kpi=dlq]")).to_have_text("0")
    task = producer.enqueue("fail", {"message": "boom"}, max_retries=0, priority="critical")
    expect(feed_row(page, "task.dead_lettered", task.id)).to_have_count(1, timeout=PROMISE_MS)
    expect(feed_row(page, "task.failed", task.id).locator(".detail")).to_have_text(
        "attempt 1: boom")
    expect(page.locator("[data-kpi=dlq]")).to_have_text("1", timeout=PROMISE_MS)
    expect(page.locator("#kpi-dlq")).to_have_class("kpi alert")
    expect(page.locator("[data-kpi=failed-sub]")).to_contain_text("1 total")
    wait_until(page, lambda: chart_number(page, "rate-chart", "sum") > 0.99)

    producer.enqueue("echo", {})
    page.click("[data-feed-filter=failures]")
    expect(page.locator("#feed li[data-type='task.completed']")).to_have_count(0)
    expect(feed_row(page, "task.failed", task.id)).to_have_count(1)
    expect(page.locator("#dlq-link")).to_have_attribute("href", DLQ_URL)


def test_workers_joining_and_leaving_show_within_2s(
        operator_page: Page, live_site: LiveSite, live_worker: WorkerProcess,
        worker_pool: WorkerPool) -> None:
    page = open_dashboard(operator_page, live_site)
    expect(page.locator("[data-kpi=workers]")).to_have_text("1")
    second = worker_pool.start("--priorities", "critical", concurrency=3,
                               inspector=Inspector(get_broker()), name="extra")
    row = worker_row(page, second.id)
    expect(row.locator(".state")).to_have_text("idle", timeout=PROMISE_MS)
    expect(row.locator(".slots-text")).to_have_text("0/3")
    expect(page.locator("[data-kpi=workers]")).to_have_text("2")

    producer.enqueue("sleep", {"seconds": 3}, priority="normal")
    busy = worker_row(page, live_worker.id)
    expect(busy).to_have_attribute("data-state", "busy", timeout=PROMISE_MS)
    expect(busy.locator(".slots-text")).to_have_text("1/2")
    expect(page.locator("[data-kpi=running]")).to_have_text("1", timeout=PROMISE_MS)
    expect(page.locator("[data-kpi=workers-sub]")).to_have_text("1 busy \u00b7 1 idle")

    second.terminate()
    assert second.wait(10) == 0
    expect(row.locator(".state")).to_have_text("left", timeout=PROMISE_MS)
    expect(page.locator("[data-kpi=workers]")).to_have_text("1")


def test_the_page_reconnects_with_backoff_when_the_server_comes_back(
        operator_page: Page, live_site: LiveSite, live_worker: WorkerProcess,
        tmp_path: Path) -> None:
    server = live_site.another_server(tmp_path).start()
    try:
        page = operator_page
        page.goto(f"{server.url}/dashboard/")
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
        resyncs: list[str] = []
        page.on("request", lambda r: resyncs.append(r.url) if "/dashboard/snapshot" in r.url
                else None)

        server.stop()
        expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting",
                                                        timeout=PROMISE_MS)
        expect(page.locator("#conn-text")).to_contain_text("retrying in")
        server.start()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=8000)
        assert resyncs, "a reconnect fetches a fresh snapshot and token first"

        task = producer.enqueue("echo", {"after": "reconnect"})
        expect(feed_row(page, "task.completed", task.id)).to_have_count(1, timeout=PROMISE_MS)
    finally:
        server.stop()


def test_rates_stay_exact_when_task_events_are_thinned(
        operator_page: Page, live_site: LiveSite, live_worker: WorkerProcess,
        tmp_path: Path) -> None:
    server = live_site.another_server(tmp_path, TASKQUEUE_WS_MAX_EVENTS_PER_SECOND="10").start()
    try:
        page = operator_page
        page.goto(f"{server.url}/dashboard/")
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
        producer.enqueue_many([{"type": "echo"}] * 60 + [{"type": "fail", "max_retries": 0}] * 4)
        expect(page.locator("#dropped-banner")).to_be_visible(timeout=PROMISE_MS)
        expect(page.locator("#feed li[data-type='events.dropped']").first).to_be_visible()
        expect(page.locator("[data-kpi=completed-sub]")).to_have_text("60 total",
                                                                     timeout=3000)
        expect(page.locator("[data-kpi=failed-sub]")).to_contain_text("4 total")
        wait_until(page, lambda: round(chart_number(page, "rate-chart", "sum")) == 64)
        shown = page.locator("#feed li[data-type='task.completed']").count()
        assert shown < 60, "the feed got only part of the task events"
    finally:
        server.stop()


def test_a_busy_dashboard_reads_well_on_a_laptop_and_a_phone(
        operator_page: Page, operator_phone_page: Page, live_site: LiveSite,
        live_worker: WorkerProcess, worker_pool: WorkerPool) -> None:
    worker_pool.start(concurrency=2, inspector=Inspector(get_broker()), name="live")
    page = open_dashboard(operator_page, live_site)
    phone = open_dashboard(operator_phone_page, live_site)
    run_a_mixed_workload(seconds=4.0)
    page.hover("#depth-chart svg", position={"x": 600, "y": 100})
    shot = screenshot(page, "dashboard-desktop")
    phone_shot = screenshot(phone, "dashboard-phone")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "dashboard-desktop-dark")
    expect(page.locator("[data-kpi=dlq]")).not_to_have_text("0", timeout=PROMISE_MS)
    assert shot.stat().st_size > 20_000 and phone_shot.stat().st_size > 20_000

    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "no sideways scrolling on a phone"
    columns = phone.evaluate("getComputedStyle(document.querySelector('.kpis'))"
                             ".gridTemplateColumns.split(' ').length")
    assert columns == 2
    assert chart_number(page, "depth-chart", "peak") > 0
    assert chart_number(page, "rate-chart", "sum") > 0


def run_a_mixed_workload(seconds: float) -> None:
    """A few seconds of varied traffic, a little more than 4 slots can take: every priority,
    slow tasks, retries, dead letters; low-priority work piles up behind the rest."""
    deadline = time.monotonic() + seconds
    wave = 0
    while time.monotonic() < deadline:
        batch: list[dict[str, Any]] = [{"type": "echo", "priority": "low"}] * 8
        batch += [{"type": "sleep", "payload": {"seconds": 0.3}, "priority": "normal"}] * 6
        batch += [{"type": "email", "priority": "high",
                   "payload": {"to": "ops@example.com", "subject": "report"}}] * 2
        if wave % 3 == 0:
            batch += [{"type": "echo", "priority": "critical"}] * 3
            batch += [{"type": "fail", "payload": {"message": "upstream timeout", "fail_times": 1},
                       "priority": "normal"}]
        if wave % 4 == 1:
            batch += [{"type": "fail", "payload": {"message": "card declined"},
                       "max_retries": 0, "priority": "high"}]
        producer.enqueue_many(batch)
        wave += 1
        time.sleep(0.4)


def test_signing_out_in_another_tab_ends_the_live_view_at_once(
        browser: Browser, live_site: LiveSite) -> None:
    """The socket is closed when its session signs out (not at the next periodic check,
    30 s by default), and the page says so instead of retrying."""
    context, page = new_page(browser, live_site)
    login(page, live_site, OPERATOR)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    admin = context.new_page()
    admin.goto(live_site.url("/django-admin/"))
    admin.locator("#logout-form button").click()
    expect(admin.locator("body")).to_contain_text("Logged out")
    expect(page.locator("#conn")).to_have_attribute("data-state", "signed-out",
                                                    timeout=PROMISE_MS + 1000)
    expect(page.locator("#signin-link")).to_be_visible()
    context.close()
