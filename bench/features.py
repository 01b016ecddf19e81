"""What chains and groups cost: one default runworker_tq drains the same number of task
runs as plain tasks, as chains of 10 and as groups of 100 with a then step.

    .venv/bin/python bench/features.py --no-persistence          # 20,000 runs each
    .venv/bin/python bench/features.py --quick --no-persistence  # 2,000 runs each

Per shape it prints the drain rate (task runs per second, from the worker's start to the
last completion, and from the first start) and Redis's work per task run (commands and
CPU, from INFO commandstats and INFO cpu).  The cost when unused is the plain drain
against bench/engine.py's figures before the feature (see the README).  Asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from common import setup_django, start_redis
from engine import flush, start_worker
from redis_profile import Profiler, cpu_us_per_task


def completed_workflows(broker: Any) -> int:
    from tasks_app.core import metrics

    snap = metrics.parse(broker.client.hgetall(broker.keys.metrics))
    return snap.counters["workflows"].get(("completed",), 0)


def completed_tasks(broker: Any) -> int:
    from tasks_app.core import metrics

    snap = metrics.parse(broker.client.hgetall(broker.keys.metrics))
    return sum(n for labels, n in snap.counters["completed"].items() if "success" in labels)


def drain(label: str, runs: int, create: Callable[[], Callable[[Any], bool]]) -> None:
    """Create the work (``create`` returns a "done?" check), then time one worker on it."""
    from tasks_app.connection import get_broker

    broker = get_broker()
    flush(broker)
    made = time.perf_counter()
    done = create()
    made = time.perf_counter() - made
    profiler = Profiler(broker.client)
    spawned = time.time()
    worker = start_worker()
    try:
        deadline = time.monotonic() + 600
        while not done(broker):
            if time.monotonic() > deadline:
                raise SystemExit(f"{label}: not drained in time")
            time.sleep(0.25)
        ended = time.time()
        profile = profiler.stop()
    finally:
        worker.terminate()
        worker.wait(30)
    rows = broker.client.eval(
        "local a, b = nil, 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
        "local s = tonumber(redis.call('HGET', k, 'started_at')) "
        "if s and (not a or s < a) then a = s end b = b + 1 end return {a, b}", 0,
        broker.keys.task("*"))
    first = int(rows[0]) / 1000
    print(f"{label}: {runs:,} task runs, {runs / (ended - spawned):,.0f} runs/s from process "
          f"start, {runs / (ended - first):,.0f} runs/s from first start; "
          f"{profile.total_calls / runs:.2f} Redis commands and "
          f"{cpu_us_per_task(profile, runs):.1f} us Redis CPU per run "
          f"(created in {made:.2f} s)")
    flush(broker)


def plain(runs: int) -> Callable[[], Callable[[Any], bool]]:
    def create() -> Callable[[Any], bool]:
        from tasks_app import producer

        for offset in range(0, runs, 1000):
            producer.enqueue_many([{"type": "echo", "payload": {"i": i}}
                                   for i in range(offset, min(offset + 1000, runs))])
        return lambda broker: completed_tasks(broker) >= runs
    return create


def chains(runs: int, length: int = 10) -> Callable[[], Callable[[Any], bool]]:
    def create() -> Callable[[Any], bool]:
        from tasks_app import producer

        n = runs // length
        for i in range(n):
            producer.chain(*[producer.step("echo", {"i": i, "k": k}) for k in range(length)])
        return lambda broker: completed_workflows(broker) >= n
    return create


def groups(runs: int, width: int = 100) -> Callable[[], Callable[[Any], bool]]:
    def create() -> Callable[[Any], bool]:
        from tasks_app import producer

        n = runs // (width + 1)
        for i in range(n):
            producer.group(*[producer.step("echo", {"i": i, "k": k}) for k in range(width)],
                           then=producer.step("echo", {"i": i}))
        return lambda broker: completed_workflows(broker) >= n
    return create


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 runs per shape")
    parser.add_argument("--no-persistence", action="store_true",
                        help="a private Redis with no AOF (and no RDB)")
    args = parser.parse_args()
    server = start_redis(persistence=not args.no_persistence)
    setup_django()
    runs = 2_000 if args.quick else 20_000
    try:
        drain("plain tasks        ", runs, plain(runs))
        drain("chains of 10       ", runs, chains(runs))
        drain("groups of 100 +then", runs // 101 * 101, groups(runs))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
