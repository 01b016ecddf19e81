"""The worker hot path: finish-and-dequeue in one round trip, and surviving a script flush."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks_app.core.broker import Broker
from tasks_app.core.inspect import Inspector
from tasks_app.core.scripts import NAMES
from tasks_app.core.states import TaskState
from tasks_app.core.task import Job
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import (
    ALL_PRIORITIES,
    WORKER,
    depths,
    make_spec,
    open_broker,
    register,
    take,
    zero_depths,
)

S = TaskState
LEASE = 0.1


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    """A broker with a short lease and near-zero backoff."""
    with open_broker(redis_server.url, lease_seconds=LEASE, retry_backoff_base=0.001,
                     retry_backoff_max=0.001) as b:
        yield b


@pytest.mark.parametrize(("ok", "permanent", "state"), [
    (True, False, S.COMPLETED), (False, False, S.RETRYING), (False, True, S.FAILED),
])
def test_finish_and_dequeue_ends_one_attempt_and_starts_the_next(
    broker: Broker, ok: bool, permanent: bool, state: TaskState
) -> None:
    register(broker)
    first, second = broker.enqueue_many([make_spec(priority=3), make_spec(priority=0)])
    job = take(broker)
    value = '"done"' if ok else "boom"
    done = broker.finish_and_dequeue(job, WORKER, ok, value, permanent, ALL_PRIORITIES)
    outcome, nxt = done.outcome, done.next
    assert outcome is not None and outcome.state is state and not outcome.duplicate
    assert isinstance(nxt, Job) and nxt.id == second.id
    assert broker.get(first.id).state is state
    assert broker.get(second.id).state is S.RUNNING
    after = broker.finish_and_dequeue(nxt, WORKER, True, "1", False, ALL_PRIORITIES).next
    assert after == "empty"
    assert depths(broker) == zero_depths()


def test_stale_finish_discards_the_outcome_and_hands_over_the_next_task(broker: Broker) -> None:
    register(broker)
    register(broker, "other")
    lost = broker.enqueue(make_spec(max_retries=1))
    old = take(broker)
    time.sleep(LEASE + 0.03)
    broker.recover()
    waiting = broker.enqueue(make_spec(priority=2))
    done = broker.finish_and_dequeue(old, WORKER, True, '"late"', False, ALL_PRIORITIES)
    nxt = done.next
    assert done.outcome is None
    assert isinstance(nxt, Job) and nxt.id == waiting.id
    assert broker.get(waiting.id).state is S.RUNNING
    assert broker.get(lost.id).state is S.RETRYING
    assert broker.ack(nxt, WORKER, "1").duplicate is False


def test_finish_and_dequeue_repeated_is_a_duplicate(broker: Broker) -> None:
    register(broker)
    task = broker.enqueue(make_spec())
    job = take(broker)
    broker.finish_and_dequeue(job, WORKER, True, '"first"', False, ALL_PRIORITIES)
    done = broker.finish_and_dequeue(job, WORKER, True, '"again"', False, ALL_PRIORITIES)
    assert done.outcome is not None and done.outcome.duplicate and done.next == "empty"
    assert broker.get(task.id).result == "first"


def flush_code(client: redis.Redis) -> None:
    """Drop every script and function the server holds (as a restart without persistence,
    or an operator's SCRIPT FLUSH / FUNCTION FLUSH, would)."""
    client.script_flush()
    client.execute_command("FUNCTION", "FLUSH")


def test_the_scripts_run_as_one_function_library_on_redis_7(
    broker: Broker, redis_client: redis.Redis
) -> None:
    register(broker)
    broker.enqueue(make_spec())
    assert broker.scripts.functions is True
    libraries = [dict(zip(raw[::2], raw[1::2], strict=True))
                 for raw in redis_client.function_list()]
    [library] = [lib for lib in libraries if lib["library_name"] == broker.scripts.library_name]
    names = {dict(zip(f[::2], f[1::2], strict=True))["name"] for f in library["functions"]}
    assert f"{library['library_name']}_finish" in names and len(names) == len(NAMES)


def test_operations_survive_a_script_cache_flush(
    broker: Broker, redis_client: redis.Redis
) -> None:
    register(broker)
    a, b, c = broker.enqueue_many([make_spec() for _ in range(3)])
    job = take(broker)
    flush_code(redis_client)
    done = broker.finish_and_dequeue(job, WORKER, True, "1", False, ALL_PRIORITIES)
    nxt = done.next
    assert done.outcome is not None and done.outcome.state is S.COMPLETED
    assert isinstance(nxt, Job) and nxt.id == b.id
    flush_code(redis_client)
    broker.ack(nxt, WORKER, "2")
    flush_code(redis_client)
    assert take(broker).id == c.id
    flush_code(redis_client)
    assert Inspector(broker).dlq_retry_all() == 0
    assert [broker.get(t.id).state for t in (a, b, c)] == [S.COMPLETED, S.COMPLETED, S.RUNNING]


def test_tasks_survive_a_redis_restart(redis_server: EmbeddedRedis) -> None:
    with open_broker(redis_server.url) as b:
        register(b)
        pending = b.enqueue(make_spec(priority=1))
        running = b.enqueue(make_spec(priority=3))
        job = take(b)
        assert job.id == running.id
        redis_server.restart()
        b.client.connection_pool.disconnect()
        register(b)
        assert b.ack(job, WORKER, "1").duplicate is False
        assert take(b).id == pending.id
        assert b.get(running.id).state is S.COMPLETED


class ServerWithoutFunctions(EmbeddedRedis):
    """A real server that answers FUNCTION and FCALL with 'unknown command', as Redis 6.2
    (and managed services that rename them) do."""

    def _command(self, binary: str) -> list[str]:
        return [*super()._command(binary), "--rename-command", "FUNCTION", "",
                "--rename-command", "FCALL", ""]


def test_without_functions_the_scripts_run_with_evalsha(tmp_path: Path) -> None:
    with ServerWithoutFunctions(tmp_path, persistence=False) as server, \
            open_broker(server.url) as b:
        register(b)
        first, second = b.enqueue_many([make_spec(), make_spec()])
        job = take(b)
        done = b.finish_and_dequeue(job, WORKER, True, '"ok"', False, ALL_PRIORITIES)
        assert b.scripts.functions is False
        assert done.outcome is not None and done.outcome.state is S.COMPLETED
        assert isinstance(done.next, Job) and done.next.id == second.id
        b.client.script_flush()
        b.ack(done.next, WORKER, '"ok"')
        assert [b.get(t.id).state for t in (first, second)] == [S.COMPLETED, S.COMPLETED]
