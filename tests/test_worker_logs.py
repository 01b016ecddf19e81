"""Worker logs: ``--log-format json`` turns every logger of the process into one JSON object
a line (python-json-logger through logging.dictConfig); a task's final failure is an ERROR
record with its traceback (what error trackers' logging integrations report), an attempt
that will be retried a WARNING."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from taskqueue_project import demo_tasks
from tasks_app import producer
from tests import servers
from tests.procs import WorkerPool, wait_for, wait_for_state
from tests.servers import ROOT


def records(text: str) -> list[dict[str, Any]]:
    """Every line of a JSON log, parsed (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def about(found: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """The records of the worker runtime about one task, in order."""
    return [r for r in found if r.get("task_id") == task_id and r["logger"] == "workers_app.runtime"
            and "attempt" in r["message"]]


def test_json_worker_logs_every_logger_and_fails_tasks_at_error(tmp_path: Path) -> None:
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings_signals",
           "TQ_SIGNAL_LOG": str(tmp_path)}  # a directory: the recording receiver raises
    with WorkerPool(tmp_path) as pool:
        worker = pool.start("--log-level", "info", "--log-format", "json", env=env,
                            inspector=producer.inspector())
        retried = producer.enqueue("fail", {"message": "boom"}, max_retries=1)
        permanent = producer.enqueue("fail", {"message": "no", "permanent": True})
        lost = producer.enqueue("crash", {}, max_retries=0)
        django_task = demo_tasks.add.enqueue(1, 2)
        wait_for_state(retried.id, "dead_letter", timeout=30)
        wait_for_state(permanent.id, "failed", timeout=30)
        wait_for_state(lost.id, "dead_letter", timeout=30)
        wait_for_state(django_task.id, "completed", timeout=30)

        def logged() -> list[dict[str, Any]] | None:
            # each attempt's line is written after its outcome is recorded: wait for both
            found = records(worker.log())
            return found if about(found, lost.id) and len(about(found, retried.id)) == 2 \
                else None

        found = wait_for(logged, timeout=10)
    loggers = {r["logger"] for r in found}
    assert {"tasks_app.tasks_framework", "workers_app.runtime"} <= loggers, loggers
    # Django's own record: django.tasks on Django 6, django.dispatch with the 5.2 backport.
    assert loggers & {"django.tasks", "django.dispatch"}, loggers
    assert all({"ts", "level", "logger", "pid", "message"} <= set(r) for r in found)

    first, last = about(found, retried.id)
    assert (first["level"], last["level"]) == ("WARNING", "ERROR")
    assert "-> retrying" in first["message"] and "-> dead_letter" in last["message"]
    assert "RuntimeError: boom" in last["exc"] and "Traceback" in last["exc"]
    [final] = about(found, permanent.id)
    assert final["level"] == "ERROR" and "NonRetryableError: no" in final["exc"]
    [crashed] = about(found, lost.id)
    assert crashed["level"] == "ERROR" and "worker lost -> dead_letter" in crashed["message"]
    receiver = [r for r in found if r["logger"] == "tasks_app.tasks_framework"]
    assert receiver and all("IsADirectoryError" in r["exc"] for r in receiver)


def test_json_format_takes_over_loggers_with_handlers_of_their_own() -> None:
    """Django's default django.server handler and a site logger with its own handler: JSON."""
    code = (
        "import django, logging, sys\n"
        "django.setup()\n"
        "own = logging.getLogger('site.audit')\n"
        "own.addHandler(logging.StreamHandler(sys.stderr))\n"
        "own.propagate = False\n"
        "from workers_app.logging import configure\n"
        "configure('info', 'json')\n"
        "for name in ('django.server', 'django.request', 'site.audit', 'tasks_app.api',\n"
        "             'workers_app.runtime', 'handlers.mine'):\n"
        "    logging.getLogger(name).warning('from %s', name)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "taskqueue_project.settings",
           "DJANGO_SECRET_KEY": servers.test_secret_key()}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    found = records(proc.stderr)
    assert [(r["logger"], r["message"]) for r in found] == [
        (name, f"from {name}") for name in ("django.server", "django.request", "site.audit",
                                            "tasks_app.api", "workers_app.runtime",
                                            "handlers.mine")]
