"""A worker's memory: its slots share what the supervisor loaded, and the system checks,
which import the whole web side (URL conf, admin views, API schema), run in a short-lived
process of their own, so their libraries stay out of the worker.  bench/memory.py prints the
figures (PSS of the supervisor and of each slot)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tasks_app.core import broker as broker_module
from tasks_app.core import scripts as scripts_module
from tasks_app.core.config import Config
from tasks_app.core.inspect import Inspector
from tasks_app.devserver.redis import EmbeddedRedis
from tests.procs import FAST_ENV, ROOT, WorkerPool, wait_for
from workers_app.runtime.worker import Worker, WorkerOptions

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux /proc")

SETUP_ONLY = "import django; django.setup()"
WITH_CHECKS = SETUP_ONLY + "; from django.core.management import call_command; " \
    "call_command('check')"
MAPPED = "; print('\\n'.join(sorted({l.split()[-1] for l in open('/proc/self/maps') " \
    "if l.rstrip().endswith('.so')})))"


def modules_after(code: str) -> set[str]:
    """The Python modules a fresh process of this site has loaded after running ``code``."""
    env = {**os.environ, **FAST_ENV}
    run = subprocess.run([sys.executable, "-c", code + "; import sys; print(*sys.modules)"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    return set(run.stdout.split())


def libraries_of(pid: int) -> set[str]:
    """The shared libraries (Python extensions included) a process has mapped."""
    with open(f"/proc/{pid}/maps") as maps:
        return {line.split()[-1] for line in maps if line.rstrip().endswith(".so")}


def libraries_after(code: str) -> set[str]:
    """The shared libraries a fresh process of this site maps after running ``code``."""
    env = {**os.environ, **FAST_ENV}
    run = subprocess.run([sys.executable, "-c", code + MAPPED], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return {word for word in run.stdout.split() if word.endswith(".so")}


def test_the_worker_keeps_what_the_system_checks_load_out_of_its_processes(
        pool: WorkerPool, inspector: Inspector) -> None:
    only_checks = libraries_after(WITH_CHECKS) - libraries_after(SETUP_ONLY)
    assert only_checks, "the system checks load no library of their own here"
    worker = pool.start(concurrency=2, inspector=inspector)
    slots = wait_for(lambda: worker.slot_pids() if len(worker.slot_pids()) == 2 else None, 10)
    for pid in [worker.pid, *slots]:
        assert libraries_of(pid) & only_checks == set(), pid


def test_the_slots_inherit_a_broker_with_its_scripts_and_blocking_client_built(
        redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built in the supervisor before the fork and shared: the scripts' code (read from
    their files) and the client for blocking waits, which each slot would otherwise build
    for itself after the fork (about 1.3 MB of private memory a slot).  No connection is
    opened for it in the supervisor."""
    worker = Worker(Config(redis_url=redis_server.url), WorkerOptions(worker_id="w-memory"))
    clients = len(worker.broker.client.client_list())
    broker = worker.slot_broker()
    assert broker is worker.slot_broker() and broker is not worker.broker

    def built_in_a_slot(*args: object, **kwargs: object) -> None:
        raise AssertionError("built after the fork, in every slot")

    monkeypatch.setattr(scripts_module, "_read", built_in_a_slot)
    monkeypatch.setattr(broker_module, "make_blocking_client", built_in_a_slot)
    assert broker.scripts.library_name.startswith("tq_")
    assert broker.blocking_client is not broker.client
    assert len(worker.broker.client.client_list()) == clients


FREED_THEN_SHARED = """
from workers_app.runtime.worker import _share_with_child

def heap_mb():
    lines = open("/proc/self/smaps").read().splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith("[heap]"))
    return int(next(l for l in lines[at:] if l.startswith("Rss:")).split()[1]) / 1024

blocks = [bytes(2000) + bytes([i % 256]) for i in range(20_000)]  # 40 MB of C heap
kept = [bytes(2000) + b"kept" for _ in range(100)]  # above them: the heap cannot shrink
used = heap_mb()
del blocks
freed = heap_mb()
_share_with_child()
print(used, freed, heap_mb())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_before_a_fork_the_free_pages_of_the_c_heap_go_back_to_the_system() -> None:
    """Memory that startup allocated and freed would otherwise stay resident in the
    supervisor and, shared, in every slot."""
    run = subprocess.run([sys.executable, "-c", FREED_THEN_SHARED], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    used, freed, shared = map(float, run.stdout.split())
    assert used - freed < 5, run.stdout  # free() alone keeps the pages
    assert freed - shared > 35, run.stdout


def test_a_worker_does_not_load_the_websocket_side() -> None:
    """The sign-out receiver that closes a session's dashboard sockets imports the WebSocket
    side (Channels, the JWT authentication stack) at the first sign-out, not at startup."""
    worker = modules_after(SETUP_ONLY + "; import workers_app.management.commands."
                           "runworker_tq, workers_app.runtime.slot")
    assert "workers_app.runtime.slot" in worker
    web_only = {"tasks_app.live.auth", "channels", "rest_framework_simplejwt.tokens",
                "tasks_app.api.authentication"}
    assert worker & web_only == set()


WORKER = SETUP_ONLY + "; import workers_app.management.commands.runworker_tq, " \
    "workers_app.runtime.slot"
REGISTERED = "; from django.contrib import admin; " \
    "print(*sorted(m._meta.label for m in admin.site._registry))"


def test_a_worker_does_not_load_the_admin_modules() -> None:
    """This site's admin imports the apps' admin modules with the URL conf, not at
    django.setup(): a worker loads neither them nor what they import (the admin's forms,
    django.test and unittest through simplejwt's blacklist admin: about 2.8 MB)."""
    worker = modules_after(WORKER)
    assert "workers_app.runtime.slot" in worker
    admin_only = {"tasks_app.admin", "workers_app.admin", "django.contrib.auth.admin",
                  "rest_framework_simplejwt.token_blacklist.admin", "django.test", "unittest"}
    assert worker & admin_only == set()


def test_the_admin_and_its_checks_still_see_every_model_admin() -> None:
    """The URL conf registers every app's ModelAdmins before it builds the admin's URLs, and
    the admin's system checks do too when they run first."""
    with_urls = modules_after(SETUP_ONLY + "; from django.urls import reverse; "
                              "reverse('admin:index')" + REGISTERED)
    with_checks = modules_after(SETUP_ONLY + "; from django.core.checks import run_checks; "
                                "run_checks(tags=['admin'])" + REGISTERED)
    for label in ("auth.User", "tasks_app.APIKey", "tasks_app.DeadLetterEntry",
                  "tasks_app.Workflow", "token_blacklist.OutstandingToken",
                  "workers_app.Schedule", "workers_app.Worker"):
        assert label in with_urls, label
        assert label in with_checks, label


def test_a_system_check_error_still_stops_the_worker(pool: WorkerPool) -> None:
    worker = pool.start(env={"TASKQUEUE_CORS_ALLOWED_ORIGINS": "not-an-origin"})
    assert worker.wait(60) == 1
    log = worker.log()
    assert log.count("SystemCheckError: System check identified some issues") == 1, log
    assert "(taskqueue.E002) TASKQUEUE['CORS_ALLOWED_ORIGINS']" in log
    assert "started" not in log


def test_check_warnings_are_printed_once_and_the_worker_starts(
        pool: WorkerPool, inspector: Inspector) -> None:
    auth_on = {"TASKQUEUE_AUTH_ENABLED": "1",
               "DJANGO_SECRET_KEY": "k3Yq8vT1xw9ZpL2mN4rB6cD0eF7gH5jS",
               "TASKQUEUE_API_KEYS": "a-long-enough-api-key-0123456789"}
    worker = pool.start(env=auth_on, inspector=inspector)
    assert len(worker.log_lines("taskqueue.security.W004")) == 1, worker.log()


def test_memory_bench_prints_each_process_and_the_totals() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # it starts its own Redis
    run = subprocess.run([sys.executable, "memory.py", "--concurrency", "2", "--runs", "1",
                          "--tasks", "100"], cwd=ROOT / "bench", env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line.split()[0] for line in run.stdout.splitlines() if line.startswith("    ")]
    table = ["process", "supervisor", "child", "child", "total"]
    assert rows == table * 2, run.stdout  # idle, then after the tasks
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("worker memory, 2 slot(s), PSS summed over the supervisor"), last
    idle_mb = float(last.split("idle ")[1].split(" MB")[0])
    assert 10 < idle_mb < 1000, last


def test_memory_bench_prints_the_floor_of_idle_forks_of_this_site() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    run = subprocess.run([sys.executable, "memory.py", "--floor", "--concurrency", "2",
                          "--runs", "1"], cwd=ROOT / "bench", env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line.split()[0] for line in run.stdout.splitlines() if line.startswith("    ")]
    assert rows == ["process", "supervisor", "child", "child", "total"], run.stdout
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("floor, 2 idle fork(s) of this site, PSS summed, median of 1: "), last
    assert 10 < float(last.split(": ")[1].split(" MB")[0]) < 1000, last
