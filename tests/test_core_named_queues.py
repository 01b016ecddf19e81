"""Named queues and shards in the core: placement, lookup by id, serving order, pause,
the figures summed over queues, and the upgrade from the single-queue layout."""

from __future__ import annotations

import collections
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from tasks_app.core.broker import EMPTY, Broker, Ended
from tasks_app.core.errors import QueueFull, QueueNotFound, TaskNotFound, ValidationError
from tasks_app.core.inspect import Inspector
from tasks_app.core.keys import Keys, shard_ref, shard_tag
from tasks_app.core.queues import Serving
from tasks_app.core.states import TaskState
from tasks_app.core.task import Job, TaskSpec
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import WORKER, make_spec, open_broker, register
from tests.procs import WorkerPool, wait_for_state


def in_queue(queue: str, **kwargs: object) -> TaskSpec:
    return replace(make_spec(**kwargs), queue=queue)  # type: ignore[arg-type]


@pytest.fixture
def broker(redis_server: EmbeddedRedis) -> Iterator[Broker]:
    with open_broker(redis_server.url, queues=(("sharded", 4),)) as b:
        yield b


def test_each_queue_and_shard_has_its_own_hash_tag() -> None:
    tags = {shard_tag("ns", "default", 0), shard_tag("ns", "emails", 0),
            shard_tag("ns", "emails", 1), shard_tag("ns", "default", 1)}
    assert len(tags) == 4
    # The default queue's first shard keeps the layout from before named queues.
    assert Keys("ns").pending == "tq:{ns}:pending"
    assert Keys("ns", "emails").pending == "tq:{ns:emails}:pending"
    assert Keys("ns", "emails", 2).task("x") == "tq:{ns:emails:2}:task:x"
    with pytest.raises(ValueError):
        Keys("ns", "bad name")


def test_a_task_lives_in_its_queue_and_is_found_by_id_alone(broker: Broker,
                                                            redis_client: redis.Redis) -> None:
    task = broker.enqueue(in_queue("emails"))
    assert task.queue == "emails"
    assert redis_client.exists(f"tq:{{default:emails}}:task:{task.id}") == 1
    assert redis_client.exists(f"tq:{{default}}:task:{task.id}") == 0
    got = broker.get(task.id)
    assert (got.id, got.queue, got.to_dict()["queue"]) == (task.id, "emails", "emails")
    cancelled = broker.cancel(task.id)
    assert (cancelled.state, cancelled.queue) == (TaskState.CANCELLED, "emails")
    with pytest.raises(TaskNotFound):
        broker.cancel(make_spec().id)


def test_one_call_creates_in_one_queue_only(broker: Broker) -> None:
    with pytest.raises(ValidationError) as caught:
        broker.enqueue_many([in_queue("a"), in_queue("a"), in_queue("b")])
    assert caught.value.field == "tasks[2].queue"
    assert Inspector(broker).queue_depths()["low"] == 0


def test_strict_order_serves_a_later_queue_only_when_earlier_ones_are_empty(
        broker: Broker) -> None:
    broker.enqueue_many([in_queue("bulk", payload={"i": i}) for i in range(3)])
    broker.enqueue_many([in_queue("urgent", payload={"i": i}) for i in range(2)])
    broker.serving = Serving.parse("urgent,bulk")
    register(broker)
    got = []
    while isinstance(jobs := broker.take(WORKER, (0, 1, 2, 3), 1), list):
        got.append((jobs[0].queue, jobs[0].payload["i"]))
    assert got == [("urgent", 0), ("urgent", 1), ("bulk", 0), ("bulk", 1), ("bulk", 2)]


def test_priority_stays_strict_within_a_queue_not_across_queues(broker: Broker) -> None:
    broker.enqueue(in_queue("first", priority=0))
    critical = broker.enqueue(in_queue("second", priority=3))
    broker.serving = Serving.parse("first,second")
    register(broker)
    jobs = broker.take(WORKER, (0, 1, 2, 3), 2)
    assert isinstance(jobs, list) and [j.queue for j in jobs] == ["first"]
    nxt = broker.take(WORKER, (0, 1, 2, 3), 1)
    assert isinstance(nxt, list) and nxt[0].id == critical.id


def test_weights_serve_every_queue_in_proportion(broker: Broker) -> None:
    broker.serving = Serving.parse("heavy:3,light:1")
    counts = collections.Counter(broker.serving.order()[0] for _ in range(4000))
    assert 0.70 < counts["heavy"] / 4000 < 0.80
    broker.enqueue_many([in_queue("heavy") for _ in range(200)])
    broker.enqueue_many([in_queue("light") for _ in range(200)])
    register(broker)
    first = [broker.take(WORKER, (0, 1, 2, 3), 1) for _ in range(100)]
    taken = collections.Counter(j[0].queue for j in first if isinstance(j, list))
    assert taken["light"] > 5, taken  # no starvation
    assert taken["heavy"] > taken["light"]


def test_a_worker_finishing_in_one_queue_takes_next_from_another(broker: Broker) -> None:
    a = broker.enqueue(in_queue("a"))
    b = broker.enqueue(in_queue("b"))
    broker.serving = Serving.parse("a,b")
    register(broker)
    jobs = broker.take(WORKER, (0, 1, 2, 3), 1)
    assert isinstance(jobs, list) and jobs[0].id == a.id
    outcomes, nxt = broker.finish(WORKER, [Ended(jobs[0], "ok", "1")], 1, (0, 1, 2, 3))
    assert outcomes[0] is not None and outcomes[0].state == TaskState.COMPLETED
    assert isinstance(nxt, list) and nxt[0].id == b.id and nxt[0].queue == "b"
    outcomes, nxt = broker.finish(WORKER, [Ended(nxt[0], "ok", "2")], 1, (0, 1, 2, 3))
    assert nxt == EMPTY and broker.get(b.id).state == TaskState.COMPLETED


def test_shards_spread_a_queue_and_workers_take_from_all(broker: Broker,
                                                         redis_client: redis.Redis) -> None:
    tasks = broker.enqueue_many([in_queue("sharded") for _ in range(1)])
    for _ in range(79):
        tasks += [broker.enqueue(in_queue("sharded"))]
    # broker.shard names each shard's keys as placed (salted on a Cluster)
    per_shard = [redis_client.zcard(broker.shard(shard_ref("sharded", i)).pending)
                 for i in range(4)]
    assert sum(per_shard) == 80 and all(n > 5 for n in per_shard), per_shard
    broker.serving = Serving.parse("sharded")
    register(broker)
    got: list[Job] = []
    while isinstance(jobs := broker.take(WORKER, (0, 1, 2, 3), 16), list):
        got += jobs
    assert sorted(j.id for j in got) == sorted(t.id for t in tasks)
    assert {j.shard for j in got} == {0, 1, 2, 3}
    ended = [Ended(j, "ok", "null") for j in got]
    outcomes, _ = broker.finish(WORKER, ended, 0, (0, 1, 2, 3))
    assert all(o is not None and o.state == TaskState.COMPLETED for o in outcomes)
    assert Inspector(broker).totals()["completed"] == 80


def test_an_idempotent_repeat_finds_its_shard(broker: Broker) -> None:
    first = broker.submit([in_queue("sharded")], idempotency_key="k1", scope="alice")
    for _ in range(10):
        again = broker.submit([in_queue("sharded")], idempotency_key="k1", scope="alice")
        assert again.duplicate and [t.id for t in again.tasks] == [first.tasks[0].id]


def test_pausing_a_queue_stops_only_that_queue(broker: Broker) -> None:
    inspector = Inspector(broker)
    broker.enqueue(in_queue("a"))
    b = broker.enqueue(in_queue("b"))
    broker.serving = Serving.parse("a,b")
    register(broker)
    inspector.pause_named_queue("a")
    assert [q.paused for q in inspector.named_queues() if q.name == "a"] == [True]
    jobs = broker.take(WORKER, (0, 1, 2, 3), 5)
    assert isinstance(jobs, list) and [j.id for j in jobs] == [b.id]
    assert broker.take(WORKER, (0, 1, 2, 3), 5) == EMPTY
    inspector.resume_named_queue("a")
    jobs = broker.take(WORKER, (0, 1, 2, 3), 5)
    assert isinstance(jobs, list) and [j.queue for j in jobs] == ["a"]
    with pytest.raises(QueueNotFound):
        inspector.pause_named_queue("never-used")


def test_figures_sum_over_queues_and_are_given_per_queue(broker: Broker) -> None:
    broker.enqueue(make_spec(priority=2))
    broker.enqueue(in_queue("x", priority=2))
    broker.enqueue(in_queue("x", priority=0))
    broker.enqueue(in_queue("sharded", priority=3))
    inspector = Inspector(broker)
    assert inspector.queue_depths() == {"critical": 1, "high": 2, "normal": 0, "low": 1}
    named = {q.name: q for q in inspector.named_queues()}
    assert set(named) == {"default", "x", "sharded"}
    assert named["x"].depths == {"critical": 0, "high": 1, "normal": 0, "low": 1}
    assert (named["sharded"].shards, named["default"].shards) == (4, 1)
    snapshot = inspector.queue_snapshot()
    assert snapshot.totals()["queued"] == 4 and snapshot.counters["submitted"] == 4
    by_queue = inspector.metrics_by_queue()
    assert set(by_queue) == {"default", "x", "sharded"}


def test_the_dead_letter_queue_spans_queues(broker: Broker) -> None:
    broker.serving = Serving.parse("a,b")
    register(broker)
    ids = []
    for queue in ("a", "b", "a"):
        task = broker.enqueue(in_queue(queue, max_retries=0))
        jobs = broker.take(WORKER, (0, 1, 2, 3), 1)
        assert isinstance(jobs, list)
        broker.fail(jobs[0], WORKER, "boom")
        ids.append(task.id)
    inspector = Inspector(broker)
    assert inspector.dlq_size() == 3
    page = inspector.dlq_page(limit=10)
    assert [e.task_id for e in page] == ids[::-1]  # newest first, across queues
    assert [e.task.queue for e in page if e.task] == ["a", "b", "a"]
    assert inspector.dlq_page(limit=2)[-1].task_id == ids[1]
    assert [e.task_id for e in inspector.dlq_page(limit=10, before=page[1].message_id)] \
        == [ids[0]]
    inspector.dlq_retry(ids[1])
    assert broker.get(ids[1]).state == TaskState.PENDING
    assert inspector.dlq_delete([ids[0], ids[2]]) == 2
    assert inspector.dlq_size() == 0


def test_a_worker_process_serves_the_queues_it_is_given(pool: WorkerPool,
                                                        inspector: Inspector) -> None:
    from tasks_app import producer

    broker = producer.inspector().broker
    mine = broker.enqueue(in_queue("mine", task_type="echo"))
    other = broker.enqueue(in_queue("other", task_type="echo"))
    worker = pool.start("--queues", "mine")
    assert wait_for_state(mine.id, "completed", timeout=20).queue == "mine"
    worker.wait_registered(inspector)
    assert broker.get(other.id).state == TaskState.PENDING
    assert "queues mine" in worker.log()


def test_an_unknown_queue_on_the_command_line_is_a_startup_error() -> None:
    proc = subprocess.run([sys.executable, "manage.py", "runworker_tq", "--queues",
                           "default,no-such-queue"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert "unknown queue 'no-such-queue'" in proc.stderr
    bad = subprocess.run([sys.executable, "manage.py", "runworker_tq", "--queues", "a b"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "invalid queue name 'a b'" in bad.stderr


def test_an_upgrade_from_the_single_queue_layout_keeps_every_task(
        broker: Broker, redis_client: redis.Redis) -> None:
    """The default queue's first shard keeps the names of the single-queue layout, so the
    tasks a running installation holds (here written as the release before named queues
    wrote them, still in its per-priority pending sets) are served, found and counted."""
    from tests.factories import old_release_enqueue

    old = old_release_enqueue(redis_client, 2, 3) + old_release_enqueue(redis_client, 0, 2)
    assert redis_client.exists("tq:{default}:pending:2") == 1
    new = broker.enqueue(in_queue("emails"))
    broker.serving = Serving.parse("default,emails")
    register(broker)  # the first heartbeat folds the old sets into the queue's pending set
    assert Inspector(broker).queue_depths() == {"critical": 0, "high": 3, "normal": 0,
                                                "low": 3}
    assert {broker.get(t).queue for t in old} == {"default"}
    got = []
    while isinstance(jobs := broker.take(WORKER, (0, 1, 2, 3), 4), list):
        got += jobs
    assert [j.id for j in got] == old + [new.id]


def test_a_paused_priority_stays_paused_in_a_queue_that_appears_later(broker: Broker) -> None:
    Inspector(broker).pause_queue(3)
    critical = broker.enqueue(in_queue("late", priority=3))
    low = broker.enqueue(in_queue("late", priority=0))
    broker.serving = Serving.parse("late")
    register(broker)
    jobs = broker.take(WORKER, (0, 1, 2, 3), 5)
    assert isinstance(jobs, list) and [j.id for j in jobs] == [low.id]
    Inspector(broker).resume_queue(3)
    jobs = broker.take(WORKER, (0, 1, 2, 3), 5)
    assert isinstance(jobs, list) and [j.id for j in jobs] == [critical.id]


def test_concurrent_first_creates_never_pass_the_queue_bounds(redis_server: EmbeddedRedis
                                                               ) -> None:
    """The registry's check and write are one script: twelve callers racing to create new
    queues (each from a process view of its own) get exactly the places the bounds allow:
    at most 2 per caller, and 5 in all where the three callers would want 6."""
    from concurrent.futures import ThreadPoolExecutor

    def attempt(args: tuple[str, str]) -> bool:
        scope, queue = args
        with open_broker(redis_server.url, max_queues=5, max_queues_per_client=2) as b:
            try:
                b.submit([in_queue(queue)], scope=scope)
                return True
            except ValidationError:
                return False

    names = [(f"caller-{i % 3}", f"race-{i}") for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        made = list(pool.map(attempt, names))
    with open_broker(redis_server.url) as b:
        registered = set(b.queues(fresh=True)) - {"default", "sharded"}
    assert sum(made) == len(registered) == 5  # MAX_QUEUES
    per_caller = collections.Counter(scope for (scope, _), ok in zip(names, made, strict=True)
                                     if ok)
    assert sorted(per_caller.values()) == [1, 2, 2]  # none past MAX_QUEUES_PER_CLIENT


def test_a_call_larger_than_max_pending_leaves_no_new_queue_behind(redis_server: EmbeddedRedis
                                                                   ) -> None:
    """A create the script would refuse as a whole is refused before its new queue is
    registered: the caller is charged nothing and no empty queue is left."""
    with open_broker(redis_server.url, max_pending=2, max_queues_per_client=1) as b:
        with pytest.raises(QueueFull):
            b.submit([in_queue("big") for _ in range(3)], scope="caller")
        assert "big" not in b.queues(fresh=True)
        assert [t.queue for t in b.submit([in_queue("small")], scope="caller").tasks] == [
            "small"]


def test_a_workflow_whose_first_steps_pass_max_pending_leaves_no_new_queue_behind(
        redis_server: EmbeddedRedis) -> None:
    from tasks_app.core.workflows import Workflows, compile_plan

    with open_broker(redis_server.url, max_pending=2) as b:
        tree = {"group": [{"type": "echo"}] * 3}
        plan = compile_plan(tree, lambda fields, _: in_queue("wide", task_type="echo"), "wide")
        with pytest.raises(QueueFull):
            Workflows(b).submit(plan, "caller")
        assert "wide" not in b.queues(fresh=True)
