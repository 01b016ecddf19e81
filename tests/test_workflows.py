"""Workflows (chains and groups): created in one script, advanced by the scripts that end
their steps, failed by a failed step, resumed by its retry, cancelled as a whole; the
REST API and the Python API over them."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from django.test import override_settings

from tasks_app import producer
from tasks_app.conf import tq_settings
from tasks_app.core import metrics
from tasks_app.core.broker import Broker
from tasks_app.core.errors import WorkflowNotFound
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


@pytest.mark.parametrize("result_bytes", [1_000, 64 * 1024])
def test_results_copied_into_later_steps_are_bounded_per_workflow(
        b: Broker, redis_client: redis.Redis, result_bytes: int) -> None:
    """A result is copied into every step waiting on it: 64 KiB ahead of a group of 1,100
    would write 72 MB in one call (a handler that echoes its input lets a client choose
    that).  Past 64 MiB of copies the workflow fails at that step, before copying."""
    flow = producer.workflow({"chain": [count(1), {"group": [count(1)] * 1100}]})
    jobs = b.take(WORKER, (0, 1, 2, 3), 1)
    assert isinstance(jobs, list)
    used = redis_client.info("memory")["used_memory"]
    b.ack(jobs[0], WORKER, json.dumps("x" * (result_bytes - 2)))
    after = producer.get_workflow(flow.id)
    if result_bytes == 1_000:  # 1.1 MB of copies: every member starts with the result
        assert after.state == "running"
        assert {s.state for s in after.steps[1:]} == {"pending"}
        return
    assert after.state == "failed" and after.failed_step == flow.steps[0].task_id
    assert after.steps[0].state == "completed"
    assert {s.state for s in after.steps[1:]} == {"cancelled"}  # never created
    assert b.take(WORKER, (0, 1, 2, 3), 16) == "empty"
    assert redis_client.info("memory")["used_memory"] - used < 8 * 1024 * 1024
    assert producer.cancel_workflow(flow.id).state == "cancelled"


def test_results_handed_on_while_failed_count_and_a_retry_does_not_resume_past_the_bound(
        b: Broker) -> None:
    """A member that completes while its workflow is failed hands its result on when the
    workflow resumes: those copies count too, and past the bound no retry resumes it."""
    flow = producer.workflow({"chain": [{"group": [producer.step("fail", {}), count(1)]},
                                        {"group": [count(1)] * 1100}]})
    ids = [s.task_id for s in flow.steps]
    failing = b.take(WORKER, (0, 1, 2, 3), 1)
    big = b.take(WORKER, (0, 1, 2, 3), 1)
    assert isinstance(failing, list) and isinstance(big, list)
    assert [failing[0].id, big[0].id] == ids[:2]
    b.fail(failing[0], WORKER, "boom", permanent=True)
    b.ack(big[0], WORKER, json.dumps("x" * (64 * 1024)))  # 72 MB of copies, once resumed
    Inspector(b).retry(ids[0])  # the operator's retry of the failed member
    after = producer.get_workflow(flow.id)
    assert after.state == "failed"
    assert [s.state for s in after.steps[:2]] == ["pending", "completed"]
    assert {s.state for s in after.steps[2:]} == {"cancelled"}
    assert [j.id for j in take_all(b)] == [ids[0]]  # the retried member alone, nothing after it


def take_all(b: Broker) -> list[Job]:
    """Everything a take hands out now."""
    got = b.take(WORKER, (0, 1, 2, 3), 2000)
    return got if isinstance(got, list) else []


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


def group_after_group(first: int, second: int) -> dict[str, Any]:
    """Every member of the second group waits on every member of the first."""
    return {"chain": [{"group": [{"type": "count"}] * first},
                      {"group": [{"type": "count"}] * second}]}


def test_links_between_steps_are_bounded_and_a_refused_workflow_writes_nothing(
        redis_client: redis.Redis) -> None:
    """A group after a group asks for first x second links from a small body (5,000 x 5,000
    would be 25 million, hundreds of MB in the web process and Redis): at most MAX_LINKS."""
    status, _, message = error(call("POST", "/api/v1/workflows", group_after_group(317, 316)))
    assert status == 400 and "at most 100000 links" in message, str(message)[:300]
    assert "chain[1].group[" in message
    assert not list(redis_client.scan_iter("tq:*:workflow*"))
    assert not list(redis_client.scan_iter("tq:*:task:*"))
    created = call("POST", "/api/v1/workflows", group_after_group(316, 316))  # 99,856 links
    assert created.status == 201, str(created.body)[:300]
    assert created.body["step_count"] == 632


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


# -- Idempotency-Key ----------------------------------------------------------------------

CHAIN = {"chain": [{"type": "count", "payload": {"add": 1}},
                   {"group": [{"type": "count"}, {"type": "echo"}]}]}


def stored(client: redis.Redis) -> tuple[int, int]:
    """(workflows, tasks) stored, on every shard and node."""
    return (len(list(client.scan_iter("tq:*:workflow:*"))),
            len(list(client.scan_iter("tq:*:task:*"))))


def post_flow(body: dict[str, Any], key: str | None, **headers: str) -> Any:
    extra = {"Idempotency-Key": key} if key is not None else {}
    return call("POST", "/api/v1/workflows", body, **headers, **extra)


def test_a_repeated_idempotency_key_returns_the_original_workflow_with_200(
        redis_client: redis.Redis) -> None:
    first = post_flow(CHAIN, "flow-42")
    assert first.status == 201, first.body
    before = stored(redis_client)
    assert before == (1, 1)  # the chain's first step's task: the rest wait their turn
    again = post_flow(CHAIN, "flow-42")
    other_body = post_flow({"group": [{"type": "echo"}]}, "flow-42")  # the original, as tasks
    assert (again.status, other_body.status) == (200, 200)
    assert again.body == first.body and other_body.body == first.body
    assert [s["task_id"] for s in again.body["steps"]] == [
        s["task_id"] for s in first.body["steps"]]
    assert stored(redis_client) == before  # nothing created
    fresh = post_flow(CHAIN, "flow-43")
    assert fresh.status == 201 and fresh.body["id"] != first.body["id"]
    assert stored(redis_client) == (2, 2)


def test_a_workflow_idempotency_key_lasts_idempotency_ttl() -> None:
    post_flow(CHAIN, "flow-ttl")
    ttl = broker().client.pttl(broker().keys.workflow_idempotency("flow-ttl", "anonymous"))
    assert 86_390_000 < ttl <= 86_400_000


def test_a_task_and_a_workflow_may_share_an_idempotency_key() -> None:
    task = call("POST", "/api/v1/tasks", {"type": "echo"}, **{"Idempotency-Key": "both-1"})
    flow = post_flow(CHAIN, "both-1")
    assert (task.status, flow.status) == (201, 201)
    assert post_flow(CHAIN, "both-1").body["id"] == flow.body["id"]
    again = call("POST", "/api/v1/tasks", {"type": "echo"}, **{"Idempotency-Key": "both-1"})
    assert (again.status, again.body["id"]) == (200, task.body["id"])


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\there", "é"])
def test_a_malformed_idempotency_key_is_400_and_creates_nothing(
        key: str, redis_client: redis.Redis) -> None:
    status, name, message = error(post_flow(CHAIN, key))
    assert (status, name) == (400, "Bad Request") and "Idempotency-Key" in message
    assert stored(redis_client) == (0, 0)


def test_the_longest_idempotency_key_is_accepted() -> None:
    key = "~" * 255
    assert (post_flow(CHAIN, key).status, post_flow(CHAIN, key).status) == (201, 200)


def test_workflow_idempotency_keys_are_scoped_to_the_caller(redis_client: redis.Redis) -> None:
    auth = {"REDIS_URL": tq_settings.REDIS_URL, "AUTH_ENABLED": True,
            "API_KEYS": [KEY_A, KEY_B], "ADMIN_API_KEYS": [ADMIN_KEY]}
    with override_settings(TASKQUEUE=auth):
        by_a = post_flow(CHAIN, "flow-1", **{"X-API-Key": KEY_A})
        by_b = post_flow({"chain": [{"type": "echo"}]}, "flow-1", **{"X-API-Key": KEY_B})
        again_a = post_flow(CHAIN, "flow-1", **{"X-API-Key": KEY_A})
        again_b = post_flow(CHAIN, "flow-1", **{"X-API-Key": KEY_B})
    assert (by_a.status, by_b.status, again_a.status, again_b.status) == (201, 201, 200, 200)
    assert by_b.body["id"] != by_a.body["id"] and by_b.body["step_count"] == 1
    assert again_a.body["id"] == by_a.body["id"] and again_b.body["id"] == by_b.body["id"]
    assert stored(redis_client) == (2, 2)
    assert producer.workflow(CHAIN, idempotency_key="flow-1").id not in (
        by_a.body["id"], by_b.body["id"])  # the producer's own scope


def test_a_repeat_whose_workflow_is_gone_is_409_and_creates_nothing(
        redis_client: redis.Redis) -> None:
    first = post_flow(CHAIN, "flow-gone").body
    redis_client.delete(broker().keys.workflow(first["id"]))  # expired, say
    status, _, message = error(post_flow(CHAIN, "flow-gone"))
    assert status == 409 and "no longer exists" in message
    assert stored(redis_client) == (0, 1)
    with pytest.raises(WorkflowNotFound):
        producer.workflow(CHAIN, idempotency_key="flow-gone", scope="anonymous")


def test_producer_workflow_chain_and_group_take_an_idempotency_key(
        redis_client: redis.Redis) -> None:
    flow = producer.chain(count(1), count(2), idempotency_key="order-7")
    assert producer.chain(count(5), idempotency_key="order-7").id == flow.id
    assert producer.workflow({"chain": [count(1)]}, idempotency_key="order-7").id == flow.id
    grouped = producer.group(count(1), then=count(2), idempotency_key="order-8")
    assert producer.group(count(3), idempotency_key="order-8").id == grouped.id
    assert producer.chain(count(1), idempotency_key="order-7", scope="user:7").id != flow.id
    assert stored(redis_client) == (3, 3)
    submitted = producer.submit_workflow({"chain": [count(1)]}, "order-7")
    assert submitted.duplicate and submitted.id == flow.id
    assert producer.submit_workflow({"chain": [count(1)]}, "order-9").duplicate is False


def test_racing_repeats_create_one_workflow(redis_client: redis.Redis) -> None:
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: producer.submit_workflow(CHAIN, "race-1"), range(16)))
    assert len({m.id for m in made}) == 1
    assert [m.duplicate for m in made].count(False) == 1
    assert stored(redis_client) == (1, 1)


def test_a_sharded_queue_finds_the_key_in_its_shard(redis_client: redis.Redis) -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL,
                                      "QUEUES": {"wide": {"shards": 4}}}):
        body = {**CHAIN, "queue": "wide"}
        first = post_flow(body, "wide-1")
        repeats = [post_flow(body, "wide-1") for _ in range(8)]
        others = [post_flow(body, f"wide-other-{i}").body["id"] for i in range(12)]
    assert first.status == 201 and {r.status for r in repeats} == {200}
    assert {r.body["id"] for r in repeats} == {first.body["id"]}
    tags = {key.split("}")[0] for key in redis_client.scan_iter("tq:*:workflow:*")}
    assert len(tags) > 1 and len(others) == 12  # the keys spread over the shards


def test_recent_lists_the_newest_that_still_exist_across_queues(
        b: Broker, redis_client: redis.Redis) -> None:
    made = []
    for i, queue in enumerate(("default", "flows", "default", "flows")):
        made.append(producer.chain(count(i), count(i), queue=queue))
    newest_first = [flow.id for flow in reversed(made)]
    assert [w.id for w in producer.workflows().recent(3)] == newest_first[:3]
    # the newest one's record expired (its index entry is left): the next ones fill in
    redis_client.delete(b.shard(made[-1].queue).workflow(made[-1].id))
    listed = producer.workflows().recent(3)
    assert [w.id for w in listed] == newest_first[1:4]
    assert [[s.task_id for s in w.steps] for w in listed] == \
        [[s.task_id for s in flow.steps] for flow in reversed(made[:3])]
    assert {w.state for w in listed} == {"pending"}


def test_workflows_made_back_to_back_list_newest_first(b: Broker) -> None:
    """Several creates fit in one millisecond: the listing ranks them by the microsecond."""
    made = [producer.chain(count(i), count(i)).id for i in range(100)]
    assert [w.id for w in producer.workflows().recent(100)] == made[::-1]
