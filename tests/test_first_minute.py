"""The first minute of ./run.sh: a landing page at /, a superuser made on the first start,
and manage.py commands (tq, runworker_tq) beside it finding its Redis by themselves."""

from __future__ import annotations

import http.cookiejar
import json
import re
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from taskqueue_project import launcher, var_files
from tasks_app.devserver.redis import free_port
from tests.browser import (  # noqa: F401  (the *_fixture names are fixtures)
    LiveSite,
    browser_fixture,
    live_site_fixture,
    new_page,
    screenshot,
    watch,
)
from tests.procs import ROOT
from tests.test_security_defaults import COPY_IGNORED, mode, plain_env, wait_for_http

if TYPE_CHECKING:
    from playwright.sync_api import Browser

LINKS = {"#link-dashboard": "/dashboard/", "#link-docs": "/api/docs/",
         "#link-admin": "/django-admin/", "#link-metrics": "/metrics"}
BANNER_PASSWORD = re.compile(r"Sign in: +admin / (\S+) +\(shown once; kept in var/admin-password\)")


def test_the_landing_page_links_the_dashboard_docs_admin_and_metrics(
        browser: Browser, live_site: LiveSite) -> None:
    for dark in (False, True):
        context, page = new_page(browser, live_site)
        page.emulate_media(color_scheme="dark" if dark else "light")
        problems = watch(page)
        reply = page.goto(live_site.url("/"))
        assert reply is not None and reply.status == 200
        assert page.title() == "taskqueue"
        assert {sel: page.locator(sel).get_attribute("href") for sel in LINKS} == LINKS
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == ("rgb(15, 17, 23)" if dark else "rgb(244, 245, 248)")
        screenshot(page, "home-dark" if dark else "home")
        assert problems.bad_responses == []  # the stylesheet and icon load
        context.close()
    context, page = new_page(browser, live_site)
    for selector in LINKS:
        page.goto(live_site.url("/"))
        with page.expect_navigation():
            page.click(selector)
        # Auth is on here: /metrics answers 401 and /dashboard/ sends to the sign-in page.
        status = page.evaluate("performance.getEntriesByType('navigation')[0].responseStatus")
        assert status in (200, 401), (selector, status, page.url)
    context.close()


def sign_in(port: int, username: str, password: str) -> urllib.request.OpenerDirector:
    """Sign in through the Django admin's login form; return an opener with the session."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    login = f"http://localhost:{port}/django-admin/login/?next=/dashboard/"
    form = opener.open(login, timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token is not None
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), "username": username,
                                   "password": password, "next": "/dashboard/"}).encode()
    landed = opener.open(urllib.request.Request(login, data=body, headers={"Referer": login}),
                         timeout=10)
    assert landed.geturl().endswith("/dashboard/"), "the sign-in did not reach the dashboard"
    assert landed.status == 200
    return opener


def start_launcher(site: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """./run.sh's launcher in ``site``, without a worker, its output in ``log``."""
    env = plain_env()
    env.pop("DJANGO_SECRET_KEY", None)
    for name in ("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD"):
        env.pop(name, None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskqueue_project.launcher", "--port", str(port),
             "--workers", "0"], cwd=site, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    wait_for_http(port, proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C the launcher and wait for it."""
    proc.send_signal(signal.SIGINT)
    proc.wait(60)


def manage(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` in ``site`` with no REDIS_URL in its environment (demo tasks on)."""
    env = plain_env(TASKQUEUE_DEMO_HANDLERS="1")
    return subprocess.run([sys.executable, "manage.py", *args], cwd=site, env=env,
                          capture_output=True, text=True, timeout=90)


@pytest.mark.slow
def test_the_first_start_makes_a_superuser_shown_once_and_the_dashboard_opens(
        tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(ROOT, site, ignore=shutil.ignore_patterns(*COPY_IGNORED))
    port = free_port()
    first_log = tmp_path / "first.log"
    proc = start_launcher(site, port, first_log)
    try:
        found = BANNER_PASSWORD.search(first_log.read_text())
        assert found, first_log.read_text()
        password = found.group(1)
        saved = site / "var" / var_files.ADMIN_PASSWORD_FILE
        assert saved.read_text() == f"username: admin\npassword: {password}\n"
        assert mode(saved) == 0o600
        opener = sign_in(port, "admin", password)
        page = opener.open(f"http://localhost:{port}/dashboard/", timeout=10).read().decode()
        assert 'id="tq-config"' in page
        # manage.py beside it, without REDIS_URL: tq enqueues, runworker_tq runs the task.
        created = manage(site, "tq", "enqueue", "echo", '{"hi": 1}', "--json")
        assert created.returncode == 0, created.stderr
        task_id = json.loads(created.stdout)["id"]
        worked = manage(site, "runworker_tq", "--burst", "--concurrency", "1")
        assert worked.returncode == 0, worked.stderr
        done = manage(site, "tq", "get", task_id)
        assert json.loads(done.stdout)["state"] == "completed", done.stdout + done.stderr
    finally:
        stop(proc)
    second_log = tmp_path / "second.log"
    stop(start_launcher(site, port, second_log))
    text = second_log.read_text()
    assert password not in text
    assert "Sign in:      admin (password in var/admin-password)" in text
    assert saved.read_text() == f"username: admin\npassword: {password}\n"
    again = manage(site, "shell", "-c", "from django.contrib.auth import get_user_model as u; "
                   "print(u().objects.count())")
    assert again.stdout.splitlines()[-1] == "1", again.stderr


def test_the_first_superuser_comes_from_the_environment_and_is_made_only_once(
        tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = plain_env(DATABASE_PATH=str(tmp_path / "db.sqlite3"),
                    DJANGO_SUPERUSER_USERNAME="ops", DJANGO_SUPERUSER_PASSWORD="ops-pass-4e1b")
    launcher.migrate(env)
    assert launcher.ensure_first_admin(env, var) == (
        "ops (password from DJANGO_SUPERUSER_PASSWORD)")
    assert not (var / var_files.ADMIN_PASSWORD_FILE).exists()
    env["DJANGO_SUPERUSER_PASSWORD"] = "another-pass-77aa"
    assert launcher.ensure_first_admin(env, var).startswith("your own users")
    check = ("from django.contrib.auth import authenticate, get_user_model; "
             "u = authenticate(username='ops', password='ops-pass-4e1b'); "
             "print(u.is_superuser, get_user_model().objects.count())")
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", check], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "True 1", done.stderr
