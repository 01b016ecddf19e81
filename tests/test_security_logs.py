"""Task payloads never reach the logs at INFO: a real daphne and a real worker at INFO run
tasks whose payload holds a unique secret (completed, retried, dead-lettered, refused by
validation), and every line they log is searched for it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import requests

from tasks_app import producer
from tests.procs import WorkerPool, wait_for_state
from tests.servers import LiveServer

INFO = {"DJANGO_LOG_LEVEL": "INFO"}


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
