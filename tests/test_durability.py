"""DURABILITY "replica": a write is acknowledged only once a replica confirms it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from django.test import override_settings

from tasks_app import producer
from tasks_app.conf import tq_settings
from tasks_app.core.broker import Broker, Ended
from tasks_app.core.errors import ReplicaTimeout
from tasks_app.core.states import TaskState
from tasks_app.devserver.redis import EmbeddedRedis
from tests.api_support import call
from tests.factories import WORKER, make_spec, open_broker, register


def replica_setting(**extra: object) -> override_settings:
    return override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL,
                                        "DURABILITY": "replica", "REPLICA_TIMEOUT": 0.2,
                                        **extra})


@pytest.fixture
def replica(replica_node: tuple[redis.Redis, EmbeddedRedis]) -> redis.Redis:
    """A client of a real replica of the session's Redis, caught up."""
    return replica_node[0]


@pytest.fixture
def replica_node(redis_server: EmbeddedRedis, tmp_path: Path
                 ) -> Iterator[tuple[redis.Redis, EmbeddedRedis]]:
    """A real replica of the session's Redis, caught up before the test starts: a client of
    it, and the server (whose process a test may stop)."""
    server = EmbeddedRedis(tmp_path / "replica", persistence=False)
    server.start()
    client = redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True)
    client.replicaof("127.0.0.1", redis_server.port)
    deadline = time.monotonic() + 20
    while client.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica never synced"
        time.sleep(0.05)
    try:
        yield client, server
    finally:
        client.close()
        server.stop()


@pytest.mark.django_db
def test_without_a_replica_a_create_is_503_and_says_it_may_exist(
        redis_client: redis.Redis) -> None:
    with replica_setting():
        reply = call("POST", "/api/v1/tasks", {"type": "echo", "payload": {}},
                     HTTP_IDEMPOTENCY_KEY="order-17")
    assert reply.status == 503
    assert reply.body["error"] == "Service Unavailable"
    assert "may or may not" in reply.body["message"]
    assert "Idempotency-Key" in reply.body["message"]
    # The master has it: the client reconciles with the same key once a replica is back.
    assert len(redis_client.keys("tq:{default}:task:*")) == 1


@pytest.mark.django_db
def test_with_a_replica_a_create_is_201_and_the_replica_has_the_task(
        replica: redis.Redis) -> None:
    with replica_setting():
        reply = call("POST", "/api/v1/tasks", {"type": "echo", "payload": {"n": 1}},
                     HTTP_IDEMPOTENCY_KEY="order-18")
        assert reply.status == 201, reply.body
        # Read at once from the replica: WAIT returned only after it had the write.
        assert replica.hget(f"tq:{{default}}:task:{reply.body['id']}", "state") == "pending"
        cancel = call("DELETE", f"/api/v1/tasks/{reply.body['id']}")
        assert cancel.status == 200
        assert replica.hget(f"tq:{{default}}:task:{reply.body['id']}", "state") == "cancelled"


def test_a_completion_waits_for_the_replica(redis_server: EmbeddedRedis,
                                            replica: redis.Redis) -> None:
    with open_broker(redis_server.url, durability="replica", replica_timeout=0.5) as broker:
        task = broker.enqueue(make_spec())
        register(broker)
        jobs = broker.take(WORKER, (0, 1, 2, 3), 1)
        assert isinstance(jobs, list)
        outcomes, _ = broker.finish(WORKER, [Ended(jobs[0], "ok", '"done"')], 0, (0, 1, 2, 3))
        assert outcomes[0] is not None and outcomes[0].state == TaskState.COMPLETED
        assert replica.hget(f"tq:{{default}}:task:{task.id}", "state") == "completed"


def test_an_unconfirmed_completion_raises_and_a_retry_is_safe(
        redis_server: EmbeddedRedis) -> None:
    with open_broker(redis_server.url, durability="replica", replica_timeout=0.1) as broker, \
            open_broker(redis_server.url) as local:
        task = local.enqueue(make_spec())
        register(local)
        jobs = local.take(WORKER, (0, 1, 2, 3), 1)
        assert isinstance(jobs, list)
        started = time.monotonic()
        with pytest.raises(ReplicaTimeout):
            broker.ack(jobs[0], WORKER, '"x"')
        assert time.monotonic() - started >= 0.09  # it did wait for a replica
        # The master recorded it; the same fenced call again is a recognised repeat.
        again = local.ack(jobs[0], WORKER, '"x"')
        assert again.duplicate and local.get(task.id).state == TaskState.COMPLETED


def test_local_durability_does_not_wait(redis_server: EmbeddedRedis) -> None:
    broker: Broker
    with open_broker(redis_server.url) as broker:
        started = time.monotonic()
        for _ in range(20):
            broker.enqueue(make_spec())
        assert time.monotonic() - started < 1.0


@pytest.mark.django_db
def test_without_a_replica_workflow_and_schedule_writes_are_503(
        redis_client: redis.Redis) -> None:
    with replica_setting():
        flow = call("POST", "/api/v1/workflows", {"chain": [{"type": "echo"}, {"type": "echo"}]},
                    HTTP_IDEMPOTENCY_KEY="flow-1")
        schedule = call("POST", "/admin/schedules",
                        {"name": "nightly", "type": "echo", "every": 60})
    for reply in (flow, schedule):
        assert reply.status == 503, reply.body
        assert "may or may not" in reply.body["message"]
    # The master has both: the client finds them when it repeats the request.
    assert len(list(redis_client.scan_iter("tq:{default}:workflow:*"))) == 1
    assert redis_client.exists("tq:{default}:schedule:nightly")


@pytest.mark.django_db
def test_with_a_replica_workflow_and_schedule_writes_are_on_it_when_answered(
        replica: redis.Redis, redis_client: redis.Redis) -> None:
    with replica_setting():
        flow = call("POST", "/api/v1/workflows", {"chain": [{"type": "echo"}, {"type": "echo"}]},
                    HTTP_IDEMPOTENCY_KEY="flow-2")
        assert flow.status == 201, flow.body
        key = f"tq:{{default}}:workflow:{flow.body['id']}"
        # Read at once from the replica: it has what the master has.
        assert replica.hgetall(key) and replica.hgetall(key) == redis_client.hgetall(key)
        first = flow.body["steps"][0]["task_id"]
        assert replica.hget(f"tq:{{default}}:task:{first}", "state") == "pending"
        cancel = call("DELETE", f"/api/v1/workflows/{flow.body['id']}")
        assert cancel.status == 200, cancel.body
        assert replica.hgetall(key) == redis_client.hgetall(key)
        assert replica.hget(f"tq:{{default}}:task:{first}", "state") == "cancelled"
        created = call("POST", "/admin/schedules",
                       {"name": "hourly", "type": "echo", "every": 3600})
        assert created.status == 201, created.body
        assert replica.hget("tq:{default}:schedule:hourly", "type") == "echo"
        paused = call("POST", "/admin/schedules/hourly/pause")
        assert paused.status == 200, paused.body
        assert replica.hget("tq:{default}:schedule:hourly", "enabled") == "0"


def test_a_workflow_create_is_answered_only_once_the_replica_has_it(
        replica_node: tuple[redis.Redis, EmbeddedRedis], redis_client: redis.Redis) -> None:
    replica, server = replica_node
    process = server._process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)  # the replica stops reading the master's stream
    try:
        with replica_setting(REPLICA_TIMEOUT=10.0), ThreadPoolExecutor(1) as pool:
            pending = pool.submit(producer.workflow, {"chain": [{"type": "echo"}]})
            time.sleep(0.5)
            assert not pending.done()  # the create waits for the replica ...
            os.kill(process.pid, signal.SIGCONT)
            flow = pending.result(timeout=10)  # ... and is answered once it has it
    finally:
        os.kill(process.pid, signal.SIGCONT)
    key = f"tq:{{default}}:workflow:{flow.id}"
    assert replica.hgetall(key) and replica.hgetall(key) == redis_client.hgetall(key)
