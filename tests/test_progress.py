"""Progress from running tasks: ctx.progress() is fenced, validated, throttled, shown in the
task's representation and sent as task.progress events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tasks_app.core import progress
from tasks_app.core.broker import Broker
from tasks_app.core.errors import StaleLease
from tasks_app.core.events import expand
from tasks_app.core.inspect import Inspector
from tasks_app.core.registry import HandlerRegistry, TaskContext
from tasks_app.core.task import Lease
from tasks_app.live.groups import group_channel
from tests.api_support import call, create
from tests.conftest import EmbeddedRedis
from tests.factories import make_spec, open_broker, register, take
from tests.procs import WorkerPool, wait_for, wait_for_state
from workers_app.runtime.executor import Executor


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    with open_broker(redis_server.url, events_channel=group_channel()) as b:
        yield b


def published(pubsub: Any, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    while (message := pubsub.get_message(timeout=0.05)) is not None:
        if message["type"] == "message":
            seen.extend(expand(json.loads(message["data"])))
    return seen


def test_progress_is_visible_over_rest_while_the_task_runs_and_sent_as_events(
        pool: WorkerPool, inspector: Inspector, redis_client: redis.Redis) -> None:
    events = redis_client.pubsub()
    events.subscribe(group_channel())
    made = create(type="steps", payload={"steps": 8, "interval": 0.3})
    pool.start(inspector=inspector)

    def running_with_progress() -> dict[str, Any] | None:
        body = call("GET", f"/api/v1/tasks/{made['id']}").body
        progress_now = body.get("progress")
        if body["state"] == "running" and progress_now and 0 < progress_now["done"] < 8:
            return dict(body)
        return None

    seen_running = wait_for(running_with_progress, timeout=15)
    shown = seen_running["progress"]
    assert shown["total"] == 8
    assert shown["message"] == f"step {shown['done']} of 8"
    assert shown["updated_at"].endswith("Z")
    done = wait_for_state(made["id"], "completed", timeout=15)
    assert done.progress is not None and done.progress["done"] == 8
    seen: list[dict[str, Any]] = []
    wait_for(lambda: any(e["type"] == "task.completed" for e in published(events, seen)), 5)
    mine = [e for e in seen if e["data"].get("task_id") == made["id"]]
    kinds = [e["type"] for e in mine]
    reports = [e["data"] for e in mine if e["type"] == "task.progress"]
    assert reports[-1] == {**reports[-1], "done": 8, "total": 8, "message": "step 8 of 8",
                           "queue": "default", "type": "steps"}
    assert [r["done"] for r in reports] == sorted(r["done"] for r in reports)
    assert kinds.index("task.completed") > max(i for i, k in enumerate(kinds)
                                               if k == "task.progress")
    events.close()


def test_a_fast_loop_is_coalesced_and_its_last_report_still_arrives(
        pool: WorkerPool, inspector: Inspector, redis_client: redis.Redis) -> None:
    events = redis_client.pubsub()
    events.subscribe(group_channel())
    made = create(type="steps", payload={"steps": 200, "interval": 0.005})
    pool.start(inspector=inspector)
    wait_for_state(made["id"], "completed", timeout=15)
    seen: list[dict[str, Any]] = []
    wait_for(lambda: any(e["type"] == "task.completed" for e in published(events, seen)), 5)
    reports = [e["data"]["done"] for e in seen if e["type"] == "task.progress"
               and e["data"]["task_id"] == made["id"]]
    # 200 reports in about a second: a handful written, the last one among them
    assert 2 <= len(reports) <= 12, reports
    assert reports[-1] == 200
    events.close()


def test_a_report_under_a_lost_lease_is_refused(broker: Broker) -> None:
    task_id = broker.enqueue(make_spec()).id
    register(broker)
    job = take(broker)
    assert broker.progress(job, 1, 4, "one") > 0
    with pytest.raises(StaleLease):
        broker.progress(Lease(job.id, job.fence + "0"), 2, 4, "stale fence")
    broker.requeue(job.id, "w1", job.fence)  # back in line under a new fence
    with pytest.raises(StaleLease):
        broker.progress(job, 3, 4, "after the lease was lost")
    assert broker.get(task_id).progress is None  # a new attempt starts without any


def test_ctx_progress_raises_once_the_lease_is_lost(broker: Broker) -> None:
    broker.enqueue(make_spec())
    register(broker)
    job = take(broker)
    reporter = progress.Reporter(lambda d, t, m: broker.progress(job, d, t, m), interval=0)
    ctx = TaskContext(job.id, job.type, job.attempt, job.max_retries, job.priority, {}, reporter)
    assert ctx.progress(1, 2) is True
    broker.requeue(job.id, "w1", job.fence)
    with pytest.raises(StaleLease):
        ctx.progress(2, 2)


def test_an_async_handler_reports_progress(broker: Broker) -> None:
    task_id = broker.enqueue(make_spec("counting")).id
    register(broker)
    job = take(broker)
    registry = HandlerRegistry()

    async def counting(payload: dict[str, Any], ctx: TaskContext) -> str:
        for i in range(1, 4):
            await asyncio.sleep(0)
            ctx.progress(i, 3, f"at {i}")
        return "ok"

    registry.register("counting", counting)
    executor = Executor(registry, progress=lambda j: progress.Reporter(
        lambda d, t, m: broker.progress(j, d, t, m)))
    assert executor.run(job).ok
    shown = broker.get(task_id).to_dict()["progress"]
    assert {k: shown[k] for k in ("done", "total", "message")} == {
        "done": 3, "total": 3, "message": "at 3"}  # the throttled last report was flushed


def test_messages_are_bounded_and_cleaned() -> None:
    assert progress.clean_message("ok\n\x1b[31mred\u202e!") == "ok[31mred!"
    assert len(progress.clean_message("x" * 1000)) == progress.MAX_MESSAGE
    with pytest.raises(TypeError):
        progress.clean_message(b"bytes")


@pytest.mark.parametrize(("done", "total"), [
    (-1, None), (float("nan"), None), (float("inf"), None), (True, None), ("3", None),
    (5, 4), (1, -1), (10**16, None)])
def test_bad_numbers_are_refused(done: Any, total: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        progress.validate(done, total)


def test_reports_inside_the_interval_are_kept_until_the_next_write() -> None:
    now = [0.0]
    written: list[Any] = []
    reporter = progress.Reporter(lambda d, t, m: written.append(d), interval=0.25,
                                 clock=lambda: now[0])
    for i in range(5):
        reporter.report(i)
        now[0] += 0.1
    assert written == [0, 3]  # at 0.0 and at 0.3 (1, 2 were replaced)
    reporter.flush()
    assert written == [0, 3, 4]
