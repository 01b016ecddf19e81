"""Task payloads never reach the logs at INFO: a real daphne and a real worker at INFO run
tasks whose payload holds a unique secret (completed, retried, dead-lettered, refused by
validation), and every line they log is searched for it.

And no client can forge a log record: handler errors and request paths holding line breaks
(CR, LF, U+2028, NEL) are logged escaped, one record to a line, tracebacks indented."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tasks_app import producer
from tests import servers
from tests.procs import WorkerPool, wait_for_state
from tests.servers import ROOT, LiveServer

INFO = {"DJANGO_LOG_LEVEL": "INFO"}
FORGED = "2001-01-01 00:00:00,000 INFO [MainProcess] worker worker-FORGED joined"
BREAKS = ["\n", "\r\n", "\r", "\u2028", "\x85", "\x1b[2K\r"]
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def test_secret_in_payloads_never_appears_in_info_logs(tmp_path: Path) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    with LiveServer(tmp_path, INFO) as server, WorkerPool(tmp_path) as pool:
        pool.start("--log-level", "info", env=INFO, inspector=producer.inspector())
        url = f"{server.url}/api/v1/tasks"

        def submit(body: object, raw: str | None = None) -> requests.Response:
            return requests.post(url, data=raw if raw is not None else json.dumps(body),
                                 headers={"Content-Type": "application/json"}, timeout=10)

        done = submit({"type": "echo", "payload": {"api_token": secret}})
        retried = submit({"type": "fail", "max_retries": 1,
                          "payload": {"api_token": secret, "fail_times": 1}})
        dead = submit({"type": "fail", "max_retries": 0, "payload": {"api_token": secret}})
        permanent = submit({"type": "fail", "payload": {"api_token": secret, "permanent": True}})
        assert {r.status_code for r in (done, retried, dead, permanent)} == {201}
        refused = [
            submit({"type": "echo", "payload": {"api_token": secret}, "priority": "urgent"}),
            submit({"type": "echo", "payload": {"api_token": secret}, "timeout": -1}),
            submit({"type": "no-such-type", "payload": {"api_token": secret}}),
            submit({"type": "echo", "payload": secret}),
            submit(None, raw='{"type": "echo", "payload": {"api_token": "' + secret + '"'),
            requests.post(f"{server.url}/api/v1/tasks/batch", timeout=10, json={
                "tasks": [{"type": "echo", "payload": {"api_token": secret}},
                          {"type": "echo", "payload": {"api_token": secret}, "priority": 9}]}),
            requests.post(url, data=secret, headers={"Content-Type": "text/plain"}, timeout=10),
        ]
        assert all(400 <= r.status_code < 500 for r in refused), [r.text for r in refused]
        wait_for_state(done.json()["id"], "completed", timeout=30)
        wait_for_state(retried.json()["id"], "completed", timeout=30)
        wait_for_state(dead.json()["id"], "dead_letter", timeout=30)
        wait_for_state(permanent.json()["id"], "failed", timeout=30)
        # The DLQ read through the admin API, and a retry of a dead-lettered task.
        assert secret in requests.get(f"{server.url}/admin/dlq", timeout=10).text
        retry = requests.post(f"{server.url}/admin/dlq/retry", timeout=10,
                              json={"task_id": dead.json()["id"]})
        assert retry.status_code == 200
        wait_for_state(dead.json()["id"], "dead_letter", timeout=30)
    logs = {path.name: path.read_text(errors="replace") for path in tmp_path.glob("*.log")}
    assert any("daphne" in name for name in logs) and len(logs) >= 2, list(logs)
    everything = "\n".join(logs.values())
    assert " INFO " in everything, "the processes did not log at INFO"  # captured for real
    leaks = [f"{name}: {line}" for name, text in logs.items() for line in text.splitlines()
             if secret in line]
    assert not leaks, "\n".join(leaks[:20])


def assert_not_forged(text: str) -> None:
    """The forged record was logged (escaped), never as a line of its own."""
    assert "worker-FORGED" in text, "the hostile text was not logged at all"
    for bad in ("\r", "\u2028", "\x85", "\x1b"):
        assert bad not in text, repr(bad)
    forged = [line for line in text.split("\n") if line.startswith(FORGED[:10])]
    assert not forged, forged[:3]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_handler_errors_cannot_forge_worker_log_records(tmp_path: Path, log_format: str) -> None:
    with WorkerPool(tmp_path) as pool:
        worker = pool.start("--log-level", "info", "--log-format", log_format,
                            inspector=producer.inspector())
        retried = [producer.enqueue("fail", {"message": f"boom{brk}{FORGED}"}, max_retries=1)
                   for brk in BREAKS]
        permanent = producer.enqueue("fail", {"message": f"no{BREAKS[0]}{FORGED}",
                                              "permanent": True})
        for task in retried:
            wait_for_state(task.id, "dead_letter", timeout=30)
        wait_for_state(permanent.id, "failed", timeout=30)
        text = worker.log()
    assert_not_forged(text)
    if log_format == "json":
        records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert any("worker-FORGED" in r["message"] for r in records)
        assert all(line.startswith("{") for line in text.splitlines() if "FORGED" in line)
    else:
        assert "  | RuntimeError: boom" in text  # tracebacks stay, indented


def test_request_paths_and_bodies_cannot_forge_web_log_records(tmp_path: Path) -> None:
    with LiveServer(tmp_path, INFO) as server:
        for brk in BREAKS:
            hostile = quote(f"x{brk}{FORGED}", safe="")
            assert requests.get(f"{server.url}/api/v1/tasks/{hostile}", timeout=10
                                ).status_code == 404
            assert requests.get(f"{server.url}/no-such-page/{hostile}", timeout=10
                                ).status_code == 404
            created = requests.post(f"{server.url}/api/v1/tasks", timeout=10,
                                    json={"type": f"echo{brk}{FORGED}"})
            assert created.status_code == 400
    assert_not_forged(server.log_path.read_text(errors="replace"))


def test_the_site_logging_escapes_every_logger_it_configures() -> None:
    """django, daphne and this project's loggers, through settings.LOGGING, in a process."""
    code = (
        "import django, logging, sys\n"
        "django.setup()\n"
        f"forged = {FORGED!r}\n"
        "for name in ('django.request', 'daphne.server', 'tasks_app.api', 'workers_app'):\n"
        "    logging.getLogger(name).warning('%s got %s', name, 'x\\r\\n' + forged)\n"
        "try:\n"
        "    raise ValueError('bad\\n' + forged)\n"
        "except ValueError:\n"
        "    logging.getLogger('tasks_app.api').exception('unhandled %s', '\\u2028' + forged)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "taskqueue_project.settings",
           "DJANGO_LOG_LEVEL": "INFO", "DJANGO_SECRET_KEY": servers.test_secret_key()}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("worker-FORGED") == 6, proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if RECORD_START.match(ln)]) == 5
    assert_not_forged(proc.stderr)
