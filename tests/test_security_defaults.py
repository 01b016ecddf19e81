"""Safe defaults: DEBUG off, demo handlers only under ./run.sh without auth, a private var/,
a password on the embedded Redis, and no 500 for a static path that leaves the static dirs."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
import redis
from django.test import override_settings

from taskqueue_project import launcher, var_files
from tasks_app.devserver.redis import EmbeddedRedis, free_port
from tasks_app.security_checks import check_debug, check_demo_handlers
from tests.procs import ROOT
from tests.servers import LiveServer

# Variables the test process sets (or a developer may have) that change the defaults.
DEFAULT_CHANGERS = ("DJANGO_DEBUG", "TASKQUEUE_DEMO_HANDLERS", "TASKQUEUE_AUTH_ENABLED",
                    "REDIS_URL")
FACTS = """
import json, django
django.setup()
from django.conf import settings
from tasks_app.core.registry import registry
print(json.dumps({"debug": settings.DEBUG, "hosts": settings.ALLOWED_HOSTS,
                  "demo": [n for n in ("echo", "sleep", "crash") if n in registry]}))
"""


def plain_env(**extra: str) -> dict[str, str]:
    """This environment without the variables that change the defaults, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in DEFAULT_CHANGERS}
    return {**env, "DJANGO_SETTINGS_MODULE": "taskqueue_project.settings", **extra}


def site_facts(env: dict[str, str]) -> dict[str, Any]:
    """DEBUG, ALLOWED_HOSTS and the demo handlers registered in a fresh process."""
    out = subprocess.run([sys.executable, "-c", FACTS], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    facts: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return facts


def auth_env() -> dict[str, str]:
    """Auth on, with the strong key it needs."""
    return {"TASKQUEUE_AUTH_ENABLED": "1", "DJANGO_SECRET_KEY": secrets.token_urlsafe(48)}


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


def test_debug_is_off_unless_asked_for_and_localhost_is_allowed() -> None:
    facts = site_facts(plain_env())
    assert facts["debug"] is False
    assert {"localhost", "127.0.0.1"} <= set(facts["hosts"])
    assert site_facts(plain_env(DJANGO_DEBUG="1"))["debug"] is True


def test_the_demo_handlers_are_off_by_default_and_with_auth_on() -> None:
    assert site_facts(plain_env())["demo"] == []
    assert site_facts(launcher.child_env(None, plain_env(**auth_env())))["demo"] == []


def test_the_launcher_turns_the_demo_handlers_on_without_auth_unless_told_not_to() -> None:
    assert site_facts(launcher.child_env(None, plain_env()))["demo"] == ["echo", "sleep",
                                                                        "crash"]
    off = launcher.child_env(None, plain_env(TASKQUEUE_DEMO_HANDLERS="0"))
    assert site_facts(off)["demo"] == []


def test_debug_on_is_a_warning() -> None:
    with override_settings(DEBUG=True):
        assert [m.id for m in check_debug()] == ["taskqueue.security.W003"]
    with override_settings(DEBUG=False):
        assert check_debug() == []


def test_demo_handlers_with_auth_on_are_a_warning() -> None:
    both = {"AUTH_ENABLED": True, "DEMO_HANDLERS": True}
    with override_settings(TASKQUEUE=both):
        assert [m.id for m in check_demo_handlers()] == ["taskqueue.security.W004"]
    for quiet in ({"AUTH_ENABLED": True}, {"DEMO_HANDLERS": True}):
        with override_settings(TASKQUEUE=quiet):
            assert check_demo_handlers() == []


def get(server: LiveServer, path: str) -> tuple[int, str, bytes]:
    """GET ``path`` byte for byte (no client-side normalising of ``%2e%2e``)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


def test_static_paths_outside_the_static_dirs_are_404_and_static_files_load(
        tmp_path: Path) -> None:
    with LiveServer(tmp_path, env=plain_env(REDIS_URL=os.environ["REDIS_URL"])) as server:
        for path in ("/static/%2e%2e/%2e%2e/settings.py", "/static/../../manage.py",
                     "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd"):
            status, _, body = get(server, path)
            assert status == 404, (path, body[:200])
            assert b"Traceback" not in body and b"SECRET_KEY" not in body
        status, kind, body = get(server, "/static/tasks_app/dashboard.js")
        assert (status, kind.split(";")[0]) == (200, "text/javascript")
        status, kind, body = get(server, "/api/v1/no-such-thing")
        assert (status, kind, json.loads(body)["error"]) == (404, "application/json", "Not Found")


def test_make_private_fixes_what_an_earlier_run_left_readable(tmp_path: Path) -> None:
    var = tmp_path / "var"
    (var / "redis" / "appendonlydir").mkdir(parents=True, mode=0o755)
    for name in ("db.sqlite3", "secret_key", "redis/redis.log", "redis/appendonlydir/a.aof"):
        (var / name).write_text("x")
        (var / name).chmod(0o644)
    var.chmod(0o755)
    launcher.prepare_var_dir(var)
    assert mode(var) == 0o700
    assert {str(p.relative_to(var)): mode(p) for p in var.rglob("*")} == {
        "db.sqlite3": 0o600, "secret_key": 0o600, "redis": 0o700, "redis/redis.log": 0o600,
        "redis/appendonlydir": 0o700, "redis/appendonlydir/a.aof": 0o600}


@pytest.fixture
def protected(tmp_path: Path) -> Any:
    """The launcher's embedded Redis (with its password) on a var/ of the test's own."""
    var = tmp_path / "var"
    server = launcher.start_redis(var)
    yield var, server
    launcher.stop_redis(server, var)


def test_the_launchers_redis_wants_its_password_and_listens_on_localhost_only(
        protected: tuple[Path, EmbeddedRedis]) -> None:
    var, server = protected
    password = (var / var_files.REDIS_PASSWORD_FILE).read_text().strip()
    assert len(password) >= 32
    with redis.Redis(host="127.0.0.1", port=server.port) as anonymous, \
            pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with redis.Redis.from_url(server.url) as client:
        assert client.ping()
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
    pid = int(server.client().info("server")["process_id"])
    assert password not in Path(f"/proc/{pid}/cmdline").read_text()
    assert var_files.running_redis_url(var) == server.url


def test_the_launchers_var_files_are_private(protected: tuple[Path, EmbeddedRedis]) -> None:
    var, server = protected
    assert mode(var) == 0o700
    assert mode(var / "redis") == 0o700
    for name in ("redis-password", "redis-port", "redis/redis.conf"):
        assert mode(var / name) == 0o600, name


def test_the_port_file_goes_when_the_launchers_redis_stops(tmp_path: Path) -> None:
    var = tmp_path / "var"
    server = launcher.start_redis(var)
    launcher.stop_redis(server, var)
    assert var_files.running_redis_url(var) is None
    assert (var / var_files.REDIS_PASSWORD_FILE).exists()  # kept: the data is guarded by it


COPY_IGNORED = (".git", ".venv*", "var", "test-artifacts", "__pycache__", ".*_cache")


def wait_for_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until the launcher's daphne answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the launcher exited"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/admin/health")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
        finally:
            conn.close()
    raise AssertionError("the launcher's daphne did not answer")


@pytest.mark.slow
def test_run_sh_keeps_var_private_and_manage_py_finds_its_redis(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(ROOT, site, ignore=shutil.ignore_patterns(*COPY_IGNORED))
    port = free_port()
    env = plain_env()
    env.pop("DJANGO_SECRET_KEY", None)
    log = tmp_path / "launcher.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskqueue_project.launcher", "--port", str(port),
             "--workers", "1"], cwd=site, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        wait_for_http(port, proc)
        listening = {c.laddr.ip for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        assert listening == {"127.0.0.1"}  # not the network unless --host says so
        var = site / "var"
        enqueue = subprocess.run(
            [sys.executable, "manage.py", "tq", "enqueue", "echo", '{"hi": 1}', "--wait"],
            cwd=site, env={**env, "TASKQUEUE_DEMO_HANDLERS": "1"}, capture_output=True,
            text=True, timeout=60)
        assert enqueue.returncode == 0, enqueue.stderr
        assert '"state": "completed"' in enqueue.stdout
        assert mode(var) == 0o700
        files = [p for p in var.rglob("*") if not p.is_symlink()]
        assert {"db.sqlite3", "secret_key", "redis-password", "redis-port", "redis.log"} <= {
            p.name for p in files}
        loose = {str(p.relative_to(var)): oct(mode(p)) for p in files
                 if mode(p) != (0o700 if p.is_dir() else 0o600)}
        assert loose == {}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    text = log.read_text()
    assert (site / "var" / "redis-password").read_text().strip() not in text
    assert "Redis:        redis://:***@127.0.0.1:" in text
    assert not (site / "var" / var_files.REDIS_PORT_FILE).exists()
