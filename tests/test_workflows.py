"""Workflows (chains and groups): created in one script, advanced by the scripts that end
their steps, failed by a failed step, resumed by its retry, cancelled as a whole; the
REST API and the Python API over them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis
from django.test import override_settings

from tasks_app import producer
from tasks_app.conf import tq_settings
from tasks_app.core import metrics
from tasks_app.core.broker import Broker
from tasks_app.core.events import expand
from tasks_app.core.inspect import Inspector
from tasks_app.core.limits import TypeLimit, TypeLimits
from tasks_app.core.task import Job
from tests.api_support import broker, call, error
from tests.factories import WORKER, register

KEY_A = f"wf-a-{uuid.uuid4().hex}"
KEY_B = f"wf-b-{uuid.uuid4().hex}"
ADMIN_KEY = f"wf-admin-{uuid.uuid4().hex}"


def count(add: float = 1, **options: Any) -> dict[str, Any]:
    return producer.step("count", {"add": add}, **options)


def run_all(b: Broker, results: dict[str, Any] | None = None,
            fail: set[str] | None = None) -> list[Job]:
    """Take and end every task there is, in queue order, the way a worker would: a
    ``count`` returns add + the sum of its parent results; a type in ``fail`` fails for
    good.  Returns the jobs taken."""
    taken: list[Job] = []
    while isinstance(jobs := b.take(WORKER, (0, 1, 2, 3), 16), list):
        for job in jobs:
            taken.append(job)
            if job.type in (fail or set()):
                b.fail(job, WORKER, "boom", permanent=True)
                continue
            value = job.payload.get("add", 1) + total(job.parent_results)
            if results is not None:
                results[job.id] = job.parent_results
            b.ack(job, WORKER, json.dumps(value))
    return taken


def total(value: Any) -> float:
    if isinstance(value, list):
        return sum(total(v) for v in value)
    return value or 0


@pytest.fixture
def b() -> Broker:
    found = broker()
    register(found, WORKER, concurrency=16)
    return found


def test_a_chain_runs_in_order_and_hands_each_step_the_previous_result(b: Broker) -> None:
    flow = producer.chain(count(1), count(10), count(100))
    assert flow.state == "pending" and [s.state for s in flow.steps] == [
        "pending", "waiting", "waiting"]
    seen: dict[str, Any] = {}
    jobs = run_all(b, seen)
    assert [j.type for j in jobs] == ["count"] * 3
    ids = [s.task_id for s in flow.steps]
    assert [j.id for j in jobs] == ids  # one after another
    assert [seen[i] for i in ids] == [None, 1, 11]
    done = producer.get_workflow(flow.id)
    assert done.state == "completed" and b.get(ids[2]).result == 111
    assert b.get(ids[1]).payload == {"add": 10}  # the payload is never rewritten
    counted = metrics.parse(b.client.hgetall(b.keys.metrics)).counters["workflows"]
    assert (counted[("created",)], counted[("completed",)]) == (1, 1)


@pytest.mark.standalone  # reads the events off one server's pub/sub
def test_workflow_events_name_the_workflow_and_its_failed_step(b: Broker) -> None:
    pubsub = b.client.pubsub()
    pubsub.psubscribe("*")
    flow = producer.chain(producer.step("fail", {"permanent": True}), count(1))
    job = b.take(WORKER, (0, 1, 2, 3), 1)
    assert isinstance(job, list)
    b.fail(job[0], WORKER, "boom", permanent=True)
    seen = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        if message["type"] == "pmessage" and "events.compact" in str(message["data"]):
            seen += expand(json.loads(message["data"]))
    pubsub.close()
    failed = [e for e in seen if e["type"] == "workflow.failed"]
    assert len(failed) == 1, [e["type"] for e in seen]
    assert failed[0]["data"] == {"workflow_id": flow.id, "queue": "default", "state": "failed",
                                 "failed_step": flow.steps[0].task_id, "owner": "producer"}


def test_a_group_then_step_gets_every_members_result_in_member_order(b: Broker) -> None:
    flow = producer.group(*[count(i) for i in range(1, 6)], then=count(0))
    seen: dict[str, Any] = {}
    run_all(b, seen)
    then_id = flow.steps[-1].task_id
    assert seen[then_id] == [1, 2, 3, 4, 5]
    assert producer.get_workflow(flow.id).state == "completed"
    assert b.get(then_id).result == 15


def test_nested_workflows_pass_nested_results(b: Broker) -> None:
    flow = producer.chain(
        count(1),
        {"group": [count(2), {"chain": [count(3), count(4)]}, {"group": [count(5), count(6)]}],
         "then": count(0)},
        count(1000))
    seen: dict[str, Any] = {}
    run_all(b, seen)
    steps = flow.steps
    # after step 0 (1): the members get 1; the chain's second step gets 3 + 1
    assert seen[steps[1].task_id] == 1 and seen[steps[3].task_id] == 4
    # the then step: [2 + 1, (3 + 1) + 4, [5 + 1, 6 + 1]]
    assert seen[steps[6].task_id] == [3, 8, [6, 7]]
    assert seen[steps[7].task_id] == 24
    assert producer.get_workflow(flow.id).state == "completed"
    assert flow.structure == {"chain": [0, {"group": [1, {"chain": [2, 3]}, {"group": [4, 5]}],
                                            "then": 6}, 7]}


def test_a_failed_step_fails_the_workflow_and_its_retry_resumes_it(b: Broker) -> None:
    flow = producer.group(count(1), producer.step("fail", {"permanent": True}), count(2),
                          then=count(0))
    ids = [s.task_id for s in flow.steps]
    # take the first member only, then let the failing one fail while the third waits
    first = b.take(WORKER, (0, 1, 2, 3), 1)
    second = b.take(WORKER, (0, 1, 2, 3), 1)
    assert isinstance(first, list) and isinstance(second, list)
    b.fail(second[0], WORKER, "boom", permanent=True)
    failed = producer.get_workflow(flow.id)
    assert failed.state == "failed" and failed.failed_step == ids[1]
    assert [s.state for s in failed.steps] == ["running", "failed", "cancelled", "cancelled"]
    b.ack(first[0], WORKER, "1")  # a running member still completes; nothing starts after it
    assert b.take(WORKER, (0, 1, 2, 3), 16) == "empty"
    Inspector(b).retry(ids[1])  # the operator's retry of the failed step
    resumed = producer.get_workflow(flow.id)
    assert resumed.state == "running"
    assert [s.state for s in resumed.steps] == ["completed", "pending", "pending", "waiting"]
    seen: dict[str, Any] = {}
    jobs = run_all(b, seen)
    assert {j.id for j in jobs} == {ids[1], ids[2], ids[3]}
    assert producer.get_workflow(flow.id).state == "completed"
    assert seen[ids[3]] == [1, 1, 2]  # run_all completes the retried step with 1


def test_a_dead_lettered_step_fails_the_workflow_and_a_dlq_retry_resumes_it(b: Broker) -> None:
    flow = producer.chain(producer.step("fail", {}, max_retries=0), count(5))
    ids = [s.task_id for s in flow.steps]
    job = b.take(WORKER, (0, 1, 2, 3), 1)
    assert isinstance(job, list)
    b.fail(job[0], WORKER, "boom")
    assert b.get(ids[0]).state == "dead_letter"
    assert producer.get_workflow(flow.id).state == "failed"
    Inspector(b).dlq_retry(ids[0])
    run_all(b)
    done = producer.get_workflow(flow.id)
    assert done.state == "completed" and b.get(ids[1]).result == 6  # 5 + the retried 1


def test_cancelling_a_workflow_cancels_what_has_not_started(b: Broker) -> None:
    flow = producer.chain(count(1), count(2), count(3))
    ids = [s.task_id for s in flow.steps]
    running = b.take(WORKER, (0, 1, 2, 3), 1)
    assert isinstance(running, list)
    cancelled = producer.cancel_workflow(flow.id)
    assert cancelled.state == "cancelled"
    b.ack(running[0], WORKER, "1")  # the running step finishes, and starts nothing
    after = producer.get_workflow(flow.id)
    assert [s.state for s in after.steps] == ["completed", "cancelled", "cancelled"]
    assert b.take(WORKER, (0, 1, 2, 3), 16) == "empty"
    assert ids


def test_cancelling_one_step_cancels_its_workflow(b: Broker) -> None:
    flow = producer.group(count(1), count(2))
    producer.cancel(flow.steps[1].task_id)
    after = producer.get_workflow(flow.id)
    assert after.state == "cancelled"
    assert [s.state for s in after.steps] == ["cancelled", "cancelled"]
    assert b.take(WORKER, (0, 1, 2, 3), 16) == "empty"


def test_a_workflow_lives_in_its_queue(b: Broker, redis_client: redis.Redis) -> None:
    flow = producer.chain(count(1), count(2), queue="flows")
    assert flow.queue == "flows"
    assert b.get(flow.steps[0].task_id).queue == "flows"
    b.queues(fresh=True)  # a worker finds the new queue, and registers in it
    register(b, WORKER, concurrency=16)
    run_all(b)
    assert producer.get_workflow(flow.id).state == "completed"


# -- REST ----------------------------------------------------------------------------------

def test_post_creates_and_get_reads_every_step() -> None:
    body = {"chain": [{"type": "count", "payload": {"add": 1}},
                      {"group": [{"type": "count"}, {"type": "echo"}], "then": {"type": "count"}}]}
    created = call("POST", "/api/v1/workflows", body)
    assert created.status == 201, created.body
    assert created.body["state"] == "pending" and created.body["step_count"] == 4
    ids = [s["task_id"] for s in created.body["steps"]]
    assert len(set(ids)) == 4
    assert [s["after"] for s in created.body["steps"]] == [[], [0], [0], [1, 2]]
    got = call("GET", f"/api/v1/workflows/{created.body['id']}")
    assert got.status == 200 and got.body["steps"] == created.body["steps"]
    first = call("GET", f"/api/v1/tasks/{ids[0]}")
    assert first.status == 200 and first.body["state"] == "pending"
    assert call("GET", f"/api/v1/tasks/{ids[1]}").status == 404  # created when its turn comes


@pytest.mark.parametrize(("body", "names"), [
    ({"group": []}, "group"),
    ({"chain": [{"type": "count"}, {"group": [{"type": "nope"}]}]}, "chain[1].group[0]"),
    ({"chain": [{"type": "count", "timeout": 0}]}, "chain[0]: timeout"),
    ({"chain": [{"type": "count", "queue": "other"}]}, "queue"),
    ({"group": [{"type": "count"}], "then": None}, "then"),
    ({"chain": [{"type": "count"}], "extra": 1}, "extra"),
    ({"chain": "count"}, "chain"),
    ({"chain": [{"chain": []}]}, "chain[0].chain"),
    ({"tasks": []}, "chain"),
])
def test_bad_workflows_are_400_naming_the_step_and_create_nothing(
        body: dict[str, Any], names: str, redis_client: redis.Redis) -> None:
    status, _, message = error(call("POST", "/api/v1/workflows", body))
    assert status == 400 and names in message, message
    assert not list(redis_client.scan_iter("tq:*:workflow*"))
    assert not list(redis_client.scan_iter("tq:*:task:*"))


def test_too_deep_nesting_is_400() -> None:
    tree: dict[str, Any] = {"type": "count"}
    for _ in range(40):
        tree = {"chain": [tree]}
    status, _, message = error(call("POST", "/api/v1/workflows", tree))
    assert status == 400 and "nest" in message


def test_delete_cancels_and_a_completed_workflow_is_409(b: Broker) -> None:
    created = call("POST", "/api/v1/workflows", {"chain": [{"type": "count"}]}).body
    run_all(b)
    assert call("GET", f"/api/v1/workflows/{created['id']}").body["state"] == "completed"
    status, _, message = error(call("DELETE", f"/api/v1/workflows/{created['id']}"))
    assert (status, message) == (409, "workflow cannot be cancelled in current state")
    other = call("POST", "/api/v1/workflows", {"chain": [{"type": "count"}]}).body
    gone = call("DELETE", f"/api/v1/workflows/{other['id']}")
    assert gone.status == 200 and gone.body["state"] == "cancelled"
    assert error(call("GET", f"/api/v1/workflows/{uuid.uuid4()}"))[:2] == (404, "Not Found")
    assert error(call("GET", "/api/v1/workflows/not-a-uuid"))[0] == 404


def test_owner_visibility_hides_another_callers_workflow() -> None:
    auth = {"REDIS_URL": tq_settings.REDIS_URL, "AUTH_ENABLED": True,
            "API_KEYS": [KEY_A, KEY_B], "ADMIN_API_KEYS": [ADMIN_KEY], "TASK_VISIBILITY": "owner"}
    with override_settings(TASKQUEUE=auth):
        made = call("POST", "/api/v1/workflows", {"chain": [{"type": "count"}]},
                    **{"X-API-Key": KEY_A})
        assert made.status == 201
        wid = made.body["id"]
        for method in ("GET", "DELETE"):
            assert call(method, f"/api/v1/workflows/{wid}", **{"X-API-Key": KEY_B}).status == 404
        assert call("GET", f"/api/v1/workflows/{wid}", **{"X-API-Key": KEY_A}).status == 200
        assert call("GET", f"/api/v1/workflows/{wid}", **{"X-API-Key": ADMIN_KEY}).status == 200
        assert call("POST", "/api/v1/workflows", {"chain": [{"type": "count"}]}).status == 401


def test_a_group_of_a_limited_type_runs_within_its_limit_and_cancels_cleanly(
        b: Broker) -> None:
    store = TypeLimits(b)
    store.set("count", TypeLimit(concurrency=1))
    try:
        flow = producer.group(*[count(i) for i in range(4)], then=producer.step("echo"))
        first = b.take(WORKER, (0, 1, 2, 3), 16)
        assert isinstance(first, list) and len(first) == 1  # the others wait, parked
        assert Inspector(b).queue_depths()["low"] == 3  # parked members are still pending
        producer.cancel_workflow(flow.id)
        assert Inspector(b).queue_depths()["low"] == 0  # cancelled out of the parked set too
        b.ack(first[0], WORKER, "1")
        assert b.take(WORKER, (0, 1, 2, 3), 16) == "empty"
        states = [s.state for s in producer.get_workflow(flow.id).steps]
        assert states == ["completed", "cancelled", "cancelled", "cancelled", "cancelled"]
    finally:
        store.clear("count")
