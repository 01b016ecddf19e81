"""The cost of per-type limits when used: one default runworker_tq drains echo tasks with
no limit, with a limit it never reaches (the bookkeeping alone), and with a concurrency
limit of 4 (tasks parked and put back in line as slots free).

    .venv/bin/python bench/type_limits.py            # 20,000 tasks per case
    .venv/bin/python bench/type_limits.py --quick    # 2,000

Prints tasks/s from the first start to the last completion, and Redis commands per task
(INFO commandstats over the drain).  Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import time

from common import setup_django, start_redis
from engine import flush, start_worker, wait_drained
from redis_profile import Profiler

CASES = (("no limit", None), ("concurrency 10,000 (never reached)", {"concurrency": 10_000}),
         ("concurrency 4", {"concurrency": 4}), ("rate 100,000/s (never reached)",
                                                 {"rate": "100000/s"}))


def drain(n: int, limit: dict[str, object] | None) -> tuple[float, float]:
    """Tasks/s and Redis commands per task of one drain."""
    from tasks_app import producer
    from tasks_app.connection import get_broker
    from tasks_app.core.limits import parse_limit

    broker = get_broker()
    flush(broker)
    if limit is not None:
        producer.type_limits().set("echo", parse_limit(limit))
    tasks = []
    for offset in range(0, n, 1000):
        tasks += producer.enqueue_many([{"type": "echo", "payload": {"i": i}}
                                        for i in range(offset, min(offset + 1000, n))])
    profiler = Profiler(broker.client)
    worker = start_worker()
    try:
        wait_drained(broker, timeout=600, poll=0.25)
        profile = profiler.stop()
    finally:
        worker.terminate()
        worker.wait(30)
    pipe = broker.client.pipeline(transaction=False)
    for task in tasks:
        pipe.hmget(broker.keys.task(task.id), "started_at", "completed_at")
    rows = pipe.execute()
    first, last = min(int(r[0]) for r in rows), max(int(r[1]) for r in rows)
    time.sleep(0.1)
    return n / ((last - first) / 1000), profile.total_calls / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 tasks per case")
    args = parser.parse_args()
    server = start_redis(persistence=False)
    setup_django()
    n = 2_000 if args.quick else 20_000
    try:
        for label, limit in CASES:
            rate, commands = drain(n, limit)
            print(f"drain of {n:,} echo tasks, {label}: {rate:,.0f} tasks/s, "
                  f"{commands:.2f} Redis commands per task")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
