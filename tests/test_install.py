"""Install the package into a fresh virtualenv and run another site with it, as the README says.

The site (``mysite`` with an app ``shop`` and its handler) is written here, pip
installs a copy of this repository into a new venv (with its dependencies, from
pip's cache after the first run), and everything then runs with that venv's
Python in the site's folder, so nothing comes from this checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tasks_app.devserver.redis import EmbeddedRedis

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
INSTALL_BUDGET = 90.0
NOT_SHIPPED = (".git", ".venv*", "var", "test-artifacts", "build", "*.egg-info", "__pycache__",
               ".*_cache", ".hypothesis", ".schemathesis")

SETTINGS = '''
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "install-test-" + "k" * 40
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "tasks_app",
    "workers_app",
    "shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "mysite.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": BASE_DIR / "db.sqlite3"}}
STATIC_URL = "static/"
USE_TZ = True

REDIS = os.environ["REDIS_URL"]
TASKQUEUE = {"REDIS_URL": REDIS, "NAMESPACE": "shop"}
CHANNEL_LAYERS = {"default": {
    "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "CONFIG": {"hosts": [REDIS], "serializer_format": "json"},
}}
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
'''

URLS = '''
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("queue/", include("tasks_app.urls")),
]
'''

ASGI = '''
import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django_asgi_app = get_asgi_application()

from tasks_app.routing import with_taskqueue  # noqa: E402

application = with_taskqueue(ASGIStaticFilesHandler(django_asgi_app))
'''

# The same site naming no Redis in TASKQUEUE: $REDIS_URL is what tq and the worker use.
SETTINGS_FROM_ENV = '''
from mysite.settings import *  # noqa: F403

TASKQUEUE = {"NAMESPACE": "shop"}
'''

# The dashboard's page, its static files through the ASGI app, and the OpenAPI schema.
PAGES = '''
import asyncio

from asgiref.testing import ApplicationCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from mysite.asgi import application


async def asgi_get(path):
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": [(b"host", b"localhost")], "scheme": "http",
             "server": ("localhost", 80), "client": ("127.0.0.1", 5000), "asgi": {"version": "3.0"},
             "http_version": "1.1", "root_path": ""}
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": b""})
    start = await app.receive_output(10)
    return start["status"]


client = Client(HTTP_HOST="localhost")
client.force_login(get_user_model().objects.get_or_create(
    username="pages", defaults={"is_staff": True, "is_superuser": True})[0])
page = client.get("/queue/dashboard/").content.decode()
assets = sorted(set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page)))
print(json.dumps({
    "assets": {path: asyncio.run(asgi_get(path)) for path in assets},
    "schema": client.get("/queue/api/schema/").status_code,
}))
'''

MANAGE = '''
import os
import sys

from django.core.management import execute_from_command_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
execute_from_command_line(sys.argv)
'''

HANDLERS = '''
from tasks_app.core.registry import TaskContext, handler


@handler("add")
def add(payload: dict, ctx: TaskContext) -> dict:
    return {"sum": payload["a"] + payload["b"], "attempt": ctx.attempt}
'''

# Scripts the test runs in the site (after django.setup()); each prints one JSON document.
ENQUEUE = '''
from tasks_app import producer

print(json.dumps({"id": producer.enqueue("add", {"a": 2, "b": 3}).id}))
'''

GET_TASK = '''
from tasks_app import producer

task = producer.get(sys.argv[1])
print(json.dumps({"state": str(task.state), "result": task.result}))
'''

CONTENTS = '''
import importlib.resources
import importlib.util

import tasks_app
import workers_app


def names(package, folder, pattern="*"):
    root = importlib.resources.files(package).joinpath(folder)
    return sorted(str(p.relative_to(Path(str(root)))) for p in Path(str(root)).rglob(pattern))


print(json.dumps({
    "tasks_app": tasks_app.__file__,
    "scripts": names("tasks_app", "core/scripts", "*.lua"),
    "templates": names("tasks_app", "templates", "*.html")
                 + names("workers_app", "templates", "*.html"),
    "static": names("tasks_app", "static"),
    "migrations": names("tasks_app", "migrations", "0*.py")
                  + names("workers_app", "migrations", "0*.py"),
    "typed": [importlib.resources.files(p).joinpath("py.typed").is_file()
              for p in ("tasks_app", "workers_app")],
    "strays": [m for m in ("taskqueue_project", "tests", "bench")
               if importlib.util.find_spec(m) is not None],
}))
'''

API = '''
import asyncio

from asgiref.testing import ApplicationCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from mysite.asgi import application
from tasks_app.routing import websocket_path

client = Client()
created = client.post("/queue/api/v1/tasks", {"type": "add", "payload": {"a": 1, "b": 1}},
                      content_type="application/json")
task_id = created.json()["id"]
bad = client.post("/queue/api/v1/tasks", {"type": "nope"}, content_type="application/json")
staff = get_user_model().objects.create_superuser("boss", "b@example.com", "pw")
client.force_login(staff)
page = client.get("/queue/dashboard/").content.decode()
config = json.loads(page.split('id="tq-config" type="application/json">')[1].split("<")[0])


async def socket_opens(path):
    scope = {"type": "websocket", "path": path, "query_string": b"", "headers": [],
             "subprotocols": []}
    socket = ApplicationCommunicator(application, scope)
    await socket.send_input({"type": "websocket.connect"})
    reply = await socket.receive_output(5)
    await socket.send_input({"type": "websocket.disconnect", "code": 1000})
    await socket.wait(5)
    return reply["type"] == "websocket.accept"


print(json.dumps({
    "created": created.status_code,
    "get": client.get(f"/queue/api/v1/tasks/{task_id}").json()["state"],
    "bad": [bad.status_code, bad.json()["error"]],
    "health": client.get("/queue/admin/health").json()["status"],
    "metrics": "taskqueue_tasks_submitted_total" in client.get("/queue/metrics").content.decode(),
    "root": client.get("/api/v1/tasks").status_code,
    "ws": websocket_path(),
    "ws_opens": asyncio.run(socket_opens("/queue/ws")),
    "schema": sorted(p for p in client.get("/queue/api/schema/?format=json").json()["paths"]
                     if p.startswith("/queue/api/v1/tasks")),
    "asgi": type(application).__name__,
    "dashboard": {k: config[k] for k in ("ws_path", "snapshot_url", "dlq_url")},
    "brand": 'href="/queue/dashboard/"' in page,
    "admin": client.get(config["dlq_url"]).status_code,
}))
'''


@dataclass
class Site:
    """The site's folder, its venv's Python and how long the install took."""

    root: Path
    python: Path
    install_seconds: float
    redis_url: str

    def env(self, settings: str = "mysite.settings") -> dict[str, str]:
        """The environment of the site's processes: nothing points at this checkout."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV")}
        return {**env, "REDIS_URL": self.redis_url, "DJANGO_SETTINGS_MODULE": settings,
                "PYTHONDONTWRITEBYTECODE": "1"}

    def run(self, *args: str, timeout: float = 60,
            settings: str = "mysite.settings") -> subprocess.CompletedProcess[str]:
        """Run the venv's Python in the site's folder; fail with its output if it fails."""
        done = subprocess.run([str(self.python), *args], cwd=self.root, env=self.env(settings),
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def script(self, body: str, *args: str) -> Any:
        """Run a script with Django set up; return the JSON it prints."""
        path = self.root / "probe.py"
        path.write_text("import json, re, sys\nfrom pathlib import Path\nimport django\n"
                        "django.setup()\n" + body)
        return json.loads(self.run(str(path), *args).stdout)


def write_site(root: Path) -> None:
    """The site following the README's steps, and its handler module."""
    files = {"manage.py": MANAGE, "mysite/__init__.py": "", "mysite/settings.py": SETTINGS,
             "mysite/urls.py": URLS, "mysite/asgi.py": ASGI, "shop/__init__.py": "",
             "mysite/settings_from_env.py": SETTINGS_FROM_ENV,
             "shop/handlers.py": HANDLERS}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text.lstrip())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> Site:
    """A fresh venv with the package pip-installed, and a site using it."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    started = time.monotonic()
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - started
    assert install.returncode == 0, install.stdout + install.stderr
    print(f"\npip install of the package into a fresh venv took {seconds:.1f} s")
    (root / "site").mkdir()
    write_site(root / "site")
    made = Site(root / "site", python, seconds, redis_server.url)
    made.run("manage.py", "migrate", "--noinput")
    return made


def test_the_install_takes_well_under_the_budget(site: Site) -> None:
    assert site.install_seconds < INSTALL_BUDGET


def test_the_package_ships_its_scripts_templates_static_files_and_migrations(
        site: Site) -> None:
    found = site.script(CONTENTS)
    assert Path(found["tasks_app"]).is_relative_to(site.python.parent.parent)
    assert sorted(found["scripts"]) == sorted(
        p.name for p in (REPO / "tasks_app/core/scripts").glob("*.lua"))
    assert "tasks_app/dashboard.html" in found["templates"]
    assert "admin/workers_app/worker/change_list.html" in found["templates"]
    shipped = sorted(str(p.relative_to(REPO / app / "templates"))
                     for app in ("tasks_app", "workers_app")
                     for p in (REPO / app / "templates").rglob("*.html"))
    assert sorted(found["templates"]) == shipped  # every template of the apps, no other
    assert "admin/tasks_app/schedule/change_list.html" in found["templates"]
    assert {"tasks_app/dashboard.js", "tasks_app/charts.js",
            "tasks_app/dashboard.css"} <= set(found["static"])
    assert {"0001_initial.py", "0002_deadletterentry.py"} <= set(found["migrations"])
    assert found["typed"] == [True, True]
    assert found["strays"] == []


def test_the_site_passes_the_system_checks(site: Site) -> None:
    done = site.run("manage.py", "check", "--fail-level", "WARNING")
    assert "no issues" in done.stdout


def test_the_sites_worker_runs_its_handler(site: Site) -> None:
    task_id = site.script(ENQUEUE)["id"]
    site.run("manage.py", "runworker_tq", "--burst", "--concurrency", "1", timeout=60)
    assert site.script(GET_TASK, task_id) == {"state": "completed",
                                              "result": {"sum": 5, "attempt": 1}}


def test_one_include_under_a_prefix_serves_the_api_metrics_and_dashboard(site: Site) -> None:
    found = site.script(API)
    assert found == {
        "created": 201,
        "get": "pending",
        "bad": [400, "Bad Request"],
        "health": "healthy",
        "metrics": True,
        "root": 404,
        "ws": "/queue/ws",
        "ws_opens": True,
        "schema": ["/queue/api/v1/tasks", "/queue/api/v1/tasks/batch",
                   "/queue/api/v1/tasks/{task_id}"],
        "asgi": "ProtocolTypeRouter",
        "dashboard": {"ws_path": "/queue/ws", "snapshot_url": "/queue/dashboard/snapshot",
                      "dlq_url": "/admin/tasks_app/deadletterentry/"},
        "brand": True,
        "admin": 200,
    }


def test_the_dashboards_static_files_load_and_the_schema_logs_no_warnings(site: Site) -> None:
    """Served by Django's ASGIStaticFilesHandler as the README says; no ENUM_NAME_OVERRIDES."""
    path = site.root / "probe.py"
    found = site.script(PAGES)
    assert {"/static/tasks_app/dashboard.js", "/static/tasks_app/charts.js",
            "/static/tasks_app/dashboard.css"} <= set(found["assets"])
    assert set(found["assets"].values()) == {200}
    assert found["schema"] == 200
    again = site.run(str(path))  # the same probe; its stderr is what a request logs
    warnings = [line for line in again.stderr.splitlines() if "Warning" in line]
    assert warnings == [], again.stderr


def test_tq_and_the_worker_use_redis_url_from_the_environment(site: Site) -> None:
    """TASKQUEUE without REDIS_URL: the environment's REDIS_URL, not localhost:6379."""
    task_id = site.script(ENQUEUE)["id"]
    status = site.run("manage.py", "tq", "status", "--json", settings="mysite.settings_from_env")
    assert json.loads(status.stdout)["queues"][-1]["pending"] >= 1
    site.run("manage.py", "runworker_tq", "--burst", "--concurrency", "1", timeout=60,
             settings="mysite.settings_from_env")
    assert site.script(GET_TASK, task_id)["state"] == "completed"
