"""/metrics: the reference's six metrics and the additions, read from Redis at scrape time."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from tasks_app import producer
from tasks_app.connection import get_broker
from tasks_app.core.inspect import Inspector
from tests.procs import WorkerPool, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape() -> tuple[dict[str, str], Samples]:
    """(metric family -> type, (sample name, labels) -> value) of one scrape."""
    reply = Client(HTTP_HOST="localhost").get("/metrics")
    assert reply.status_code == 200
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.content.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_reference_metrics_are_there_with_their_types_and_labels() -> None:
    producer.enqueue("echo", {}, priority="critical")
    types, samples = scrape()
    assert types["taskqueue_tasks_submitted"] == "counter"
    assert types["taskqueue_tasks_completed"] == "counter"
    assert types["taskqueue_task_duration_seconds"] == "histogram"
    assert types["taskqueue_queue_depth"] == "gauge"
    assert types["taskqueue_active_workers"] == "gauge"
    assert types["taskqueue_dlq_size"] == "gauge"
    assert value(samples, "taskqueue_tasks_submitted_total", type="echo", priority="critical",
                 queue="default") == 1
    for name in ("critical", "high", "normal", "low"):
        expected = 1 if name == "critical" else 0
        assert value(samples, "taskqueue_queue_depth", priority=name) == expected
    assert ("taskqueue_active_workers", ()) in samples
    assert ("taskqueue_dlq_size", ()) in samples
    assert types["taskqueue_task_queue_wait_seconds"] == "histogram"
    assert types["taskqueue_oldest_pending_age_seconds"] == "gauge"
    assert types["taskqueue_worker_utilization"] == "gauge"
    assert types["taskqueue_task_retries"] == "counter"
    assert any(name.startswith("django_http_requests") for name in types)


def test_counts_move_by_exactly_what_two_worker_processes_did(tmp_path: Path) -> None:
    _, before = scrape()
    inspector = Inspector(get_broker())
    with WorkerPool(tmp_path) as pool:
        workers = [pool.start(inspector=inspector, name=f"m{i}") for i in range(2)]
        producer.enqueue_many([{"type": "sleep", "payload": {"seconds": 0.01}, "priority": 2}
                               for i in range(40)])
        producer.enqueue_many([{"type": "fail", "payload": {"permanent": True}}
                               for _ in range(5)])
        producer.enqueue_many([{"type": "fail", "payload": {"fail_times": 1}, "max_retries": 2}
                               for _ in range(3)])
        wait_for(lambda: sum(inspector.queue_depths().values()) == 0
                 and sum(s.scheduled for s in inspector.queue_stats()) == 0
                 and inspector.running_count() == 0, timeout=30)
        wait_for(lambda: sum(w.processed + w.failed for w in inspector.workers()) == 51,
                 timeout=5)
        per_worker = {w.id: w.processed + w.failed for w in inspector.workers()}
        _, during = scrape()
    assert all(per_worker.get(w.id, 0) > 0 for w in workers), per_worker
    assert value(during, "taskqueue_active_workers") == 2
    _, after = scrape()

    def moved(name: str, **labels: str) -> float:
        labels["queue"] = "default"
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("taskqueue_tasks_submitted_total", type="sleep", priority="high") == 40
    assert moved("taskqueue_tasks_submitted_total", type="fail", priority="low") == 8
    assert moved("taskqueue_tasks_completed_total", type="sleep", status="success") == 40
    assert moved("taskqueue_tasks_completed_total", type="fail", status="failed") == 5
    assert moved("taskqueue_tasks_completed_total", type="fail", status="success") == 3
    assert moved("taskqueue_task_retries_total", type="fail") == 3
    assert moved("taskqueue_task_duration_seconds_count", type="sleep") == 40
    assert moved("taskqueue_task_duration_seconds_count", type="fail") == 11
    assert moved("taskqueue_task_queue_wait_seconds_count", priority="high") == 40
    assert value(after, "taskqueue_queue_depth", priority="high") == 0


def test_figures_survive_a_new_web_process_because_they_live_in_redis() -> None:
    producer.enqueue("echo", {})
    _, first = scrape()
    from tasks_app.connection import reset_broker

    reset_broker()
    _, second = scrape()
    labels = {"type": "echo", "priority": "low", "queue": "default"}
    assert value(second, "taskqueue_tasks_submitted_total", **labels) == \
        value(first, "taskqueue_tasks_submitted_total", **labels) == 1


def test_counters_and_gauges_are_kept_per_named_queue(tmp_path: Path) -> None:
    producer.enqueue_many([{"type": "echo", "queue": "emails", "priority": "high"}] * 3)
    producer.enqueue("echo", {})
    producer.enqueue("echo", {}, queue="reports", delay=60)
    producer.inspector().pause_named_queue("reports")
    _, samples = scrape()
    assert value(samples, "taskqueue_tasks_submitted_total", type="echo", priority="high",
                 queue="emails") == 3
    assert value(samples, "taskqueue_tasks_submitted_total", type="echo", priority="low",
                 queue="default") == 1
    assert value(samples, "taskqueue_queue_depth", priority="high") == 3  # the sum, as before
    assert value(samples, "taskqueue_named_queue_depth", queue="emails", priority="high") == 3
    assert ("taskqueue_named_queue_depth", (("priority", "low"), ("queue", "emails"))) in samples
    assert value(samples, "taskqueue_named_queue_depth", queue="default", priority="low") == 1
    assert value(samples, "taskqueue_named_queue_scheduled", queue="reports") == 1
    assert value(samples, "taskqueue_named_queue_paused", queue="reports") == 1
    assert ("taskqueue_named_queue_paused", (("queue", "emails"),)) in samples
    assert value(samples, "taskqueue_named_queue_paused", queue="emails") == 0
    assert value(samples, "taskqueue_named_queue_dlq_size", queue="emails") == 0
    inspector = Inspector(get_broker())
    with WorkerPool(tmp_path) as pool:
        pool.start("--queues", "emails", inspector=inspector)
        wait_for(lambda: sum(inspector.named_queues()[1].depths.values()) == 0, timeout=10)
        wait_for(lambda: inspector.running_count() == 0, timeout=5)
    _, after = scrape()
    assert value(after, "taskqueue_tasks_completed_total", type="echo", status="success",
                 queue="emails") == 3
    assert value(after, "taskqueue_task_duration_seconds_count", type="echo",
                 queue="emails") == 3
    assert value(after, "taskqueue_tasks_completed_total", type="echo", status="success",
                 queue="default") == 0


def test_redis_away_is_a_scrape_with_redis_up_zero() -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": "redis://127.0.0.1:1/0"}):
        types, samples = scrape()
    assert value(samples, "taskqueue_redis_up") == 0
    assert "taskqueue_queue_depth" not in types


@pytest.mark.parametrize(("header", "status"), [
    (None, 401), ("Bearer wrong-token-x", 401), ("Bearer s3cret-metrics", 200),
])
def test_metrics_can_require_a_bearer_token(header: str | None, status: int) -> None:
    headers = {"Authorization": header} if header else {}
    with override_settings(TASKQUEUE={"METRICS_TOKEN": "s3cret-metrics"}):
        reply = Client(HTTP_HOST="localhost").get("/metrics", headers=headers)
    assert reply.status_code == status
    if status == 401:
        assert reply.json()["error"] == "Unauthorized"
        assert reply["WWW-Authenticate"].startswith("Bearer")
