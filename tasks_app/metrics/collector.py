"""Prometheus metrics: every figure is read from Redis at scrape time.

Counters and histograms come from the metrics hashes the Lua scripts update, one per
named queue (so they are cluster-wide and survive web server restarts); each of their
series carries a ``queue`` label.  Gauges come from the live queue state: the documented
ones sum over every queue, the ``named_queue_*`` ones are per queue.  Declared once, here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tasks_app.connection import get_broker
from tasks_app.core import metrics as core_metrics
from tasks_app.core.broker import redis_errors
from tasks_app.core.errors import BrokerUnavailable
from tasks_app.core.inspect import Inspector
from tasks_app.core.limits import TypeLimits
from tasks_app.core.schedules import Schedules
from tasks_app.core.states import Priority

PREFIX = "taskqueue"


class TaskQueueCollector(Collector):
    """Builds the taskqueue metric families from Redis on every scrape."""

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: registering must not read Redis."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """Yield every family; only ``taskqueue_redis_up 0`` while Redis is away."""
        up = GaugeMetricFamily(f"{PREFIX}_redis_up", "1 when Redis answered this scrape")
        try:
            with redis_errors():
                families = list(self._families())
        except BrokerUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        broker = get_broker()
        inspector = Inspector(broker)
        snap = by_queue(inspector.metrics_by_queue())
        yield from counters(snap)
        yield from histograms(snap)
        yield from queue_gauges(inspector)
        yield from named_queue_gauges(inspector)
        yield from worker_gauges(inspector)
        yield from type_limit_gauges(TypeLimits(broker))
        yield from schedule_metrics(snap, Schedules(broker).count())


def by_queue(raw: dict[str, dict[str, str]]) -> core_metrics.Snapshot:
    """Every queue's metrics hash parsed into one snapshot, the queue as the last label."""
    out = core_metrics.Snapshot()
    for queue, fields in raw.items():
        snap = core_metrics.parse(fields)
        for name, values in snap.counters.items():
            out.counters[name].update({(*k, queue): v for k, v in values.items()})
        for name, hists in snap.histograms.items():
            out.histograms[name].update({(*k, queue): h for k, h in hists.items()})
    return out


def _counter(name: str, doc: str, labels: list[str],
             values: dict[tuple[str, ...], int]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return family


def counters(snap: core_metrics.Snapshot) -> Iterator[Metric]:
    """Submitted, completed (by status), retried, cancelled and trimmed task counts."""
    c = snap.counters
    yield _counter("tasks_submitted", "Tasks submitted", ["type", "priority", "queue"],
                   c["submitted"])
    yield _counter("tasks_completed", "Tasks finished: status is success, failed (non-retryable "
                   "error) or dead_letter (retries exhausted)", ["type", "status", "queue"],
                   c["completed"])
    yield _counter("task_retries", "Failed attempts that were scheduled for a retry",
                   ["type", "queue"], c["retries"])
    yield _counter("tasks_cancelled", "Tasks cancelled before they ran", ["type", "queue"],
                   c["cancelled"])
    yield _counter("workflows", "Workflows (chains and groups) by state: created, completed, "
                   "failed, cancelled", ["state", "queue"], c["workflows"])
    yield _counter("type_throttled", "Takes that found a task's type at its concurrency or "
                   "rate limit (the task waited, parked)", ["type", "queue"], c["throttled"])
    yield _counter("dlq_trimmed", "Dead-letter entries deleted with their tasks by "
                   "DLQ_MAX_ENTRIES (reason max_entries) or DLQ_MAX_AGE (reason max_age)",
                   ["reason", "queue"], c["dlq_trimmed"])


def _histogram(name: str, doc: str, label: str,
               values: dict[tuple[str, ...], core_metrics.Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(f"{PREFIX}_{name}", doc, labels=[label, "queue"])
    for label_values, hist in sorted(values.items()):
        family.add_metric(list(label_values), hist.cumulative(), hist.sum)
    return family


def histograms(snap: core_metrics.Snapshot) -> Iterator[Metric]:
    """Handler run time per type; time waiting in queue (enqueue to start) per priority."""
    yield _histogram("task_duration_seconds", "Handler execution time of each attempt", "type",
                     snap.histograms["duration"])
    yield _histogram("task_queue_wait_seconds", "Time from becoming pending to starting",
                     "priority", snap.histograms["queue_wait"])


def queue_gauges(inspector: Inspector) -> Iterator[Metric]:
    """Depths, scheduled counts, oldest pending age, running tasks, DLQ size."""
    depth = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Pending tasks", labels=["priority"])
    scheduled = GaugeMetricFamily(f"{PREFIX}_queue_scheduled",
                                  "Scheduled and retrying tasks not yet due", labels=["priority"])
    for stats in inspector.queue_stats():
        depth.add_metric([stats.name], stats.depth)
        scheduled.add_metric([stats.name], stats.scheduled)
    yield depth
    yield scheduled
    oldest = GaugeMetricFamily(f"{PREFIX}_oldest_pending_age_seconds",
                               "Age of the oldest pending task (0 when none)",
                               labels=["priority"])
    now_us = time.time() * 1_000_000
    for priority, since in inspector.oldest_pending_us().items():
        age = 0.0 if since is None else max(0.0, (now_us - since) / 1_000_000)
        oldest.add_metric([Priority(priority).label], age)
    yield oldest
    yield GaugeMetricFamily(f"{PREFIX}_tasks_running", "Tasks running now",
                            value=inspector.running_count())
    yield GaugeMetricFamily(f"{PREFIX}_dlq_size", "Entries in the dead-letter queue",
                            value=inspector.dlq_size())


def named_queue_gauges(inspector: Inspector) -> Iterator[Metric]:
    """Each named queue's depths per priority, scheduled count, DLQ size and paused flag."""
    depth = GaugeMetricFamily(f"{PREFIX}_named_queue_depth", "Pending tasks of a named queue",
                              labels=["queue", "priority"])
    scheduled = GaugeMetricFamily(f"{PREFIX}_named_queue_scheduled",
                                  "Scheduled and retrying tasks of a named queue",
                                  labels=["queue"])
    dlq = GaugeMetricFamily(f"{PREFIX}_named_queue_dlq_size",
                            "Dead-letter entries of a named queue", labels=["queue"])
    paused = GaugeMetricFamily(f"{PREFIX}_named_queue_paused", "1 while a named queue is paused",
                               labels=["queue"])
    for queue in inspector.named_queues():
        for priority, n in queue.depths.items():
            depth.add_metric([queue.name, priority], n)
        scheduled.add_metric([queue.name], queue.scheduled)
        dlq.add_metric([queue.name], queue.dlq_size)
        paused.add_metric([queue.name], int(queue.paused))
    yield from (depth, scheduled, dlq, paused)


def type_limit_gauges(limits: TypeLimits) -> Iterator[Metric]:
    """Each limited type's running attempts and parked tasks."""
    running = GaugeMetricFamily(f"{PREFIX}_type_running",
                                "Attempts of a limited type running now", labels=["type"])
    parked = GaugeMetricFamily(f"{PREFIX}_type_parked",
                               "Pending tasks of a limited type waiting for its limit",
                               labels=["type"])
    for state in limits.all():
        running.add_metric([state.type], state.running)
        parked.add_metric([state.type], state.parked)
    yield from (running, parked)


def worker_gauges(inspector: Inspector) -> Iterator[Metric]:
    """Live workers, slots and their use."""
    workers = inspector.workers()
    yield GaugeMetricFamily(f"{PREFIX}_active_workers", "Live workers", value=len(workers))
    slots = sum(w.concurrency for w in workers)
    busy = sum(w.active_tasks for w in workers)
    yield GaugeMetricFamily(f"{PREFIX}_worker_slots", "Slots of all live workers", value=slots)
    yield GaugeMetricFamily(f"{PREFIX}_worker_utilization",
                            "Busy slots / all slots of live workers (0 when none)",
                            value=busy / slots if slots else 0.0)
    per_worker = GaugeMetricFamily(f"{PREFIX}_worker_busy_slots", "Busy slots per worker",
                                   labels=["worker"])
    for worker in workers:
        per_worker.add_metric([worker.id], worker.active_tasks)
    yield per_worker


def schedule_metrics(snap: core_metrics.Snapshot, count: int) -> Iterator[Metric]:
    """Periodic schedules: runs and missed ticks per schedule, tick lag, how many exist."""
    yield _counter("schedule_runs", "Tasks periodic schedules created, one per tick run",
                   ["schedule", "queue"], snap.counters["schedule_runs"])
    yield _counter("schedule_missed", "Ticks of periodic schedules skipped (catchup "
                   "'latest' or 'none', or beyond the cap of 'all')", ["schedule", "queue"],
                   snap.counters["schedule_missed"])
    yield _histogram("schedule_lag_seconds", "Creation of a schedule's task minus its tick",
                     "schedule", snap.histograms["schedule_lag"])
    yield GaugeMetricFamily(f"{PREFIX}_schedules", "Periodic schedules defined", value=count)


_collector: TaskQueueCollector | None = None


def register_collector() -> None:
    """Add the collector to prometheus_client's default registry (once per process)."""
    global _collector
    if _collector is None:
        from prometheus_client import REGISTRY

        _collector = TaskQueueCollector()
        REGISTRY.register(_collector)
