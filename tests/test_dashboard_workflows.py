"""The dashboard's workflows panel: in the snapshot (and the page) only for staff holding the
workflows' view permission, every client's workflows as the REST API shows them to such
staff; in headless Chromium the panel follows a live workflow (state, steps done, where a
failed one stopped) through workflow.* and its steps' task events, and links to the admin."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from django.test import Client, override_settings

from tasks_app import permissions, producer
from tasks_app.conf import tq_settings
from tests.api_support import call
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
from tests.procs import WorkerProcess
from tests.test_dashboard import embedded, staff_with

if TYPE_CHECKING:
    from playwright.sync_api import Page

CLIENT_KEY = f"wf-dash-{uuid.uuid4().hex}"


@pytest.mark.django_db
def test_only_staff_with_the_workflows_view_permission_get_the_panel(client: Client) -> None:
    auth = {"REDIS_URL": tq_settings.REDIS_URL, "AUTH_ENABLED": True, "API_KEYS": [CLIENT_KEY],
            "TASK_VISIBILITY": "owner"}
    with override_settings(TASKQUEUE=auth):
        made = call("POST", "/api/v1/workflows",
                    {"chain": [{"type": "count"}, {"type": "count"}]}, **{"X-API-Key": CLIENT_KEY})
        assert made.status == 201
        newer = producer.group(producer.step("count"), then=producer.step("count"))
        client.force_login(staff_with(*permissions.DASHBOARD))
        assert "workflows" not in client.get("/dashboard/snapshot").json()["snapshot"]
        page = client.get("/dashboard/").content.decode()
        assert "workflows" not in embedded(page, "tq-initial")
        assert 'id="workflows-panel"' not in page
        client.force_login(staff_with(*permissions.DASHBOARD, permissions.WORKFLOW_VIEW,
                                      username="wf-viewer"))
        panel = client.get("/dashboard/snapshot").json()["snapshot"]["workflows"]
        # another client's workflow too, as GET /api/v1/workflows/{id} shows it to this user
        assert [w["id"] for w in panel] == [newer.id, made.body["id"]]
        assert panel[1] == {"id": made.body["id"], "state": "pending", "queue": "default",
                            "done": 0, "total": 2, "failed_step": None,
                            "url": f"/django-admin/tasks_app/workflow/{made.body['id']}/change/"}
        page = client.get("/dashboard/").content.decode()
        assert len(embedded(page, "tq-initial")["workflows"]) == 2
        assert 'id="workflows-panel"' in page and 'href="/django-admin/tasks_app/workflow/"' in page


def test_the_panel_follows_a_workflow_until_it_ends(
        superuser_page: Page, operator_page: Page, live_site: LiveSite,
        live_worker: WorkerProcess) -> None:
    page = superuser_page
    page.goto(live_site.url("/dashboard/"))
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    expect(page.locator("#workflows-empty")).to_be_visible()
    # each step outlasts the panel's refetch (at most once a second, on the steps' events)
    flow = producer.chain(*[producer.step("count", {"seconds": 1.5}) for _ in range(3)])
    row = page.locator(f'#workflows-body tr[data-workflow="{flow.id}"]')
    expect(row.locator(".state")).to_have_text("running", timeout=5000)
    expect(row.locator(".steps")).to_have_text("1 / 3", timeout=5000)
    expect(row.locator(".steps")).to_have_text("2 / 3", timeout=5000)
    expect(row.locator(".state")).to_have_text("completed", timeout=8000)
    expect(row.locator(".steps")).to_have_text("3 / 3")
    expect(row.locator(".stopped")).to_have_text("—")
    broken = producer.chain(producer.step("count"),
                            producer.step("fail", {"permanent": True}), producer.step("count"))
    failed = page.locator(f'#workflows-body tr[data-workflow="{broken.id}"]')
    expect(failed.locator(".state")).to_have_text("failed", timeout=8000)
    expect(failed.locator(".steps")).to_have_text("1 / 3")
    expect(failed.locator(".stopped")).to_have_text("step 1 (fail, failed)")
    assert page.locator("#workflows-body tr").first.get_attribute("data-workflow") == broken.id
    line = page.locator('#feed li[data-type="workflow.failed"]').first
    expect(line.locator(".badge")).to_have_text("failed")
    expect(line.locator(".what")).to_have_text(f"workflowdefault{broken.id[:8]}")
    expect(line.locator(".detail")).to_have_text(f"failed step {broken.steps[1].task_id[:8]}")
    done = page.locator('#feed li[data-type="workflow.completed"]').first
    expect(done.locator(".what")).to_contain_text(flow.id[:8])
    page.click('button[data-feed-filter="failures"]')
    expect(page.locator('#feed li[data-type="workflow.failed"]')).to_have_count(1)
    expect(page.locator('#feed li[data-type="workflow.completed"]')).to_have_count(0)
    page.click('button[data-feed-filter="all"]')
    link = failed.locator("a.id")
    expect(link).to_have_text(broken.id[:8])
    screenshot(page, "dashboard-workflows")
    link.click()
    expect(page.locator("#workflow-steps tr.tq-stopped .field-type")).to_have_text("fail")
    operator_page.goto(live_site.url("/dashboard/"))
    expect(operator_page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    assert operator_page.locator("#workflows-panel").count() == 0
