"""Engine benchmarks: enqueue rate, drain rate through runworker_tq, idle start latency.

    .venv/bin/python bench/engine.py            # full run (20,000-task drain)
    .venv/bin/python bench/engine.py --quick    # the short form CI runs
    .venv/bin/python bench/engine.py --profile  # Redis commands and CPU per task, per phase

Prints figures; asserts nothing about speed. With --profile, each phase (enqueue one call
per task, enqueue in bulk, drain through a default worker) also prints what Redis did per
task: every command's calls and usec from INFO commandstats (CONFIG RESETSTAT before the
phase) and Redis CPU from INFO cpu, then the lifecycle total (one-call enqueue + drain).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from common import ROOT, percentile, setup_django, start_redis
from redis_profile import PhaseProfile, Profiler, cpu_us_per_task, print_profile


def flush(broker) -> None:  # type: ignore[no-untyped-def]
    broker.client.flushall()


def bench_enqueue(n_single: int, n_bulk: int, batch: int,
                  profile: bool = False
                  ) -> tuple[PhaseProfile | None, PhaseProfile | None, int]:
    """Print both enqueue rates; with ``profile``, each phase's Redis work too, and return the
    one-call and bulk phases' profiles and the bulk's size."""
    from tasks_app import producer
    from tasks_app.connection import get_broker

    broker = get_broker()
    flush(broker)
    producer.enqueue("echo", {"i": -1})  # connect, load the scripts
    profiler = Profiler(broker.client) if profile else None
    start = time.perf_counter()
    for i in range(n_single):
        producer.enqueue("echo", {"i": i})
    single = n_single / (time.perf_counter() - start)
    single_profile = profiler.stop() if profiler else None
    flush(broker)
    profiler = Profiler(broker.client) if profile else None
    start = time.perf_counter()
    for offset in range(0, n_bulk, batch):
        producer.enqueue_many([{"type": "echo", "payload": {"i": i}}
                               for i in range(offset, min(offset + batch, n_bulk))])
    bulk = n_bulk / (time.perf_counter() - start)
    bulk_profile = profiler.stop() if profiler else None
    flush(broker)
    print(f"(a) enqueue, one call per task: {single:,.0f} tasks/s ({n_single:,} tasks)")
    if single_profile:
        print_profile("enqueue, one call per task", single_profile, n_single)
    print(f"(a) enqueue, bulk of {batch}:    {bulk:,.0f} tasks/s ({n_bulk:,} tasks)")
    if bulk_profile:
        print_profile(f"enqueue, bulk of {batch}", bulk_profile, n_bulk)
    return single_profile, bulk_profile, n_bulk


def start_worker(*extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runworker_tq", "--log-level", "warning", *extra],
        cwd=ROOT, env=dict(os.environ),
    )


def wait_drained(broker, timeout: float, poll: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    from tasks_app.core.inspect import Inspector

    inspector = Inspector(broker)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(inspector.queue_depths().values()) == 0 and inspector.running_count() == 0:
            return
        time.sleep(poll)
    raise SystemExit("drain did not finish in time")


def bench_drain(n: int, profile: bool = False) -> PhaseProfile | None:
    """Print the drain rate; with ``profile``, Redis's work from the worker's spawn until the
    queue is seen empty (polled every 0.25 s, a few commands a poll), and return it."""
    from tasks_app import producer
    from tasks_app.connection import get_broker

    broker = get_broker()
    flush(broker)
    tasks = []
    for offset in range(0, n, 1000):
        tasks += producer.enqueue_many([{"type": "echo", "payload": {"i": i}}
                                        for i in range(offset, min(offset + 1000, n))])
    profiler = Profiler(broker.client) if profile else None
    spawned = time.time()
    worker = start_worker()
    try:
        wait_drained(broker, timeout=300, poll=0.25 if profile else 0.02)
        drain_profile = profiler.stop() if profiler else None
    finally:
        worker.terminate()
        worker.wait(30)
    pipe = broker.client.pipeline(transaction=False)
    for task in tasks:
        pipe.hmget(broker.keys.task(task.id), "state", "started_at", "completed_at")
    rows = pipe.execute()
    done = [r for r in rows if r[0] == "completed"]
    first_start = min(int(r[1]) for r in done) / 1000
    last_done = max(int(r[2]) for r in done) / 1000
    print(f"(b) drain of {n:,} echo tasks, default runworker_tq: "
          f"{len(done) / (last_done - spawned):,.0f} tasks/s from process start "
          f"({last_done - spawned:.2f} s), {len(done) / (last_done - first_start):,.0f} tasks/s "
          f"from first task start; completed {len(done):,}/{n:,}")
    if drain_profile:
        print_profile("drain (dequeue + ack), default runworker_tq", drain_profile, n)
    flush(broker)
    return drain_profile


def print_lifecycle(label: str, enqueue: PhaseProfile, enqueued: int, drain: PhaseProfile,
                    drained: int) -> None:
    """A task's whole life in Redis: its enqueue plus its dequeue and ack."""
    commands = enqueue.total_calls / enqueued + drain.total_calls / drained
    cpu = cpu_us_per_task(enqueue, enqueued) + cpu_us_per_task(drain, drained)
    print(f"lifecycle ({label} + dequeue + ack): {commands:.2f} Redis commands per "
          f"task, {cpu:.1f} us of Redis CPU per task")


def bench_latency(n: int, interval: float) -> None:
    from tasks_app import producer
    from tasks_app.connection import get_broker

    broker = get_broker()
    flush(broker)
    worker = start_worker()
    try:
        time.sleep(2.0)  # let it register and go idle
        ids = []
        next_at = time.perf_counter()
        for i in range(n):
            ids.append(producer.enqueue("echo", {"i": i}).id)
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
        wait_drained(broker, timeout=60)
    finally:
        worker.terminate()
        worker.wait(30)
    pipe = broker.client.pipeline(transaction=False)
    for tid in ids:
        pipe.hget(broker.keys.task(tid), "wait_us")
    # wait_us: from the enqueue script to the dequeue script that started the task,
    # both on the Redis clock, in microseconds.
    latencies = [int(w) / 1000 for w in pipe.execute()]
    print(f"(c) enqueue-to-start latency, idle worker, one task every {interval * 1000:.0f} ms "
          f"({n} tasks): p50 {percentile(latencies, 50):.2f} ms, "
          f"p99 {percentile(latencies, 99):.2f} ms, max {max(latencies):.2f} ms")
    flush(broker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--profile", action="store_true",
                        help="Redis commands and CPU per task for each phase")
    parser.add_argument("--no-persistence", action="store_true",
                        help="a private Redis with no AOF (and no RDB), as bench/compare.py runs")
    args = parser.parse_args()
    server = start_redis(persistence=not args.no_persistence)
    setup_django()
    n = 2_000 if args.quick else 20_000
    try:
        single, bulk, n_bulk = bench_enqueue(n, n * 10, 1000, profile=args.profile)
        drain = bench_drain(n, profile=args.profile)
        if single and bulk and drain:
            print_lifecycle("enqueue one call", single, n, drain, n)
            print_lifecycle("enqueue in bulks of 1,000", bulk, n_bulk, drain, n)
        bench_latency(200 if args.quick else 2_000, 0.005)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
