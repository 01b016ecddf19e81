"""Key layout: everything the engine writes lives under one namespace prefix and hash tag."""

from __future__ import annotations

import time

import pytest
import redis

from tasks_app import producer
from tasks_app.core.broker import Broker
from tasks_app.core.inspect import Inspector
from tasks_app.core.keys import Keys
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import dead_letter, drain, make_spec, open_broker, register, take

TUNABLES = {"lease_seconds": 0.05, "retry_backoff_base": 0.001, "retry_backoff_max": 0.001,
            "heartbeat_interval": 0.02, "heartbeat_timeout": 0.05}


def _full_lifecycle(broker: Broker, worker: str) -> None:
    """Touch every script: enqueue, schedule, run, ack, retry, die, recover, admin, pause."""
    inspector = Inspector(broker)
    register(broker, worker)
    register(broker, f"{worker}-lost")
    broker.enqueue_many([make_spec(priority=p) for p in (0, 1, 2, 3)])
    broker.enqueue(make_spec(delay_ms=1))
    broker.submit([make_spec(priority=1)], idempotency_key="order-42")
    broker.cancel(broker.enqueue(make_spec(delay_ms=60_000)).id)
    inspector.pause_queue(3)
    inspector.resume_queue(3)
    inspector.pause_worker(worker)
    inspector.resume_worker(worker)
    job = take(broker, worker)
    broker.heartbeat(worker, {"concurrency": 2}, [(job.id, job.fence)])
    broker.ack(job, worker, '"ok"')
    job = take(broker, worker)
    broker.fail(job, worker, "boom")
    job = take(broker, worker)
    broker.fail(job, worker, "bad", permanent=True)
    job = take(broker, worker)
    broker.requeue(job.id, worker, job.fence)
    take(broker, worker)
    time.sleep(0.1)
    broker.promote()
    broker.recover()
    register(broker, worker)
    broker.wake_worker(worker, 2)
    for job in drain(broker, worker):
        broker.ack(job, worker, "1")
    dead = dead_letter(broker, 3, worker_id=worker)
    inspector.dlq_retry(dead[0])
    inspector.dlq_delete([dead[1]])
    inspector.dlq_retry_all()
    for job in drain(broker, worker):
        broker.ack(job, worker, "1")
    dead_letter(broker, 2, worker_id=worker)
    inspector.dlq_clear()
    broker.deregister(worker)


@pytest.mark.parametrize("namespace", ["default", "other.ns-1"])
def test_every_key_starts_with_the_namespace_prefix(
    redis_server: EmbeddedRedis, redis_client: redis.Redis, namespace: str
) -> None:
    with open_broker(redis_server.url, namespace=namespace, **TUNABLES) as broker:
        _full_lifecycle(broker, "w-keys")
        register(broker, "w-keys")
    keys = [str(k) for k in redis_client.keys("*")]
    prefix = f"tq:{{{namespace}}}:"
    assert keys, "the lifecycle left nothing to check"
    assert [k for k in keys if not k.startswith(prefix)] == []
    assert Keys(namespace).prefix == prefix


def test_producer_writes_only_default_namespace_keys(redis_client: redis.Redis) -> None:
    producer.enqueue("echo", {"x": 1}, priority="critical")
    producer.enqueue("echo", {"x": 2}, delay=60)
    keys = [str(k) for k in redis_client.keys("*")]
    assert keys
    assert all(k.startswith("tq:{default}:") for k in keys)


def test_namespaces_do_not_see_each_other(redis_server: EmbeddedRedis) -> None:
    with open_broker(redis_server.url) as a, open_broker(redis_server.url, namespace="b") as b:
        register(a)
        register(b)
        task = a.enqueue(make_spec())
        assert b.dequeue("worker-1", (0, 1, 2, 3)) == "empty"
        assert Inspector(b).queue_depths()["low"] == 0
        assert take(a).id == task.id


@pytest.mark.parametrize("bad", ["", "a:b", "a{b", "a}b", "a b"])
def test_namespace_that_would_break_the_hash_tag_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Keys(bad)


def test_new_task_ids_are_distinct_canonical_version_4_uuids() -> None:
    import uuid

    from tasks_app.core.broker import new_task_id

    ids = [new_task_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for task_id in ids[:2000]:
        parsed = uuid.UUID(task_id)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, task_id)
