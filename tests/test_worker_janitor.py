"""The janitor keeps the dead-letter queue bounded: DLQ_MAX_ENTRIES and DLQ_MAX_AGE delete
the oldest entries and their task records, counted in taskqueue_dlq_trimmed_total."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis

from tasks_app.connection import get_broker
from tasks_app.core.broker import Broker
from tasks_app.core.inspect import Inspector
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import WORKER, dead_letter, open_broker, take
from tests.procs import WorkerPool, wait_for
from tests.test_metrics import scrape, value
from workers_app.runtime.janitor import Janitor


@pytest.fixture
def bounded(redis_server: EmbeddedRedis) -> Iterator[Any]:
    """Open a broker with the given DLQ bounds (closed after the test)."""
    with ExitStack() as stack:
        yield lambda **bounds: stack.enter_context(open_broker(redis_server.url, **bounds))


def dlq_ids(broker: Broker) -> list[str]:
    """Task ids in the dead-letter queue, oldest first."""
    return [e.task_id for e in reversed(Inspector(broker).dlq_page(limit=1000))]


def records(broker: Broker, client: redis.Redis, ids: list[str]) -> list[bool]:
    """Whether each task's record is still in Redis."""
    return [bool(client.exists(broker.keys.task(i))) for i in ids]


def test_entries_beyond_max_entries_go_oldest_first_with_their_records(
    bounded: Any, redis_client: redis.Redis
) -> None:
    broker = bounded(dlq_max_entries=3, dlq_max_age=None)
    ids = dead_letter(broker, 5)
    assert Janitor(broker).trim() == 2
    assert dlq_ids(broker) == ids[2:]
    assert records(broker, redis_client, ids) == [False, False, True, True, True]
    assert Janitor(broker).trim() == 0


def test_entries_older_than_max_age_go_with_their_records(
    bounded: Any, redis_client: redis.Redis
) -> None:
    broker = bounded(dlq_max_entries=None, dlq_max_age=0.4)
    old = dead_letter(broker, 3)
    time.sleep(0.5)
    new = dead_letter(broker, 2, worker_id="worker-2")
    assert Janitor(broker).trim() == 3
    assert dlq_ids(broker) == new
    assert records(broker, redis_client, old + new) == [False] * 3 + [True] * 2


def test_one_call_deletes_at_most_its_batch(bounded: Any) -> None:
    broker = bounded(dlq_max_entries=1, dlq_max_age=None)
    ids = dead_letter(broker, 6)
    assert broker.trim_dlq(batch=2) == (2, 0)
    assert dlq_ids(broker) == ids[2:]
    assert Janitor(broker).trim() == 3
    assert dlq_ids(broker) == ids[5:]


def test_no_bounds_keep_everything(bounded: Any) -> None:
    broker = bounded(dlq_max_entries=None, dlq_max_age=None)
    ids = dead_letter(broker, 4)
    assert Janitor(broker).trim() == 0
    assert dlq_ids(broker) == ids


def test_a_task_retried_and_dead_again_counts_from_its_new_death(
    bounded: Any, redis_client: redis.Redis
) -> None:
    broker = bounded(dlq_max_entries=2, dlq_max_age=None)
    first, second, third = dead_letter(broker, 3)
    Inspector(broker).dlq_retry(first)
    job = take(broker)
    broker.fail(job, WORKER, "again")
    assert Janitor(broker).trim() == 1
    assert dlq_ids(broker) == [third, first]
    assert records(broker, redis_client, [first, second, third]) == [True, False, True]


def test_trimmed_entries_are_counted_by_reason_in_the_metrics(bounded: Any) -> None:
    broker = bounded(dlq_max_entries=2, dlq_max_age=None)
    dead_letter(broker, 5)
    Janitor(broker).run_once()
    aged = bounded(dlq_max_entries=None, dlq_max_age=0.001)
    time.sleep(0.01)
    Janitor(aged).run_once()
    types, samples = scrape()
    assert types["taskqueue_dlq_trimmed"] == "counter"
    assert value(samples, "taskqueue_dlq_trimmed_total", reason="max_entries", queue="default") == 3
    assert value(samples, "taskqueue_dlq_trimmed_total", reason="max_age", queue="default") == 2
    assert value(samples, "taskqueue_dlq_size") == 0


def test_a_worker_trims_when_it_starts(tmp_path: Path, inspector: Inspector) -> None:
    ids = dead_letter(get_broker(), 5)
    with WorkerPool(tmp_path) as pool:
        pool.start(env={"TASKQUEUE_DLQ_MAX_ENTRIES": "2"}, inspector=inspector)
        wait_for(lambda: inspector.dlq_size() == 2, timeout=10, message="a trimmed DLQ")
    assert [e.task_id for e in reversed(inspector.dlq_page())] == ids[3:]
