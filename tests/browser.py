"""Shared fixtures for real-browser tests: headless Chromium (Playwright) against a live
daphne, a worker and a signed-in staff user.

Import the fixtures a test module uses (each ``<name>_fixture`` is the fixture ``<name>``)::

    from tests.browser import (browser_fixture, live_site_fixture,  # noqa: F401
                               live_worker_fixture, signed_in_states_fixture,
                               operator_page_fixture, worker_pool_fixture)

    def test_it(operator_page: Page, live_site: LiveSite, live_worker: WorkerProcess) -> None:
        operator_page.goto(live_site.url("/dashboard/"))

Chromium is Debian's (``/usr/bin/chromium``, or ``TQ_CHROMIUM``), launched by path.
Without it (or without the ``playwright`` package) the tests skip, unless
``TQ_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes them fail.

The browser, the live site and the signed-in cookies last for one test module. While
Playwright is open, ``asyncio.run`` cannot be called in that module (Playwright's loop
counts as running). The live site runs with ``DJANGO_DEBUG=0`` and auth on, on a
database of its own with four users (:data:`STAFF`, :data:`SUPERUSER`, :data:`VIEWER`,
:data:`OPERATOR`).
Screenshots go to ``test-artifacts/screenshots/``; a failed test leaves
``failed-<test>.png`` there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tasks_app.connection import get_broker
from tasks_app.core.inspect import Inspector
from tasks_app.permissions import DASHBOARD
from tests.procs import WorkerPool, WorkerProcess
from tests.servers import LiveServer

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the tests skip (or fail in CI) below
    sync_playwright = None  # type: ignore[assignment]
    expect = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
LIVE_SITE_ENV = {"DJANGO_DEBUG": "0", "TASKQUEUE_AUTH_ENABLED": "1"}


@dataclass(frozen=True)
class User:
    """A user of the live site's database."""

    username: str
    password: str
    is_staff: bool = False
    is_superuser: bool = False
    permissions: tuple[str, ...] = ()


STAFF = User("staff", "staff-pass-9d2f", is_staff=True)
SUPERUSER = User("admin", "admin-pass-7c1e", is_staff=True, is_superuser=True)
VIEWER = User("viewer", "viewer-pass-3a8b")
OPERATOR = User("operator", "operator-pass-5e6a", is_staff=True, permissions=DASHBOARD)
USERS = (STAFF, SUPERUSER, VIEWER, OPERATOR)

SEED_USERS = """
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import Permission
User = get_user_model()
for name, password, staff, superuser, names in {users!r}:
    user = User.objects.create_user(name, password=password, is_staff=staff,
                                    is_superuser=superuser)
    for app_label, codename in (n.split(".") for n in names):
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label,
                                                         codename=codename))
"""


def chromium_path() -> str:
    """The Chromium binary to launch."""
    return os.environ.get("TQ_CHROMIUM", "/usr/bin/chromium")


def browser_missing() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if sync_playwright is None:
        return "the playwright package is not installed (pip install -r requirements-dev.txt)"
    if not os.access(chromium_path(), os.X_OK):
        return (f"no Chromium at {chromium_path()} (apt-get install chromium, "
                "or set TQ_CHROMIUM)")
    return None


def require_browser() -> None:
    """Skip the test without a browser; fail instead when TQ_REQUIRE_BROWSER=1 (CI)."""
    reason = browser_missing()
    if reason is None:
        return
    if os.environ.get("TQ_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests are required (TQ_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


def screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    """Save a PNG of the page under test-artifacts/screenshots/ and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@dataclass
class LiveSite:
    """A daphne process serving the project on its own database."""

    server: LiveServer
    database: Path
    env: dict[str, str]

    def url(self, path: str = "/") -> str:
        """An absolute URL on the live site."""
        return f"{self.server.url}{path}"

    def another_server(self, log_dir: Path, **env: str) -> LiveServer:
        """A second daphne (not started) on the same database and settings, plus ``env``."""
        return LiveServer(log_dir, env={**self.env, **env})


def seed_database(path: Path) -> None:
    """Migrate a fresh SQLite database and create :data:`USERS` in it."""
    users = [(u.username, u.password, u.is_staff, u.is_superuser, u.permissions) for u in USERS]
    env = {**os.environ, "DATABASE_PATH": str(path),
           "DJANGO_SETTINGS_MODULE": "taskqueue_project.settings"}
    subprocess.run([sys.executable, "-c", SEED_USERS.format(users=users)], cwd=ROOT, env=env,
                   check=True, timeout=60)


@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Browser]:
    """Headless Chromium for one test module.

    Not for the session: while Playwright's sync API is open its event loop counts as
    running in this thread, so ``asyncio.run`` in any other test would fail.
    """
    require_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module", name="live_site")
def live_site_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    """daphne with DEBUG off and auth on, over a seeded database, for one test module."""
    require_browser()
    folder = tmp_path_factory.mktemp("live-site")
    database = folder / "db.sqlite3"
    seed_database(database)
    env = {**LIVE_SITE_ENV, "DATABASE_PATH": str(database)}
    with LiveServer(folder, env=env) as server:
        yield LiveSite(server, database, env)


@pytest.fixture(scope="module", name="signed_in_states")
def signed_in_states_fixture(browser: Browser, live_site: LiveSite) -> Callable[[User], Any]:
    """Cookies of a signed-in user (logged in once a module through the admin login form)."""
    states: dict[str, Any] = {}

    def state_of(user: User) -> Any:
        if user.username not in states:
            context = browser.new_context(base_url=live_site.url())
            page = context.new_page()
            login(page, live_site, user)
            states[user.username] = context.storage_state()
            context.close()
        return states[user.username]

    return state_of


def login(page: Page, live_site: LiveSite, user: User, next_path: str = "/dashboard/") -> None:
    """Sign in through the Django admin's login form."""
    page.goto(live_site.url(f"/django-admin/login/?next={next_path}"))
    page.fill("#id_username", user.username)
    page.fill("#id_password", user.password)
    with page.expect_navigation():
        page.click("input[type=submit]")


def new_page(browser: Browser, live_site: LiveSite, storage_state: Any = None,
             phone: bool = False) -> tuple[BrowserContext, Page]:
    """A fresh context and page (desktop or phone sized), optionally signed in."""
    options: dict[str, Any] = {"base_url": live_site.url(), "storage_state": storage_state,
                               "viewport": PHONE if phone else DESKTOP}
    if phone:
        options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
    context = browser.new_context(**options)
    return context, context.new_page()


@dataclass
class PageProblems:
    """What went wrong in a page: uncaught script errors and failed responses."""

    script_errors: list[str]
    bad_responses: list[str]


def watch(page: Page) -> PageProblems:
    """Collect the page's uncaught script errors and its 4xx/5xx responses."""
    problems = PageProblems([], [])
    page.on("pageerror", lambda error: problems.script_errors.append(str(error)))
    page.on("response", lambda r: problems.bad_responses.append(f"{r.status} {r.url}")
            if r.status >= 400 else None)
    return problems


def signed_in_page(request: pytest.FixtureRequest, browser: Browser, live_site: LiveSite,
                   storage_state: Any, phone: bool = False) -> Iterator[Page]:
    """A signed-in page; screenshot on failure; no uncaught script error allowed."""
    context, page = new_page(browser, live_site, storage_state, phone=phone)
    problems = watch(page)
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:
        screenshot(page, "failed-" + re.sub(r"[^\w.-]+", "_", request.node.name))
    context.close()
    assert not problems.script_errors, f"uncaught script errors: {problems.script_errors}"


@pytest.fixture(name="operator_page")
def operator_page_fixture(request: pytest.FixtureRequest, browser: Browser, live_site: LiveSite,
                          signed_in_states: Callable[[User], Any]) -> Iterator[Page]:
    """A desktop-sized page signed in as :data:`OPERATOR` (the dashboard's permissions)."""
    yield from signed_in_page(request, browser, live_site, signed_in_states(OPERATOR))


@pytest.fixture(name="operator_phone_page")
def operator_phone_page_fixture(request: pytest.FixtureRequest, browser: Browser,
                                live_site: LiveSite,
                                signed_in_states: Callable[[User], Any]) -> Iterator[Page]:
    """A phone-sized touch page signed in as :data:`OPERATOR`."""
    yield from signed_in_page(request, browser, live_site, signed_in_states(OPERATOR),
                              phone=True)


@pytest.fixture(name="superuser_page")
def superuser_page_fixture(request: pytest.FixtureRequest, browser: Browser, live_site: LiveSite,
                   signed_in_states: Callable[[User], Any]) -> Iterator[Page]:
    """A desktop-sized page signed in as :data:`SUPERUSER` (every admin permission)."""
    yield from signed_in_page(request, browser, live_site, signed_in_states(SUPERUSER))


@pytest.fixture(name="worker_pool")
def worker_pool_fixture(tmp_path: Path) -> Iterator[WorkerPool]:
    """Start more workers with ``worker_pool.start(...)``; all are stopped afterwards."""
    with WorkerPool(tmp_path) as pool:
        yield pool


@pytest.fixture(name="live_worker")
def live_worker_fixture(worker_pool: WorkerPool) -> WorkerProcess:
    """One registered ``runworker_tq`` (2 slots, fast heartbeats) on the session's Redis."""
    return worker_pool.start(concurrency=2, inspector=Inspector(get_broker()), name="live")
