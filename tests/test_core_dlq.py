"""Dead-letter queue administration through the Inspector."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tasks_app.core.broker import Broker, new_task_id
from tasks_app.core.errors import NotInDeadLetterQueue
from tasks_app.core.inspect import DLQ_BATCH, Inspector
from tasks_app.core.states import TaskState
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import dead_letter, depths, make_spec, open_broker, seed, take, zero_depths

S = TaskState


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    """A broker with default tunables."""
    with open_broker(redis_server.url) as b:
        yield b


@pytest.fixture
def inspector(broker: Broker) -> Inspector:
    """The inspector over the same broker."""
    return Inspector(broker)


def test_dlq_page_is_newest_first_and_paginates(broker: Broker, inspector: Inspector) -> None:
    ids = dead_letter(broker, 7)
    newest_first = list(reversed(ids))
    seen: list[str] = []
    before: str | None = None
    pages = []
    while page := inspector.dlq_page(limit=3, before=before):
        pages.append(len(page))
        seen += [e.task_id for e in page]
        before = page[-1].message_id
    assert pages == [3, 3, 1]
    assert seen == newest_first
    assert inspector.dlq_size() == 7


def test_dlq_entry_describes_the_dead_task(broker: Broker, inspector: Inspector) -> None:
    [task_id] = dead_letter(broker, 1, error="it broke")
    [entry] = inspector.dlq_page()
    task = broker.get(task_id)
    assert (entry.task_id, entry.reason, entry.error) == (
        task_id, "max retries exceeded", "it broke")
    assert entry.task == task
    assert entry.message_id.startswith(f"{entry.added_at}-")
    assert task.state is S.DEAD_LETTER and task.dlq_reason == "max retries exceeded"


def test_dlq_size_is_the_true_total_beyond_one_page(broker: Broker, inspector: Inspector) -> None:
    dead_letter(broker, 12)
    assert len(inspector.dlq_page(limit=5)) == 5
    assert inspector.dlq_size() == 12


def test_dlq_retry_requeues_one_and_refuses_others(broker: Broker, inspector: Inspector) -> None:
    first, second = dead_letter(broker, 2)
    inspector.dlq_retry(first)
    assert [e.task_id for e in inspector.dlq_page()] == [second]
    assert broker.get(first).state is S.PENDING
    for not_dead in (first, new_task_id(), "not-a-uuid"):
        with pytest.raises(NotInDeadLetterQueue):
            inspector.dlq_retry(not_dead)
    assert inspector.dlq_size() == 1
    assert depths(broker) == zero_depths(low=1)


@pytest.mark.parametrize("seed_name", ["pending", "running", "retrying", "completed", "failed"])
def test_dlq_retry_of_a_task_in_another_state_is_refused(
    broker: Broker, inspector: Inspector, seed_name: str
) -> None:
    task = seed(broker, seed_name)
    before = broker.get(task.id)
    with pytest.raises(NotInDeadLetterQueue):
        inspector.dlq_retry(task.id)
    assert broker.get(task.id) == before


def test_dlq_retry_many_counts_only_dead_tasks(broker: Broker, inspector: Inspector) -> None:
    dead = dead_letter(broker, 3)
    alive = broker.enqueue(make_spec()).id
    assert inspector.dlq_retry_many([*dead[:2], alive, new_task_id()]) == 2
    assert inspector.dlq_retry_many([]) == 0
    assert inspector.dlq_size() == 1


def test_dlq_retry_all_requeues_every_task_past_one_batch(
    broker: Broker, inspector: Inspector, redis_client: redis.Redis
) -> None:
    count = DLQ_BATCH + 20
    ids = dead_letter(broker, count)
    assert inspector.dlq_retry_all() == count
    assert inspector.dlq_size() == 0 and inspector.dlq_page() == []
    assert depths(broker) == zero_depths(low=count)
    revived = broker.get(ids[-1])
    assert (revived.state, revived.attempts, revived.error) == (S.PENDING, 0, None)
    assert redis_client.pttl(broker.keys.task(ids[0])) == -1
    assert inspector.dlq_retry_all() == 0


def test_dlq_delete_removes_entries_and_records(
    broker: Broker, inspector: Inspector, redis_client: redis.Redis
) -> None:
    a, b, c = dead_letter(broker, 3)
    alive = broker.enqueue(make_spec()).id
    assert inspector.dlq_delete([a, c, alive, new_task_id()]) == 2
    assert [e.task_id for e in inspector.dlq_page()] == [b]
    assert not redis_client.exists(broker.keys.task(a), broker.keys.task(c))
    assert broker.get(alive).state is S.PENDING
    assert inspector.dlq_delete([]) == 0


def test_dlq_clear_removes_every_entry_and_record(
    broker: Broker, inspector: Inspector, redis_client: redis.Redis
) -> None:
    count = DLQ_BATCH + 20
    ids = dead_letter(broker, count)
    alive = broker.enqueue(make_spec()).id
    assert inspector.dlq_clear() == count
    assert inspector.dlq_size() == 0
    assert not any(redis_client.exists(broker.keys.task(i)) for i in ids)
    assert broker.get(alive).state is S.PENDING
    assert inspector.dlq_clear() == 0


def test_retried_task_that_dies_again_has_one_entry(broker: Broker, inspector: Inspector) -> None:
    [task_id] = dead_letter(broker, 1)
    inspector.dlq_retry(task_id)
    job = take(broker)
    broker.fail(job, "worker-1", "again")
    assert [e.task_id for e in inspector.dlq_page()] == [task_id]
    assert inspector.dlq_page()[0].error == "again"
    assert inspector.dlq_size() == 1
