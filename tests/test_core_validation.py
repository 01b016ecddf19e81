"""Task validation (build_spec, producer.enqueue) and the Task API representation."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from tasks_app import producer
from tasks_app.core.broker import Broker, new_task_id
from tasks_app.core.errors import ValidationError
from tasks_app.core.registry import registry
from tasks_app.core.states import Priority, TaskState
from tasks_app.core.task import (
    Job,
    Task,
    TaskSpec,
    ms_to_iso,
    quick_constructor,
    quick_spec,
    quick_task,
)
from tasks_app.core.validation import build_spec
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import WORKER, make_spec, open_broker, register, seed, take

S = TaskState

BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"type": None}, "type", "task type is required"),
    ({"type": ""}, "type", "non-empty"),
    ({"type": "   "}, "type", "non-empty"),
    ({"type": 7}, "type", "non-empty"),
    ({"type": "x"}, "type", "unknown task type 'x'"),
    ({"priority": 4}, "priority", "0..3"),
    ({"priority": -1}, "priority", "0..3"),
    ({"priority": "urgent"}, "priority", "0..3"),
    ({"priority": True}, "priority", "0..3"),
    ({"priority": 2.0}, "priority", "0..3"),
    ({"max_retries": -1}, "max_retries", "0 to 100"),
    ({"max_retries": 101}, "max_retries", "0 to 100"),
    ({"max_retries": "3"}, "max_retries", "0 to 100"),
    ({"max_retries": True}, "max_retries", "0 to 100"),
    ({"timeout": 0}, "timeout", "1 to 86400"),
    ({"timeout": 86401}, "timeout", "1 to 86400"),
    ({"timeout": 1.5}, "timeout", "1 to 86400"),
    ({"payload": [1, 2]}, "payload", "JSON object"),
    ({"payload": "text"}, "payload", "JSON object"),
    ({"metadata": ["tag"]}, "metadata", "JSON object"),
    ({"metadata": 3}, "metadata", "JSON object"),
    ({"scheduled_at": "tomorrow"}, "scheduled_at", "ISO-8601"),
    ({"scheduled_at": "2030-13-01T00:00:00Z"}, "scheduled_at", "ISO-8601"),
    ({"scheduled_at": 1_900_000_000}, "scheduled_at", "ISO-8601"),
    ({"delay": -1}, "delay", "seconds"),
    ({"delay": "5"}, "delay", "seconds"),
    ({"delay": math.nan}, "delay", "seconds"),
    ({"delay": math.inf}, "delay", "seconds"),
    ({"delay": 5, "scheduled_at": "2030-01-01T00:00:00Z"}, "delay", "not both"),
    ({"queue": ""}, "queue", "1 to 64 characters"),
    ({"queue": "-emails"}, "queue", "starting with a letter"),
    ({"queue": "e mails"}, "queue", "1 to 64 characters"),
    ({"queue": "q" * 65}, "queue", "1 to 64 characters"),
    ({"queue": 7}, "queue", "1 to 64 characters"),
]


def _build(**fields: Any) -> Any:
    return build_spec(registry, new_task_id(), **{"type": "echo", **fields})


@pytest.mark.parametrize(("fields", "field", "message"), BAD,
                         ids=[f"{f}={list(v.values())[0]!r}" for v, f, _ in BAD])
def test_build_spec_names_the_bad_field(fields: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _build(**fields)
    assert caught.value.field == field
    assert message in str(caught.value)


@pytest.mark.parametrize(("given", "stored"), [
    ("low", 0), ("normal", 1), ("high", 2), ("critical", 3), ("HIGH", 2),
    (0, 0), (3, 3), (None, 0),
])
def test_priority_by_number_or_name(given: Any, stored: int) -> None:
    assert _build(priority=given).priority == stored


@pytest.mark.parametrize(("given", "stored"), [
    (None, "default"), ("emails", "emails"), ("a.b-c_1", "a.b-c_1"), ("Q" * 64, "Q" * 64),
])
def test_queue_by_name(given: Any, stored: str) -> None:
    assert _build(queue=given).queue == stored


@pytest.mark.parametrize(("field", "value"), [
    ("max_retries", 0), ("max_retries", 100), ("timeout", 1), ("timeout", 86400),
    ("delay", 0), ("delay", 0.25),
])
def test_range_limits_are_accepted(field: str, value: int | float) -> None:
    _build(**{field: value})


def test_defaults_and_times() -> None:
    spec = build_spec(registry, "id-1", "echo", defaults=(2, 5, 60))
    assert (spec.priority, spec.max_retries, spec.timeout, spec.payload, spec.metadata) == (
        2, 5, 60, {}, {})
    assert _build(delay=1.5).delay_ms == 1500
    at = _build(scheduled_at="2030-01-01T00:00:00Z").scheduled_at_ms
    assert at == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert _build(scheduled_at="2030-01-01T02:00:00+02:00").scheduled_at_ms == at


@pytest.mark.parametrize("name", ["echo", "sleep", "fail", "email", "crash"])
def test_demo_handlers_are_registered(name: str) -> None:
    assert name in registry
    assert registry.get(name).name == name


@pytest.mark.parametrize(("task_type", "options", "field"), [
    ("", {}, "type"),
    ("nope", {}, "type"),
    ("echo", {"priority": 9}, "priority"),
    ("echo", {"max_retries": 500}, "max_retries"),
    ("echo", {"timeout": 0}, "timeout"),
    ("echo", {"metadata": "m"}, "metadata"),
    ("echo", {"scheduled_at": "soon"}, "scheduled_at"),
    ("echo", {"delay": 1, "scheduled_at": "2030-01-01T00:00:00Z"}, "delay"),
    ("echo", {"colour": "red"}, "colour"),
])
def test_refused_enqueue_changes_nothing_in_redis(
    redis_client: redis.Redis, task_type: str, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        producer.enqueue(task_type, {"a": 1}, **options)
    assert caught.value.field == field
    assert redis_client.keys("*") == []


def test_refused_payload_through_producer(redis_client: redis.Redis) -> None:
    with pytest.raises(ValidationError) as caught:
        producer.enqueue("echo", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert caught.value.field == "payload"
    assert redis_client.keys("*") == []


def test_producer_enqueue_stores_a_valid_task() -> None:
    task = producer.enqueue("email", {"to": "a@example.com", "subject": "Hi"}, priority="high",
                            max_retries=0, timeout=30, metadata={"k": "v"})
    stored = producer.get(task.id)
    assert (stored.type, stored.priority, stored.max_retries, stored.timeout) == (
        "email", 2, 0, 30)
    assert stored.payload == {"to": "a@example.com", "subject": "Hi"}
    assert stored.metadata == {"k": "v"} and stored.state is S.PENDING


def test_enqueue_many_with_one_bad_task_creates_none(redis_client: redis.Redis) -> None:
    with pytest.raises(ValidationError) as caught:
        producer.enqueue_many([{"type": "echo"}, {"type": "echo", "priority": "top"}])
    assert caught.value.field == "priority"
    assert redis_client.keys("*") == []


def test_enqueue_many_with_a_task_missing_its_type_is_a_validation_error(
    redis_client: redis.Redis,
) -> None:
    with pytest.raises(ValidationError) as caught:
        producer.enqueue_many([{"payload": {"a": 1}}])
    assert caught.value.field == "type"
    assert redis_client.keys("*") == []


# -- Task.to_dict -------------------------------------------------------------

OPTIONAL = ("result", "error", "worker_id", "started_at", "completed_at", "next_retry_at",
            "scheduled_at")
PRESENT = {
    "pending": set(),
    "scheduled": {"scheduled_at"},
    "running": {"worker_id", "started_at"},
    "completed": {"result", "worker_id", "started_at", "completed_at"},
    "retrying": {"error", "worker_id", "started_at", "next_retry_at"},
    "failed": {"error", "worker_id", "started_at", "completed_at"},
    "dead_letter": {"error", "worker_id", "started_at"},
}
TIMES = ("created_at", "updated_at", "started_at", "completed_at", "next_retry_at",
         "scheduled_at")


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    """A broker of its own with default tunables."""
    with open_broker(redis_server.url) as b:
        yield b


def _parse_iso(text: str) -> int:
    assert text.endswith("Z"), text
    stamp = datetime.fromisoformat(text.removesuffix("Z") + "+00:00")
    assert stamp.utcoffset() is not None and not stamp.utcoffset()
    return round(stamp.timestamp() * 1000)


@pytest.mark.parametrize("seed_name", sorted(PRESENT))
def test_to_dict_shows_the_fields_that_apply(broker: Broker, seed_name: str) -> None:
    task = broker.get(seed(broker, seed_name).id)
    out = task.to_dict()
    assert {k for k in OPTIONAL if k in out} == PRESENT[seed_name]
    assert out["state"] == seed_name
    assert out["priority"] == "low"
    for name in TIMES:
        if name in out:
            assert _parse_iso(out[name]) == getattr(task, name), name
    if seed_name == "completed":
        assert out["result"] == "done"
    if "error" in out:
        assert out["error"] == "boom"
    if "worker_id" in out:
        assert out["worker_id"] == WORKER


def test_to_dict_keeps_a_null_result_and_names_priorities(broker: Broker) -> None:
    register(broker)
    labels = {}
    for p, label in enumerate(("low", "normal", "high", "critical")):
        labels[broker.enqueue(make_spec(priority=p)).id] = label
    for task_id, label in labels.items():
        assert broker.get(task_id).to_dict()["priority"] == label
    job = take(broker)
    broker.ack(job, WORKER, "null")
    out = broker.get(job.id).to_dict()
    assert "result" in out and out["result"] is None


@pytest.mark.parametrize(("ms", "iso"), [
    (0, "1970-01-01T00:00:00.000Z"),
    (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
    (None, None),
])
def test_ms_to_iso_is_utc_with_z(ms: int | None, iso: str | None) -> None:
    assert ms_to_iso(ms) == iso


def test_the_quick_constructors_build_what_the_dataclasses_do() -> None:
    """The hot path builds tasks, specs and jobs without the frozen dataclasses' per-field
    __setattr__: the objects are equal to the ones __init__ builds, and just as frozen."""
    spec_fields: dict[str, Any] = {"id": "a", "type": "echo", "payload": {"x": 1}, "priority": 2,
                   "max_retries": 3, "timeout": 30, "metadata": {}, "scheduled_at_ms": None,
                   "delay_ms": 5, "queue": "q"}
    assert quick_spec(**spec_fields) == TaskSpec(**spec_fields)
    task_fields: dict[str, Any] = {
                   "id": "a", "type": "echo", "payload": {}, "priority": Priority.HIGH,
                   "state": TaskState.PENDING, "attempts": 0, "max_retries": 3, "timeout": 30,
                   "metadata": {}, "created_at": 1, "updated_at": 1, "owner": "me"}
    quick = quick_task(**task_fields)
    assert quick == Task(**task_fields)
    assert quick.to_dict() == Task(**task_fields).to_dict()
    job_fields: dict[str, Any] = {
                  "id": "a", "priority": 1, "fence": "f", "attempt": 1, "type": "echo",
                  "payload": {}, "metadata": {}, "max_retries": 3, "timeout": 30,
                  "queue_wait": 0.5, "started_at": 9}
    assert quick_constructor(Job)(**job_fields) == Job(**job_fields)
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.state = TaskState.RUNNING  # type: ignore[misc]
