"""End to end with real ``runworker_tq`` processes: the lean hot path (prefetch, batched
outcomes, tallied metrics, worker-level leases, compact events, pause) keeps every promise
a user relies on: few Redis calls, strict priority, exact metrics, no task lost or completed
twice, the documented event fields."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import websockets

from tasks_app import producer
from tasks_app.connection import get_broker
from tasks_app.core import metrics
from tasks_app.core.inspect import Inspector
from tasks_app.core.states import TaskState
from tasks_app.core.task import ms_to_iso
from tests.factories import PREFIX, old_release_enqueue
from tests.procs import (
    LEASE_SECONDS,
    RECOVERY_INTERVAL,
    WorkerPool,
    WorkerProcess,
    wait_for,
    wait_for_state,
)
from tests.servers import LiveServer

pytestmark = pytest.mark.once  # batching under real workers and kills: newest-Python leg

STARTED = re.compile(r"started (\S+) ([0-9a-f-]{36}) attempt (\d+)")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PRIORITY_NAMES = {0: "low", 1: "normal", 2: "high", 3: "critical"}
PREFETCH = 16  # the product's default


# -- helpers ------------------------------------------------------------------------


def records(ids: Sequence[str], *fields: str) -> list[list[str | None]]:
    """The given fields of many task records, in one round trip."""
    broker = get_broker()
    pipe = broker.client.pipeline(transaction=False)
    for task_id in ids:
        pipe.hmget(broker.keys.task(task_id), *fields)
    return list(pipe.execute())


def all_completed(ids: Sequence[str]) -> bool:
    return all(state == "completed" for (state,) in records(ids, "state"))


def wait_completed(ids: Sequence[str], timeout: float) -> None:
    wait_for(lambda: all_completed(ids), timeout, interval=0.05,
             message=f"{len(ids)} task(s) to complete: "
                     f"{Counter(s for (s,) in records(ids, 'state'))}")


def starts(*workers: WorkerProcess) -> list[tuple[str, str, int]]:
    """(type, task id, attempt) of every attempt the workers' slots started, in log order."""
    return [(m.group(1), m.group(2), int(m.group(3)))
            for w in workers for m in STARTED.finditer(w.log())]


def wait_started(worker: WorkerProcess, task_id: str, timeout: float = 15) -> None:
    """Wait until the worker's log says a slot started running ``task_id``'s handler."""
    wait_for(lambda: any(tid == task_id for _, tid, _ in starts(worker)), timeout,
             interval=0.02, message=f"task {task_id} to start on {worker.id}")


def snapshot() -> metrics.Snapshot:
    broker = get_broker()
    return metrics.parse(broker.client.hgetall(broker.keys.metrics))


def completed_count(task_type: str) -> int:
    return snapshot().counters["completed"].get((task_type, "success"), 0)


def hist_count(name: str, label: str) -> int:
    hist = snapshot().histograms[name].get((label,))
    return hist.count if hist else 0


def evalsha_calls(client: redis.Redis) -> int:
    """Script calls the server ran: FCALL (Redis 7+) or EVALSHA."""
    stats: Any = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("evalsha", "fcall"))


def warm_up(worker: WorkerProcess, n: int = 5) -> None:
    """Run a few no-op tasks one after another so the (single) slot is in batch mode: its
    last tasks were short, so its next take asks for PREFETCH tasks."""
    ids = [t.id for t in producer.enqueue_many([{"type": "echo"} for _ in range(n)])]
    wait_completed(ids, timeout=15)
    time.sleep(0.1)  # the slot is idle again, blocked on its wake-up lists


def prefetched_behind(long_task: str, batch: Sequence[str], worker: WorkerProcess) -> list[str]:
    """The tasks of ``batch`` the worker's slot took ahead (running in Redis, handler not
    started) while it runs ``long_task``."""
    started = {tid for _, tid, _ in starts(worker)}
    rows = records(batch, "state", "worker_id")
    return [tid for tid, (state, wid) in zip(batch, rows, strict=True)
            if tid != long_task and tid not in started and state == "running"
            and wid == worker.id]


# -- 1. efficiency --------------------------------------------------------------------


@pytest.mark.standalone  # counts script calls in one server's commandstats
@pytest.mark.parametrize(("prefetch", "at_least", "below"), [
    (None, 0.0, 0.5),  # the default PREFETCH: one call per batch of short tasks
    ("1", 0.9, 10.0),  # prefetch off: one call per task (the outcome and the next take)
])
def test_draining_short_tasks_takes_few_script_calls_with_prefetch(
        pool: WorkerPool, inspector: Inspector, redis_client: redis.Redis,
        prefetch: str | None, at_least: float, below: float) -> None:
    env = {"TASKQUEUE_PREFETCH": prefetch} if prefetch else {}
    worker = pool.start(concurrency=1, env=env, inspector=inspector)
    time.sleep(0.3)
    n = 300
    redis_client.config_resetstat()
    ids = [t.id for t in producer.enqueue_many([{"type": "echo", "payload": {"i": i}}
                                                for i in range(n)])]
    wait_completed(ids, timeout=60)
    calls = evalsha_calls(redis_client)
    per_task = calls / n
    print(f"PREFETCH={prefetch or 'default'}: {calls} EVALSHA for {n} tasks "
          f"({per_task:.2f} per task)")
    assert at_least <= per_task < below
    rows = records(ids, "state", "attempts", "result", "worker_id")
    assert {(r[0], r[1], r[3]) for r in rows} == {("completed", "1", worker.id)}
    assert [json.loads(r[2] or "null") for r in rows] == [{"i": i} for i in range(n)]
    assert Counter(tid for _, tid, _ in starts(worker)) == Counter(ids)


# -- 2. strict priority, then FIFO, with prefetch ------------------------------------------


@pytest.mark.parametrize("paused", [None, 0], ids=["all-open", "low-paused"])
def test_one_slot_runs_a_mixed_backlog_in_strict_priority_then_fifo_order(
        pool: WorkerPool, inspector: Inspector, paused: int | None) -> None:
    # With a paused priority the take reads each open priority's band instead of ZPOPMIN.
    rng = random.Random(12)
    choices = tuple(p for p in (0, 1, 2, 3) if p != paused)
    wanted = [rng.choice(choices) for _ in range(200)]
    if paused is not None:
        inspector.pause_queue(paused)
        held_back = [t.id for t in producer.enqueue_many([{"type": "echo", "priority": paused}
                                                           for _ in range(20)])]
    tasks = []
    for chunk in range(0, 200, 50):  # several producer calls, priorities interleaved
        tasks += producer.enqueue_many([{"type": "echo", "payload": {"i": i}, "priority": p}
                                        for i, p in enumerate(wanted[chunk:chunk + 50], chunk)])
    ids = [t.id for t in tasks]
    worker = pool.start(concurrency=1, inspector=inspector)
    wait_completed(ids, timeout=60)

    expected = [tid for _, _, tid in sorted((-p, i, tid)
                                            for i, (p, tid) in enumerate(zip(wanted, ids,
                                                                             strict=True)))]
    ran = [tid for _, tid, _ in starts(worker)]
    assert ran == expected
    rows = records(ids, "attempts", "started_at")
    assert {r[0] for r in rows} == {"1"}
    by_id = {tid: int(r[1] or 0) for tid, r in zip(ids, rows, strict=True)}
    started = [by_id[tid] for tid in expected]
    assert started == sorted(started)  # the start times agree (ms resolution)
    if paused is not None:
        assert {s for (s,) in records(held_back, "state")} == {"pending"}
        inspector.resume_queue(paused)
        wait_completed(held_back, timeout=30)


def test_a_worker_upgraded_from_per_priority_pending_sets_runs_the_old_backlog_in_order(
        pool: WorkerPool, inspector: Inspector, redis_client: redis.Redis) -> None:
    normal, critical = [], []
    for _ in range(20):  # interleaved, as the previous release left them
        normal += old_release_enqueue(redis_client, 1, 1)
        critical += old_release_enqueue(redis_client, 3, 1)
    assert sum(inspector.queue_depths().values()) == 0  # invisible until a worker folds them
    worker = pool.start(concurrency=1, inspector=inspector)
    wait_completed(normal + critical, timeout=30)
    assert [tid for _, tid, _ in starts(worker)] == critical + normal
    rows = records(normal + critical, "attempts", "result")
    assert {r[0] for r in rows} == {"1"}
    assert json.loads(rows[0][1] or "null") == {"p": 1, "i": 0}
    assert not redis_client.exists(PREFIX + "pending:1", PREFIX + "pending:3")


# -- 3. metrics exact ----------------------------------------------------------------------


def test_at_low_load_the_counts_move_with_each_completion(
        pool: WorkerPool, inspector: Inspector) -> None:
    pool.start(concurrency=1, inspector=inspector)
    for i in range(1, 11):
        task = producer.enqueue("echo", {"i": i}, priority=2)
        wait_for_state(task.id, "completed", timeout=10)
        seen = time.monotonic()

        def counted(i: int = i) -> bool:
            return inspector.totals()["completed"] == i

        wait_for(counted, timeout=0.5, interval=0.01, message=f"the completed count to reach {i}")
        assert time.monotonic() - seen < 0.5
        assert hist_count("duration", "echo") == i
        assert hist_count("queue_wait", "high") == i
        assert completed_count("echo") == i
        time.sleep(0.05 * (i % 3))  # a little idle time between tasks, varied


def test_after_a_burst_the_counts_and_histograms_are_exact_within_two_seconds(
        pool: WorkerPool, inspector: Inspector) -> None:
    pool.start(concurrency=2, inspector=inspector)
    n = 500
    ids = [t.id for t in producer.enqueue_many([{"type": "echo", "payload": {"i": i}}
                                                for i in range(n)])]
    wait_completed(ids, timeout=60)
    drained = time.monotonic()

    def exact() -> bool:
        totals = inspector.totals()
        return (totals["completed"] == n and hist_count("duration", "echo") == n
                and hist_count("queue_wait", "low") == n)

    wait_for(exact, timeout=2.0, interval=0.02,
             message=f"the counts to reach {n}: {inspector.totals()}, duration "
                     f"{hist_count('duration', 'echo')}, wait {hist_count('queue_wait', 'low')}")
    assert time.monotonic() - drained <= 2.0
    totals = inspector.totals()
    assert (totals["submitted"], totals["failed"], totals["retries"]) == (n, 0, 0)
    time.sleep(1.2)  # a later flush must not count anything twice
    assert inspector.totals()["completed"] == n
    assert hist_count("duration", "echo") == hist_count("queue_wait", "low") == n


# -- 4. a slot killed while it holds prefetched tasks -----------------------------------------


def start_long_task_with_others_behind(worker: WorkerProcess, seconds: float, before: int = 0,
                                       after: int = 7) -> tuple[str, list[str], list[str]]:
    """Put the one slot of ``worker`` in batch mode, then enqueue ``before`` echo tasks, one
    sleep task and ``after`` echo tasks in one call, and wait until the slot runs the sleep
    task with some of the later ones taken ahead.  Tries a few times (a slot leaves batch
    mode after one slow task, and a loaded machine can make an echo slow).
    Returns (sleep task id, the whole batch in order, the ids taken ahead)."""
    for _ in range(4):
        warm_up(worker)
        batch = producer.enqueue_many(
            [{"type": "echo", "payload": {"before": i}} for i in range(before)]
            + [{"type": "sleep", "payload": {"seconds": seconds}, "max_retries": 3}]
            + [{"type": "echo", "payload": {"after": i}} for i in range(after)])
        ids = [t.id for t in batch]
        long_task = ids[before]
        wait_started(worker, long_task)
        ahead = prefetched_behind(long_task, ids[before + 1:], worker)
        if ahead:
            return long_task, ids, ahead
        wait_completed(ids, timeout=seconds + 15)
    raise AssertionError("the slot never took tasks ahead of a long one")


def test_a_killed_slot_loses_no_prefetched_task_and_completes_none_twice(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(concurrency=1, inspector=inspector)
    long_task, ids, ahead = start_long_task_with_others_behind(worker, seconds=2.0)
    assert len(ahead) == 7  # the sleep task and the 7 echo tasks behind it in one take
    (slot,) = worker.slot_pids()
    os.kill(slot, signal.SIGKILL)
    wait_completed(ids, timeout=20)

    done = producer.get(long_task)
    assert (done.state, done.attempts, done.result) == (TaskState.COMPLETED, 2,
                                                        {"slept": 2.0})
    rows = dict(zip(ids, records(ids, "attempts"), strict=True))
    assert {tid: rows[tid][0] for tid in ahead} == {tid: "1" for tid in ahead}
    assert {rows[tid][0] for tid in ids if tid != long_task} == {"1"}
    counts = Counter(tid for _, tid, _ in starts(worker) if tid in ids)
    assert counts == Counter({**{tid: 1 for tid in ids}, long_task: 2})
    assert [a for _, tid, a in starts(worker) if tid == long_task] == [1, 2]
    assert worker.log_lines(f"running task {long_task}")  # the supervisor saw the death
    assert snapshot().counters["retries"] == {("sleep",): 1}
    assert inspector.dlq_size() == 0
    assert inspector.running_count() == 0
    assert sum(inspector.queue_depths().values()) == 0
    assert len(worker.slot_pids()) == 1 and worker.alive


def test_a_graceful_stop_puts_prefetched_tasks_back_uncounted(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(concurrency=1, inspector=inspector)
    long_task, ids, ahead = start_long_task_with_others_behind(worker, seconds=1.0)
    worker.terminate()
    assert worker.wait(15) == 0
    done = producer.get(long_task)
    assert (done.state, done.attempts) == (TaskState.COMPLETED, 1)
    assert [tuple(r) for r in records(ahead, "state", "attempts")] == [("pending", "0")] * len(
        ahead)
    assert inspector.running_count() == 0

    after = pool.start(concurrency=1, inspector=inspector, name="after")
    wait_completed(ids, timeout=20)
    assert {a for (a,) in records(ids, "attempts")} == {"1"}
    assert Counter(tid for _, tid, _ in starts(worker, after) if tid in ids) == Counter(ids)
    assert not [tid for _, tid, _ in starts(worker) if tid in ahead]


def test_a_short_task_run_before_a_long_one_in_the_same_batch_is_recorded_promptly(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(concurrency=1, inspector=inspector)
    long_task, ids, _ = start_long_task_with_others_behind(worker, seconds=2.0, before=2,
                                                           after=5)
    first = ids[0]
    assert [tid for _, tid, _ in starts(worker)][-3:] == [ids[0], ids[1], long_task]
    time.sleep(0.5)  # the long task runs; the short ones ended more than 50 ms ago
    assert producer.get(long_task).state is TaskState.RUNNING
    assert producer.get(first).state is TaskState.COMPLETED


# -- 6. leases are the worker's heartbeat ----------------------------------------------------


def test_a_worker_killed_mid_task_has_its_task_recovered_within_lease_and_sweep(
        pool: WorkerPool, inspector: Inspector) -> None:
    doomed = pool.start(concurrency=1, inspector=inspector, name="doomed")
    survivor = pool.start(concurrency=1, inspector=inspector, name="survivor")
    inspector.pause_worker(survivor.id)  # so the task goes to the doomed worker
    task = producer.enqueue("sleep", {"seconds": 3}, max_retries=3)
    wait_started(doomed, task.id)
    inspector.resume_worker(survivor.id)
    time.sleep(0.3)  # a heartbeat or two renewed the lease after the start

    doomed.kill_all()  # SIGKILL to the supervisor and its slots at once
    killed = time.monotonic()

    def recovered() -> bool:
        t = producer.get(task.id)
        return t.state is not TaskState.RUNNING or t.worker_id == survivor.id

    wait_for(recovered, timeout=10, interval=0.02, message="the lost attempt to be recovered")
    took = time.monotonic() - killed
    print(f"recovered {took:.2f} s after the kill")
    # The lease runs out LEASE_SECONDS after the last beat (<= the kill); a sweep follows
    # within RECOVERY_INTERVAL (jittered); the rest is slack for a loaded machine.
    assert took < LEASE_SECONDS + 2 * RECOVERY_INTERVAL + 1.0

    done = wait_for_state(task.id, ["completed", "dead_letter", "failed"], timeout=15)
    assert (done.state, done.attempts, done.worker_id, done.result) == (
        TaskState.COMPLETED, 2, survivor.id, {"slept": 3})
    assert [(tid, a) for _, tid, a in starts(doomed)] == [(task.id, 1)]
    assert [(tid, a) for _, tid, a in starts(survivor) if tid == task.id] == [(task.id, 2)]
    assert snapshot().counters["retries"] == {("sleep",): 1}
    wait_for(lambda: completed_count("sleep") == 1, timeout=2, message="the completion count")


def test_a_supervisor_whose_heartbeat_pauses_does_not_complete_the_task_twice(
        pool: WorkerPool, inspector: Inspector) -> None:
    """SIGSTOP freezes the supervisor (its heartbeat) but not its slot, which keeps running
    the task.  The lease runs out, the other worker's recoverer fails the attempt as
    'worker lost' (new fence) and the task runs again there: at-least-once.  When the
    frozen worker resumes, its heartbeat learns the fence changed and kills its slot (or,
    had the slot finished first, the outcome is refused as stale): the task completes once,
    and is counted once."""
    frozen = pool.start(concurrency=1, inspector=inspector, name="frozen")
    other = pool.start(concurrency=1, inspector=inspector, name="other")
    inspector.pause_worker(other.id)
    task = producer.enqueue("sleep", {"seconds": 3}, max_retries=3)
    wait_started(frozen, task.id)
    inspector.resume_worker(other.id)

    frozen.signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        wait_started(other, task.id, timeout=10)  # recovered and started again elsewhere
        assert producer.get(task.id).attempts == 2
        time.sleep(max(0.0, 2.2 - (time.monotonic() - stopped)))  # > the heartbeat timeout
        assert producer.get(task.id).state is TaskState.RUNNING  # attempt 1 still sleeping
    finally:
        frozen.signal(signal.SIGCONT)

    done = wait_for_state(task.id, ["completed", "dead_letter", "failed"], timeout=15)
    assert (done.state, done.attempts, done.worker_id, done.result) == (
        TaskState.COMPLETED, 2, other.id, {"slept": 3})
    time.sleep(1.5)  # the frozen worker's slot would have finished its attempt by now
    assert producer.get(task.id).worker_id == other.id
    wait_for(lambda: completed_count("sleep") == 1, timeout=2, message="the completion count")
    time.sleep(1.2)
    assert completed_count("sleep") == 1
    assert hist_count("duration", "sleep") == 1
    assert snapshot().counters["retries"] == {("sleep",): 1}
    handled = (frozen.log_lines("whose lease was lost")
               + frozen.log_lines("outcome discarded"))
    assert handled, frozen.log()
    # The frozen worker is back in the registry and takes work again.
    wait_for(lambda: frozen.info(inspector) is not None, timeout=5, message="it re-registers")
    inspector.pause_worker(other.id)
    echo = producer.enqueue("echo", {"after": "freeze"})
    assert wait_for_state(echo.id, "completed", timeout=10).worker_id == frozen.id


# -- 7. events ----------------------------------------------------------------------------


async def collect_events(ws_url: str, api_url: str, count: int
                         ) -> tuple[list[str], list[dict[str, Any]]]:
    """Connect, submit ``count`` echo tasks over HTTP (one call), read their events until
    each has completed."""
    async with websockets.connect(f"{ws_url}/ws?types=task.*") as ws:
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
            ids = []
            for i in range(count):
                reply = await http.post("/api/v1/tasks", json={"type": "echo",
                                                               "payload": {"i": i},
                                                               "priority": "high"})
                assert reply.status_code == 201, reply.text
                ids.append(reply.json()["id"])
        seen: list[dict[str, Any]] = []
        done: set[str] = set()
        while len(done) < count:
            event = json.loads(await asyncio.wait_for(ws.recv(), 15))
            if event["data"].get("task_id") in ids:
                seen.append(event)
                if event["type"] == "task.completed":
                    done.add(event["data"]["task_id"])
        await asyncio.sleep(0.3)  # a duplicate would arrive now
        while True:
            try:
                event = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
            except TimeoutError:
                break
            if event["data"].get("task_id") in ids:
                seen.append(event)
        return ids, seen


def test_a_websocket_client_sees_each_task_submitted_started_completed_once_with_its_fields(
        tmp_path: Path) -> None:
    inspector = Inspector(get_broker())
    with LiveServer(tmp_path) as server, WorkerPool(tmp_path) as pool:
        worker = pool.start(inspector=inspector)
        ids, seen = asyncio.run(collect_events(server.ws_url, server.url, 12))
    for task_id in ids:
        mine = [e for e in seen if e["data"]["task_id"] == task_id]
        assert [e["type"] for e in mine] == ["task.submitted", "task.started",
                                             "task.completed"], mine
        submitted, started, completed = mine
        task = producer.get(task_id)
        assert submitted["data"] == {"task_id": task_id, "type": "echo", "priority": "high",
                                     "queue": "default", "state": "pending"}
        assert set(started["data"]) == {"task_id", "type", "priority", "queue", "worker_id",
                                        "attempt", "queue_wait"}
        assert set(completed["data"]) == {"task_id", "type", "priority", "queue", "worker_id",
                                          "attempt", "duration"}
        for event in mine:
            assert set(event) == {"type", "timestamp", "data"}
            assert ISO_Z.match(event["timestamp"]), event
            assert (event["data"]["type"], event["data"]["priority"]) == ("echo", "high")
        for event in (started, completed):
            assert event["data"]["worker_id"] == worker.id
            assert event["data"]["attempt"] == 1
        wait = started["data"]["queue_wait"]
        assert isinstance(wait, float) and 0 <= wait < 10
        spent = completed["data"]["duration"]
        assert isinstance(spent, float) and 0 <= spent < 1
        # Each event carries the Redis time of the transition it reports.
        assert started["timestamp"] == ms_to_iso(task.started_at)
        assert completed["timestamp"] == ms_to_iso(task.completed_at)


class EventTap:
    """A WebSocket client in a thread of its own, keeping every task event it receives."""

    def __init__(self, ws_url: str) -> None:
        self.url = f"{ws_url}/ws?types=task.*"
        self.events: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with websockets.connect(self.url) as ws:
            await asyncio.sleep(0.3)
            self.ready.set()
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    self.events.append(json.loads(await asyncio.wait_for(ws.recv(), 0.2)))

    def __enter__(self) -> EventTap:
        self._thread.start()
        assert self.ready.wait(10), "the WebSocket client did not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # late or duplicate events arrive now
        self._stop.set()
        self._thread.join(5)

    def of(self, task_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(e["type"], e["data"]) for e in self.events if e["data"].get("task_id") == task_id]


def test_a_prefetched_task_put_back_on_stop_says_so_between_its_two_starts(
        tmp_path: Path) -> None:
    """task.started is sent when a slot takes a task (ahead of running it, with prefetch); a
    task put back without running is followed by task.requeued, so a client knows the first
    start never ran, and its next start has the same attempt number."""
    inspector = Inspector(get_broker())
    with (LiveServer(tmp_path) as server, WorkerPool(tmp_path) as pool,
          EventTap(server.ws_url) as tap):
        worker = pool.start(inspector=inspector)
        _, ids, ahead = start_long_task_with_others_behind(worker, seconds=1.0)
        worker.terminate()
        assert worker.wait(15) == 0
        pool.start(inspector=inspector, name="after")
        wait_completed(ids, timeout=20)
    task_id = ahead[0]
    kinds = [kind for kind, _ in tap.of(task_id)]
    assert kinds == ["task.submitted", "task.started", "task.requeued", "task.started",
                     "task.completed"], kinds
    started = [data for kind, data in tap.of(task_id) if kind == "task.started"]
    assert [s["attempt"] for s in started] == [1, 1]
    assert started[0]["worker_id"] == worker.id != started[1]["worker_id"]


# -- 8. pause ----------------------------------------------------------------------------


def high_pending() -> int:
    return Inspector(get_broker()).queue_depths()["high"]


def test_pausing_a_priority_stops_its_tasks_at_once_while_others_flow(
        pool: WorkerPool, inspector: Inspector) -> None:
    first = pool.start(concurrency=1, inspector=inspector, name="first")
    n = 1500
    high = [t.id for t in producer.enqueue_many([{"type": "echo", "priority": 2,
                                                  "payload": {"i": i}} for i in range(n)])]
    wait_for(lambda: high_pending() < n - 100, timeout=15, interval=0.01,
             message="the worker to be busy with high tasks")
    inspector.pause_queue(2)
    frozen_depth = high_pending()
    assert inspector.running_count() <= PREFETCH  # at most one take's worth runs on
    assert frozen_depth > 0, "the backlog drained before the pause: make it bigger"
    # What the slot had taken before the pause (in Redis: running) may still run; nothing
    # more leaves the high queue.
    wait_for(lambda: inspector.running_count() == 0, timeout=5,
             message="the tasks taken before the pause to finish")
    normal = [t.id for t in producer.enqueue_many([{"type": "echo", "priority": 1}
                                                    for _ in range(50)])]
    wait_completed(normal, timeout=15)
    assert high_pending() == frozen_depth

    # A worker that joins after the pause learns it from its first heartbeat.
    second = pool.start(concurrency=1, inspector=inspector, name="second")
    inspector.pause_worker(first.id)
    late = [t.id for t in producer.enqueue_many([{"type": "echo", "priority": 0}
                                                  for _ in range(30)])]
    wait_completed(late, timeout=15)
    assert {wid for (wid,) in records(late, "worker_id")} == {second.id}
    time.sleep(0.5)
    assert high_pending() == frozen_depth
    assert inspector.running_count() == 0
    assert not [tid for _, tid, _ in starts(second) if tid in set(high)]

    inspector.resume_queue(2)
    wait_completed(high, timeout=60)
    assert {a for (a,) in records(high, "attempts")} == {"1"}
    assert Counter(tid for _, tid, _ in starts(first, second) if tid in set(high)) == Counter(
        high)
