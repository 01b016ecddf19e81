"""Unique tasks: unique_for / unique_key on create (REST single and batch, producer); the
check and the create are one script, keys are scoped to the caller and live in the task's
queue shard."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from django.test import override_settings

from tasks_app import producer
from tasks_app.conf import tq_settings
from tasks_app.core.errors import ValidationError
from tasks_app.core.unique import default_key
from tests.api_support import broker, call, error
from tests.factories import register, take

KEY_A = f"client-a-{uuid.uuid4().hex}"
KEY_B = f"client-b-{uuid.uuid4().hex}"
AUTH_ON: dict[str, Any] = {"AUTH_ENABLED": True, "API_KEYS": [KEY_A, KEY_B]}


def post(body: dict[str, Any], **headers: str) -> Any:
    return call("POST", "/api/v1/tasks", {"type": "echo", **body}, **headers)


def task_records(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter("tq:*:task:*"))


def test_fifty_concurrent_creates_with_one_key_make_one_task(redis_client: redis.Redis) -> None:
    body = {"payload": {"report": 7}, "unique_for": 60, "unique_key": "report-7"}
    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(lambda _: post(body), range(50)))
    statuses = sorted(r.status for r in replies)
    assert statuses == [200] * 49 + [201]
    assert len({r.body["id"] for r in replies}) == 1
    assert task_records(redis_client) == 1


def test_the_default_key_is_queue_type_and_payload() -> None:
    first = post({"payload": {"a": 1, "b": [1, 2]}, "unique_for": 60})
    same = post({"payload": {"b": [1, 2], "a": 1}, "unique_for": 60})  # key order is no matter
    other_payload = post({"payload": {"a": 2}, "unique_for": 60})
    other_queue = post({"payload": {"a": 1, "b": [1, 2]}, "unique_for": 60, "queue": "q2"})
    assert (first.status, same.status) == (201, 200)
    assert same.body == first.body
    assert other_payload.status == 201 and other_queue.status == 201
    assert default_key("default", "echo", {"a": 1}) != default_key("q2", "echo", {"a": 1})


def test_a_create_without_unique_for_is_not_deduplicated() -> None:
    post({"payload": {"x": 1}, "unique_for": 60})
    assert post({"payload": {"x": 1}}).status == 201


def test_the_key_stops_blocking_after_unique_for() -> None:
    first = post({"unique_key": "brief", "unique_for": 1})
    assert post({"unique_key": "brief", "unique_for": 1}).body["id"] == first.body["id"]
    time.sleep(1.1)
    later = post({"unique_key": "brief", "unique_for": 1})
    assert later.status == 201 and later.body["id"] != first.body["id"]


@pytest.mark.parametrize("end", ["failed", "cancelled", "dead_letter"])
def test_a_task_that_ended_badly_no_longer_blocks(end: str) -> None:
    first = post({"unique_key": "job", "unique_for": 600, "max_retries": 0})
    b = broker()
    if end == "cancelled":
        assert call("DELETE", f"/api/v1/tasks/{first.body['id']}").status == 200
    else:
        register(b)
        job = take(b)
        b.fail(job, "w1", "boom", permanent=end == "failed")
    assert b.get(first.body["id"]).state.value == end
    again = post({"unique_key": "job", "unique_for": 600})
    assert again.status == 201 and again.body["id"] != first.body["id"]
    assert post({"unique_key": "job", "unique_for": 600}).body["id"] == again.body["id"]


def test_running_and_completed_tasks_still_block() -> None:
    first = post({"unique_key": "run", "unique_for": 600})
    b = broker()
    register(b)
    job = take(b)
    assert post({"unique_key": "run", "unique_for": 600}).status == 200
    b.ack(job, "w1", "{}")
    repeat = post({"unique_key": "run", "unique_for": 600})
    assert (repeat.status, repeat.body["id"], repeat.body["state"]) == (
        200, first.body["id"], "completed")


@pytest.mark.parametrize("end", ["completed", "failed", "cancelled"])
def test_a_key_without_unique_for_holds_until_its_task_ends(end: str,
                                                            redis_client: redis.Redis) -> None:
    first = post({"unique_key": "one-at-a-time", "max_retries": 0})
    assert first.status == 201
    pending = post({"unique_key": "one-at-a-time"})
    assert (pending.status, pending.body["id"]) == (200, first.body["id"])
    b = broker()
    if end == "cancelled":
        assert call("DELETE", f"/api/v1/tasks/{first.body['id']}").status == 200
    else:
        register(b)
        job = take(b)
        running = post({"unique_key": "one-at-a-time"})
        assert (running.status, running.body["id"]) == (200, first.body["id"])
        if end == "completed":
            b.ack(job, "w1", "{}")
        else:
            b.fail(job, "w1", "boom", permanent=True)
    assert b.get(first.body["id"]).state.value == end
    after = post({"unique_key": "one-at-a-time"})
    assert after.status == 201 and after.body["id"] != first.body["id"]
    assert post({"unique_key": "one-at-a-time"}).body["id"] == after.body["id"]
    (key,) = redis_client.scan_iter("tq:*:unique:*")
    assert 0 < redis_client.pttl(key) <= 30 * 86400 * 1000


def test_keys_of_two_callers_do_not_collide() -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL, **AUTH_ON}):
        a = post({"unique_key": "nightly", "unique_for": 600}, **{"X-API-Key": KEY_A})
        b = post({"unique_key": "nightly", "unique_for": 600}, **{"X-API-Key": KEY_B})
        a2 = post({"unique_key": "nightly", "unique_for": 600}, **{"X-API-Key": KEY_A})
    assert (a.status, b.status, a2.status) == (201, 201, 200)
    assert a.body["id"] != b.body["id"] and a2.body["id"] == a.body["id"]


def test_a_batch_creates_the_others_and_names_the_existing_ones(
        redis_client: redis.Redis) -> None:
    held = post({"unique_key": "k1", "unique_for": 600})
    tasks = [{"type": "echo", "unique_key": "k1", "unique_for": 600},
             {"type": "echo", "payload": {"n": 2}},
             {"type": "echo", "unique_key": "k3", "unique_for": 600},
             {"type": "echo", "unique_key": "k3", "unique_for": 600}]
    reply = call("POST", "/api/v1/tasks/batch", {"tasks": tasks})
    assert reply.status == 201
    ids = [t["id"] for t in reply.body["tasks"]]
    assert ids[0] == held.body["id"] and ids[2] == ids[3]
    assert reply.body["existing"] == [0, 3]
    assert task_records(redis_client) == 3
    again = call("POST", "/api/v1/tasks/batch", {"tasks": [tasks[0], tasks[2]]})
    assert (again.status, again.body["existing"]) == (200, [0, 1])
    assert [t["id"] for t in again.body["tasks"]] == [ids[0], ids[2]]


@pytest.mark.parametrize(("body", "field"), [
    ({"unique_for": 0}, "unique_for"), ({"unique_for": 30 * 86400 + 1}, "unique_for"),
    ({"unique_for": 1.5}, "unique_for"), ({"unique_for": True}, "unique_for"),
    ({"unique_key": ""}, "unique_key"), ({"unique_for": 5, "unique_key": ""}, "unique_key"),
    ({"unique_for": 5, "unique_key": "has space"}, "unique_key"),
    ({"unique_for": 5, "unique_key": "x" * 201}, "unique_key")])
def test_bad_unique_fields_are_400(body: dict[str, Any], field: str) -> None:
    status, _, message = error(post(body))
    assert status == 400 and field in message


def test_the_producer_takes_unique_for_too(redis_client: redis.Redis) -> None:
    first = producer.enqueue("echo", {"n": 1}, unique_for=60)
    assert producer.enqueue("echo", {"n": 1}, unique_for=60).id == first.id
    submitted = producer.submit([{"type": "echo", "payload": {"n": 1}, "unique_for": 60}])
    assert submitted.existing == {0} and submitted.tasks[0].id == first.id
    with pytest.raises(ValidationError):
        producer.enqueue("echo", unique_key="no spaces")
    alone = producer.enqueue("echo", unique_key="k")
    assert producer.enqueue("echo", {"other": "payload"}, unique_key="k").id == alone.id


def test_a_sharded_queue_finds_the_key_in_the_same_shard(redis_client: redis.Redis) -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL,
                                      "QUEUES": {"wide": {"shards": 4}}}):
        made = [producer.enqueue("echo", {"n": i % 8}, queue="wide", unique_for=60)
                for i in range(24)]
        with pytest.raises(ValidationError, match="another shard"):
            producer.submit([{"type": "echo", "payload": {"n": i}, "queue": "wide",
                              "unique_for": 60} for i in range(8, 16)])
    assert len({t.id for t in made}) == 8
    tags = {key.split("}")[0] for key in redis_client.scan_iter("tq:*:task:*")}
    assert len(tags) > 1 and task_records(redis_client) == 8  # spread over shards


def test_a_plain_create_leaves_no_unique_key(redis_client: redis.Redis) -> None:
    post({"payload": {"plain": True}})
    assert not list(redis_client.scan_iter("tq:*unique:*"))
    post({"payload": {"plain": True}, "unique_for": 60})
    assert len(list(redis_client.scan_iter("tq:*unique:*"))) == 1
