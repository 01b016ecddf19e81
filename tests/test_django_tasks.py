"""Django's Tasks framework on taskqueue: the TASKS backend with real workers and Redis,
and enqueueing after a database transaction commits."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from django.db import transaction
from django.test import override_settings

from taskqueue_project import demo_tasks
from tasks_app import producer
from tasks_app.core.errors import NonRetryableError, UnknownTaskType, ValidationError
from tasks_app.core.inspect import Inspector
from tasks_app.core.registry import TaskContext as QueueContext
from tasks_app.core.registry import registry
from tasks_app.tasks_framework.backend import PRIORITY_BANDS, TaskQueueBackend, queue_priority
from tasks_app.tasks_framework.compat import (
    InvalidTask,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task,
    task_backends,
    task_enqueued,
)
from tests.api_support import call
from tests.procs import WorkerPool, wait_for, wait_for_state

BACKEND = "tasks_app.tasks_framework.TaskQueueBackend"
MODULE = "taskqueue_project.demo_tasks"


def finished(result: TaskResult, timeout: float = 15.0) -> TaskResult:
    """Refresh a TaskResult until it is SUCCESSFUL or FAILED."""

    def done() -> bool:
        result.refresh()
        return result.is_finished

    wait_for(done, timeout, interval=0.05, message=f"Django task {result.id} to finish")
    return result


def task_keys(client: redis.Redis) -> list[Any]:
    """Task records in Redis."""
    return list(client.scan_iter("tq:*:task:*"))


@pytest.fixture
def worker(pool: WorkerPool, inspector: Inspector) -> Any:
    """One real runworker_tq process, registered."""
    return pool.start(inspector=inspector)


# -- running on real workers ------------------------------------------------------------


def test_enqueued_task_runs_on_a_worker_and_its_result_is_readable(worker: Any) -> None:
    result = demo_tasks.add.enqueue(2, 3)

    assert result.status == TaskResultStatus.READY
    assert result.enqueued_at is not None and result.backend == "default"
    done = finished(result)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == 5
    assert done.worker_ids == [worker.id] and done.attempts == 1
    assert done.errors == []
    assert done.started_at is not None and done.finished_at is not None
    assert done.enqueued_at <= done.started_at <= done.finished_at  # type: ignore[operator]
    fresh = demo_tasks.add.get_result(result.id)
    assert (fresh.status, fresh.return_value, fresh.args) == (
        TaskResultStatus.SUCCESSFUL, 5, [2, 3])


def test_django_task_is_an_ordinary_task_in_the_rest_api(worker: Any) -> None:
    result = demo_tasks.shout.enqueue("hi", times=2)
    finished(result)

    reply = call("GET", f"/api/v1/tasks/{result.id}")

    assert reply.status == 200
    body = reply.body
    assert body["type"] == f"{MODULE}.shout"
    assert body["payload"] == {"args": ["hi"], "kwargs": {"times": 2}}
    assert body["state"] == "completed" and body["result"] == {"text": "HIHI"}
    assert body["priority"] == "high"  # Django priority 50
    assert body["metadata"] == {"django": {"backend": "default", "queue_name": "default",
                                           "priority": 50}}
    assert body["worker_id"] == worker.id


def test_failure_is_retried_then_dead_lettered_and_reported_failed(
        pool: WorkerPool, inspector: Inspector) -> None:
    options = {"MAX_RETRIES": 1}
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "OPTIONS": options}}):
        result = demo_tasks.fail.enqueue("boom")
    pool.start(inspector=inspector)

    wait_for_state(result.id, "dead_letter", 15)
    done = demo_tasks.fail.get_result(result.id)
    assert done.status == TaskResultStatus.FAILED and done.attempts == 2
    [error] = done.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "boom" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        _ = done.return_value
    assert [entry.task_id for entry in inspector.dlq_find(limit=10).entries] == [result.id]


def test_takes_context_gets_the_running_attempt(worker: Any) -> None:
    result = demo_tasks.whoami.enqueue()

    done = finished(result)

    assert done.return_value == {"id": result.id, "attempt": 1, "status": "RUNNING",
                                 "worker_ids": [worker.id], "queue_name": "default",
                                 "priority": 0, "args": []}


def test_takes_context_can_report_progress(worker: Any) -> None:
    result = demo_tasks.counted.enqueue(steps=5)

    done = finished(result)

    assert done.return_value == 5
    shown = producer.get(result.id).to_dict()["progress"]
    assert (shown["done"], shown["total"], shown["message"]) == (5, 5, "step 5")


def test_context_attempt_counts_retries(worker: Any) -> None:
    result = demo_tasks.flaky.enqueue(fail_times=1)

    done = finished(result)

    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == {"attempt": 2} and done.attempts == 2


def test_async_task_function_runs(worker: Any) -> None:
    done = finished(demo_tasks.async_add.enqueue(1.5, 2))

    assert done.return_value == 3.5


def test_aenqueue_and_aget_result(worker: Any) -> None:
    async def scenario() -> TaskResult:
        result = await demo_tasks.async_add.aenqueue(20, 22)
        for _ in range(300):
            fetched = await demo_tasks.async_add.aget_result(result.id)
            if fetched.is_finished:
                return fetched
            await asyncio.sleep(0.05)
        raise AssertionError("task did not finish")

    done = asyncio.run(scenario())

    assert done.status == TaskResultStatus.SUCCESSFUL and done.return_value == 42


def test_run_after_waits_until_due(worker: Any) -> None:
    due = datetime.now(UTC) + timedelta(seconds=1.5)

    result = demo_tasks.add.using(run_after=due).enqueue(1, 1)

    assert producer.get(result.id).state.value == "scheduled"
    time.sleep(0.5)
    assert demo_tasks.add.get_result(result.id).status == TaskResultStatus.READY
    done = finished(result)
    assert done.return_value == 2
    assert done.started_at is not None and done.started_at >= due - timedelta(milliseconds=5)
    assert done.task.run_after is not None
    assert abs((done.task.run_after - due).total_seconds()) < 0.01


def test_higher_django_priority_runs_first(pool: WorkerPool, inspector: Inspector) -> None:
    results = {p: demo_tasks.add.using(priority=p).enqueue(p, 0) for p in (-100, 0, 100)}
    assert {p: producer.get(r.id).priority.label for p, r in results.items()} == {
        -100: "low", 0: "normal", 100: "critical"}

    pool.start(inspector=inspector)

    done = {p: finished(r) for p, r in results.items()}
    order = sorted(done, key=lambda p: done[p].started_at)  # type: ignore[arg-type, return-value]
    assert order == [100, 0, -100]
    assert done[100].task.priority == 100


# -- enqueue-time validation, no worker needed -------------------------------------------


def test_priority_mapping_is_monotonic_and_covers_django_range() -> None:
    levels = [queue_priority(p) for p in range(-100, 101)]

    assert levels == sorted(levels)
    assert set(levels) == {0, 1, 2, 3}
    assert (queue_priority(-100), queue_priority(-34), queue_priority(-33)) == (0, 0, 1)
    assert (queue_priority(0), queue_priority(33), queue_priority(34)) == (1, 1, 2)
    assert (queue_priority(66), queue_priority(67), queue_priority(100)) == (2, 3, 3)
    assert PRIORITY_BANDS[0][0] == -100 and PRIORITY_BANDS[-1][1] == 100


def test_priority_outside_django_range_is_refused() -> None:
    with pytest.raises(InvalidTask):
        demo_tasks.add.using(priority=101)


def test_queue_names_are_validated_and_recorded() -> None:
    for bad in ("-emails", "e mails", "q" * 65):
        with pytest.raises(InvalidTask, match="not a valid queue name"):
            demo_tasks.add.using(queue_name=bad)
    result = demo_tasks.add.using(queue_name="reports").enqueue(1, 2)
    assert producer.get(result.id).queue == "reports"

    queues = ["default", "emails"]
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": queues}}):
        with pytest.raises(InvalidTask, match="reports"):
            demo_tasks.add.using(queue_name="reports")
        result = demo_tasks.add.using(queue_name="emails").enqueue(1, 2)
        fetched = demo_tasks.add.get_result(result.id)

    assert fetched.task.queue_name == "emails"
    assert producer.get(result.id).metadata["django"]["queue_name"] == "emails"
    assert producer.get(result.id).queue == "emails"


def test_a_worker_serving_a_queue_runs_the_django_tasks_routed_there(
        pool: WorkerPool, inspector: Inspector) -> None:
    routed = demo_tasks.add.using(queue_name="emails").enqueue(2, 3)
    elsewhere = demo_tasks.add.enqueue(1, 1)
    pool.start("--queues", "emails", inspector=inspector)
    assert finished(routed).return_value == 5
    time.sleep(0.5)
    assert producer.get(elsewhere.id).state.value == "pending"


def test_enqueue_sends_task_enqueued() -> None:
    seen: list[TaskResult] = []

    def receiver(sender: type, task_result: TaskResult, **kwargs: Any) -> None:
        seen.append(task_result)

    task_enqueued.connect(receiver)
    try:
        result = demo_tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)

    assert [r.id for r in seen] == [result.id] and seen[0].enqueued_at is not None


def test_capability_flags() -> None:
    backend = task_backends["default"]

    assert isinstance(backend, TaskQueueBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


def _not_exported(a: int) -> int:
    return a


renamed = task(_not_exported)


def test_functions_a_worker_cannot_import_are_refused(redis_client: redis.Redis) -> None:
    def local(a: int) -> int:
        return a

    with pytest.raises(InvalidTask, match="module level"):
        task(local)
    with pytest.raises(InvalidTask, match="importable"):
        renamed.enqueue(1)
    assert task_keys(redis_client) == []


@pytest.mark.parametrize("args", [(object(),), ({1: "a"},), (math.nan,), ({"s": {1, 2}},)],
                         ids=["object", "int-key", "nan", "set"])
def test_arguments_must_round_trip_through_json(args: tuple[Any, ...],
                                                redis_client: redis.Redis) -> None:
    with pytest.raises((TypeError, ValueError)):
        cast(Any, demo_tasks.add).enqueue(*args, 1)

    assert task_keys(redis_client) == []


def test_unknown_ids_have_no_result() -> None:
    plain = producer.enqueue("echo", {"x": 1})

    for result_id in ("nope", "00000000-0000-4000-8000-000000000000", plain.id):
        with pytest.raises(TaskResultDoesNotExist):
            task_backends["default"].get_result(result_id)


def test_registry_resolves_only_django_tasks() -> None:
    assert f"{MODULE}.add" in registry
    for name in ("os.system", f"{MODULE}.asyncio", "no.such.module.func", "os"):
        assert name not in registry
        with pytest.raises(UnknownTaskType):
            registry.get(name)


def test_rest_api_accepts_django_task_types_and_refuses_other_paths(worker: Any) -> None:
    ok = call("POST", "/api/v1/tasks", {"type": f"{MODULE}.add",
                                        "payload": {"args": [1, 2], "kwargs": {}}})
    malformed = call("POST", "/api/v1/tasks", {"type": f"{MODULE}.add",
                                               "payload": {"args": "12"}})
    bad = call("POST", "/api/v1/tasks", {"type": "os.system", "payload": {"args": ["ls"]}})

    assert ok.status == 201 and malformed.status == 201
    assert finished(task_backends["default"].get_result(ok.body["id"])).return_value == 3
    failed = wait_for_state(malformed.body["id"], "failed", 10)  # for good: no retries
    assert failed.attempts == 1 and "payload" in (failed.error or "")
    assert bad.status == 400


# -- enqueue after commit ----------------------------------------------------------------


@pytest.fixture
def on_commit_backend() -> Iterator[None]:
    """The default backend with ENQUEUE_ON_COMMIT."""
    options = {"ENQUEUE_ON_COMMIT": True}
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "OPTIONS": options}}):
        yield


@pytest.mark.django_db(transaction=True)
def test_producer_enqueue_on_commit_runs_after_commit(worker: Any,
                                                      redis_client: redis.Redis) -> None:
    with transaction.atomic():
        task_id = producer.enqueue_on_commit("echo", {"n": 1})
        assert task_keys(redis_client) == []

    assert wait_for_state(task_id, "completed", 10).result == {"n": 1}


@pytest.mark.django_db(transaction=True)
def test_producer_enqueue_on_commit_rollback_enqueues_nothing(redis_client: redis.Redis) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        producer.enqueue_on_commit("echo", {"n": 1})
        raise RuntimeError("roll back")

    assert task_keys(redis_client) == []
    assert sum(producer.inspector().queue_depths().values()) == 0


@pytest.mark.django_db(transaction=True)
def test_producer_enqueue_on_commit_validates_at_once() -> None:
    with pytest.raises(ValidationError), transaction.atomic():
        producer.enqueue_on_commit("no-such-type", {})


@pytest.mark.django_db(transaction=True)
def test_backend_enqueue_on_commit(on_commit_backend: None, worker: Any,
                                   redis_client: redis.Redis) -> None:
    with transaction.atomic():
        result = demo_tasks.add.enqueue(4, 5)
        with pytest.raises(TaskResultDoesNotExist):
            demo_tasks.add.get_result(result.id)

    assert finished(result).return_value == 9

    with pytest.raises(RuntimeError), transaction.atomic():
        demo_tasks.add.enqueue(1, 1)
        raise RuntimeError("roll back")
    assert len(task_keys(redis_client)) == 1


@pytest.mark.django_db(transaction=True)
def test_on_commit_per_call_through_a_backend_alias(worker: Any,
                                                    redis_client: redis.Redis) -> None:
    aliases = {"default": {"BACKEND": BACKEND},
               "on_commit": {"BACKEND": BACKEND, "OPTIONS": {"ENQUEUE_ON_COMMIT": True,
                                                             "DATABASE": "default"}}}
    with override_settings(TASKS=aliases):
        with transaction.atomic():
            later = demo_tasks.add.using(backend="on_commit").enqueue(1, 2)
            now = demo_tasks.add.enqueue(3, 4)
            assert [k.rsplit(":", 1)[1] for k in task_keys(redis_client)] == [now.id]

        assert finished(later).return_value == 3 and finished(now).return_value == 7
        assert later.backend == "on_commit"


def test_worker_knows_a_site_with_only_django_tasks_has_work_to_run(settings: Any) -> None:
    """runworker_tq warns "no task handlers" only when neither handlers nor a TASKS alias
    on taskqueue exist."""
    from tasks_app.discovery import django_tasks_configured

    assert django_tasks_configured()
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    assert not django_tasks_configured()


def test_sites_configured_with_the_first_backend_path_keep_working(settings: Any) -> None:
    """``tasks_app.backends.TaskQueueBackend`` (the path sites were first told to use) is
    the same backend as ``tasks_app.tasks_framework.TaskQueueBackend``."""
    from django.utils.module_loading import import_string

    from tasks_app.discovery import django_tasks_configured

    assert import_string("tasks_app.backends.TaskQueueBackend") is TaskQueueBackend
    assert import_string(BACKEND) is TaskQueueBackend
    settings.TASKS = {"default": {"BACKEND": "tasks_app.backends.TaskQueueBackend"}}
    assert django_tasks_configured()


# -- a task sent to a taskqueue alias that is not its default backend -------------------


def _dummy_backend_path() -> str:
    """The Tasks framework's DummyBackend, from Django 6 or the backport."""
    import tasks_app.tasks_framework.compat as framework

    package = framework.Task.__module__.rsplit(".", 1)[0]
    return f"{package}.backends.dummy.DummyBackend"


def test_a_task_sent_to_a_taskqueue_alias_runs_and_has_a_result_when_its_default_is_another(
        redis_client: redis.Redis) -> None:
    """``@task`` on a site whose default backend is another one, enqueued with
    ``.using(backend="queue")``: the worker must find the function and get_result must work."""
    aliases = {"default": {"BACKEND": _dummy_backend_path()}, "queue": {"BACKEND": BACKEND}}
    path = f"{MODULE}.add"
    registry._resolved.pop(path, None)  # resolved under the project's settings before
    try:
        with override_settings(TASKS=aliases):
            result = demo_tasks.add.using(backend="queue").enqueue(2, 5)
            assert producer.get(result.id).type == path
            fetched = task_backends["queue"].get_result(result.id)
            assert fetched.task.backend == "queue" and fetched.backend == "queue"
            assert demo_tasks.add.using(backend="queue").get_result(result.id).args == [2, 5]
            handler = registry.get(path)  # what runworker_tq calls for this task type
            ctx = QueueContext(task_id=result.id, type=path, attempt=1, max_retries=3,
                               priority=1)
            assert handler.func({"args": [2, 5], "kwargs": {}}, ctx) == 7
    finally:
        registry._resolved.pop(path, None)


def test_no_taskqueue_alias_means_no_django_task_is_resolved() -> None:
    """A site whose TASKS run nothing on taskqueue must not let workers call @task functions."""
    path = f"{MODULE}.add"
    registry._resolved.pop(path, None)
    try:
        with override_settings(TASKS={"default": {"BACKEND": _dummy_backend_path()}}):
            assert path not in registry
    finally:
        registry._resolved.pop(path, None)


# -- signals around async task functions -------------------------------------------------


def test_async_task_sends_task_finished_outside_the_event_loop(redis_client: redis.Redis) -> None:
    """An async @task's task_finished must reach sync receivers that are not async-safe (the
    ORM) and async receivers, as Django sends them from sync code; from inside the worker's
    event loop they raised (SynchronousOnlyOperation, or AsyncToSync in a running loop) and
    the successful task was failed and run again."""
    from django.utils.asyncio import async_unsafe

    from tasks_app.tasks_framework.compat import task_finished

    @async_unsafe
    def orm_like() -> None:
        """Stands for a database query in a receiver."""

    seen: list[str] = []

    def sync_receiver(sender: type, task_result: TaskResult, **kwargs: Any) -> None:
        orm_like()
        seen.append(f"sync {task_result.status}")

    async def async_receiver(sender: type, task_result: TaskResult, **kwargs: Any) -> None:
        seen.append(f"async {task_result.status}")

    result = demo_tasks.async_add.enqueue(1, 2)
    handler = registry.get(f"{MODULE}.async_add")
    ctx = QueueContext(task_id=result.id, type=f"{MODULE}.async_add", attempt=1,
                       max_retries=3, priority=1)
    task_finished.connect(sync_receiver)
    task_finished.connect(async_receiver)
    try:
        value = asyncio.run(handler.func({"args": [1, 2], "kwargs": {}}, ctx))
    finally:
        task_finished.disconnect(sync_receiver)
        task_finished.disconnect(async_receiver)

    assert value == 3
    assert sorted(seen) == ["async SUCCESSFUL", "sync SUCCESSFUL"]


@task
def give_up(reason: str) -> None:
    """Fails for good on its first attempt (taskqueue's non-retryable error)."""
    raise NonRetryableError(reason)


def _finished_seen(func_path: str, result_id: str, args: list[Any], attempt: int,
                   max_retries: int) -> tuple[list[TaskResult], BaseException | None]:
    """Run one attempt of a Django task in-process, as a worker does; task_finished's
    TaskResults and the exception the attempt raised."""
    from tasks_app.tasks_framework.compat import task_finished

    seen: list[TaskResult] = []

    def receiver(sender: type, task_result: TaskResult, **kwargs: Any) -> None:
        seen.append(task_result)

    ctx = QueueContext(task_id=result_id, type=func_path, attempt=attempt,
                       max_retries=max_retries, priority=1)
    task_finished.connect(receiver)
    try:
        registry.get(func_path).func({"args": args, "kwargs": {}}, ctx)
    except Exception as exc:
        return seen, exc
    finally:
        task_finished.disconnect(receiver)
    return seen, None


def test_task_finished_on_the_last_failure_carries_that_error(
        redis_client: redis.Redis) -> None:
    """Like Django's own backends: a failed TaskResult in task_finished has the exception
    that ended it in ``errors`` (it had none, or the previous attempt's)."""
    result = demo_tasks.fail.enqueue("boom")

    seen, raised = _finished_seen(f"{MODULE}.fail", result.id, ["boom"], attempt=4,
                                  max_retries=3)

    assert raised is not None
    [finished_result] = seen
    assert finished_result.status == TaskResultStatus.FAILED
    assert finished_result.errors[-1].exception_class_path == "builtins.ValueError"
    assert "boom" in finished_result.errors[-1].traceback


def test_a_non_retryable_failure_sends_task_finished(redis_client: redis.Redis) -> None:
    """NonRetryableError ends the task on its first attempt: listeners must hear of it."""
    path = f"{__name__}.give_up"
    result = give_up.enqueue("no point")

    seen, raised = _finished_seen(path, result.id, ["no point"], attempt=1, max_retries=3)

    assert isinstance(raised, NonRetryableError)
    assert [r.status for r in seen] == [TaskResultStatus.FAILED]
    assert seen[0].errors[-1].exception_class_path == (
        "tasks_app.core.errors.NonRetryableError")


def test_a_failing_signal_receiver_does_not_fail_or_rerun_a_task(
        redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    """A receiver's bug must not change the task's outcome: raising from task_finished
    after the function succeeded failed the attempt, so the function ran again."""
    from tasks_app.tasks_framework.compat import task_finished, task_started

    calls: list[str] = []

    def broken(sender: type, task_result: TaskResult, **kwargs: Any) -> None:
        calls.append(str(task_result.status))
        raise RuntimeError("receiver bug")

    result = demo_tasks.add.enqueue(2, 2)
    ctx = QueueContext(task_id=result.id, type=f"{MODULE}.add", attempt=1, max_retries=3,
                       priority=1)
    task_started.connect(broken)
    task_finished.connect(broken)
    try:
        value = registry.get(f"{MODULE}.add").func({"args": [2, 2], "kwargs": {}}, ctx)
    finally:
        task_started.disconnect(broken)
        task_finished.disconnect(broken)

    assert value == 4
    assert len(calls) == 2 and calls[1] == "SUCCESSFUL"  # started (pending here), finished
    logged = [r for r in caplog.records if "raised for task" in r.getMessage()]
    assert [r.getMessage().split(" receiver")[0] for r in logged] == [
        "task_started", "task_finished"]
    assert all(r.exc_info and "receiver bug" in str(r.exc_info[1]) for r in logged)


def test_a_django_task_created_over_rest_belongs_to_a_taskqueue_alias() -> None:
    """A Django task created by type and payload (REST API, producer) has no alias in its
    metadata; its result must name the alias that ran it, not a default backend that is
    another one (whose class would also be the sender of its signals)."""
    aliases = {"default": {"BACKEND": _dummy_backend_path()}, "queue": {"BACKEND": BACKEND}}
    path = f"{MODULE}.add"
    registry._resolved.pop(path, None)
    try:
        with override_settings(TASKS=aliases):
            created = producer.enqueue(path, {"args": [1, 2], "kwargs": {}})
            fetched = task_backends["queue"].get_result(created.id)
            assert (fetched.backend, fetched.task.backend) == ("queue", "queue")
            assert isinstance(fetched.task.get_backend(), TaskQueueBackend)
    finally:
        registry._resolved.pop(path, None)


@pytest.mark.django_db(transaction=True)
def test_on_commit_task_enqueued_comes_after_the_commit_with_enqueued_at(
        on_commit_backend: None) -> None:
    """As without ENQUEUE_ON_COMMIT: task_enqueued's TaskResult (the one enqueue returned)
    has ``enqueued_at``, the time Redis created the task, once it is created."""
    seen: list[TaskResult] = []

    def receiver(sender: type, task_result: TaskResult, **kwargs: Any) -> None:
        seen.append(task_result)

    task_enqueued.connect(receiver)
    try:
        with transaction.atomic():
            result = demo_tasks.add.enqueue(1, 2)
            assert seen == [] and result.enqueued_at is None
    finally:
        task_enqueued.disconnect(receiver)

    assert [r.id for r in seen] == [result.id]
    created = producer.get(result.id).created_at
    assert result.enqueued_at is not None and seen[0].enqueued_at == result.enqueued_at
    assert result.enqueued_at == datetime.fromtimestamp(created / 1000, tz=UTC)


# -- task_finished when the function never returned (timeouts, dead workers) -------------


def signals_heard(log: Path, result_id: str) -> list[dict[str, Any]]:
    """What the worker's task_started / task_finished receivers got for one task."""
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [line for line in lines if line["id"] == result_id]


@pytest.fixture
def recorded_worker(pool: WorkerPool, inspector: Inspector, tmp_path: Path
                    ) -> tuple[Any, Path]:
    """A real worker whose Django signal receivers write to a file."""
    log = tmp_path / "signals.jsonl"
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings_signals", "TQ_SIGNAL_LOG": str(log)}
    return pool.start(inspector=inspector, env=env), log


def test_a_task_killed_at_its_timeout_sends_task_finished_failed_once(
        recorded_worker: tuple[Any, Path]) -> None:
    _, log = recorded_worker
    options = {"TIMEOUT": 1, "MAX_RETRIES": 1}
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "OPTIONS": options}}):
        result = demo_tasks.nap.enqueue(30)

    wait_for_state(result.id, "dead_letter", 20)
    finished_signals = wait_for(
        lambda: [s for s in signals_heard(log, result.id) if s["signal"] == "task_finished"],
        5, message="task_finished from the worker")
    time.sleep(0.5)  # a second (wrong) task_finished would have arrived by now

    heard = signals_heard(log, result.id)
    assert [s["signal"] for s in heard] == ["task_started", "task_started", "task_finished"]
    [ended] = finished_signals
    assert ended["status"] == str(TaskResultStatus.FAILED) and ended["finished"]
    assert ended["errors"] == ["timed out after 1 s"]
    assert demo_tasks.nap.get_result(result.id).status == TaskResultStatus.FAILED


def test_ordinary_endings_still_send_task_finished_exactly_once(
        recorded_worker: tuple[Any, Path]) -> None:
    _, log = recorded_worker
    with override_settings(TASKS={"default": {"BACKEND": BACKEND,
                                              "OPTIONS": {"MAX_RETRIES": 0}}}):
        ok, failed = demo_tasks.add.enqueue(1, 2), demo_tasks.fail.enqueue("boom")

    for result, state in ((ok, "completed"), (failed, "dead_letter")):
        wait_for_state(result.id, state, 15)
    time.sleep(0.5)
    for result, status in ((ok, TaskResultStatus.SUCCESSFUL), (failed, TaskResultStatus.FAILED)):
        heard = signals_heard(log, result.id)
        assert [s["signal"] for s in heard] == ["task_started", "task_finished"], heard
        assert heard[-1]["status"] == str(status)


def test_a_task_whose_slot_dies_sends_task_finished_from_the_supervisor(
        recorded_worker: tuple[Any, Path]) -> None:
    worker, log = recorded_worker
    with override_settings(TASKS={"default": {"BACKEND": BACKEND,
                                              "OPTIONS": {"MAX_RETRIES": 0}}}):
        result = demo_tasks.nap.enqueue(30)
    # Started in the slot, not only taken in Redis: a slot killed before its dequeue reply
    # arrives puts nothing on record, and the heartbeat puts the task back uncounted.
    wait_for(lambda: signals_heard(log, result.id), 10, message="task_started in the slot")
    [slot] = worker.slot_pids()
    os.kill(slot, signal.SIGKILL)

    wait_for_state(result.id, "dead_letter", 10)
    [ended] = wait_for(
        lambda: [s for s in signals_heard(log, result.id) if s["signal"] == "task_finished"],
        5, message="task_finished from the supervisor")
    assert ended["status"] == str(TaskResultStatus.FAILED) and ended["finished"]
    assert ended["pid"] == worker.pid  # the supervisor, which saw its slot die
    assert ended["errors"] and "lost" in ended["errors"][0]


def test_a_django_task_step_reads_parent_results_from_its_context(worker: Any) -> None:
    flow = producer.group(producer.step(f"{MODULE}.add", {"args": [1, 2]}),
                          producer.step(f"{MODULE}.add", {"args": [3, 4]}),
                          then=producer.step(f"{MODULE}.add_parents", {"kwargs": {"extra": 1}}))
    deadline = time.monotonic() + 30
    while producer.get_workflow(flow.id).state != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert producer.get_workflow(flow.id).state == "completed"
    assert producer.get(flow.steps[2].task_id).result == 11  # 1 + (1 + 2) + (3 + 4)
