"""End to end: tasks created in a named queue over REST run on real workers serving it, and
pausing that queue over REST stops them taking from it while other queues still run."""

from __future__ import annotations

import time

from tasks_app import producer
from tasks_app.core.inspect import Inspector
from tasks_app.core.states import TaskState
from tests.api_support import call, create
from tests.procs import WorkerPool, wait_for_state


def test_a_worker_serving_emails_runs_the_task_created_there(
        pool: WorkerPool, inspector: Inspector) -> None:
    made = create(queue="emails", payload={"n": 1})
    other = create(payload={"n": 2})
    pool.start("--queues", "emails", inspector=inspector)
    done = wait_for_state(made["id"], "completed", timeout=10)
    assert done.queue == "emails"
    reply = call("GET", f"/api/v1/tasks/{made['id']}").body
    assert (reply["state"], reply["queue"]) == ("completed", "emails")
    time.sleep(0.5)
    assert producer.get(other["id"]).state == TaskState.PENDING  # not a queue it serves


def test_pausing_a_queue_stops_its_tasks_but_not_another_queues(
        pool: WorkerPool, inspector: Inspector) -> None:
    first = create(queue="emails")
    pool.start("--queues", "emails,default", inspector=inspector)
    wait_for_state(first["id"], "completed", timeout=10)
    assert call("POST", "/admin/named-queues/emails/pause").status == 200
    held = create(queue="emails", priority="critical")
    runs = create(priority="low")
    wait_for_state(runs["id"], "completed", timeout=10)
    time.sleep(1.0)
    assert producer.get(held["id"]).state == TaskState.PENDING
    assert call("POST", "/admin/named-queues/emails/resume").body["paused"] is False
    assert wait_for_state(held["id"], "completed", timeout=10).queue == "emails"
