"""Where an idle worker's pickup time goes.

    .venv/bin/python bench/pickup.py                 # 1,000 tasks, 3 runs
    .venv/bin/python bench/pickup.py --tasks 300 --runs 1

A warm, idle default worker (``runworker_tq``, as bench/compare.py starts it) gets one
task every 5-10 ms.  Each task's pickup (its handler's first line minus the producer's
``time.time()`` just before the enqueue call: what bench/compare.py reports) is split in
three by the task's own record:

    enqueue  the producer's call until its enqueue script ran (``enqueued_us``)
    redis    the enqueue script until the take script that started it (``wait_us``: the
             rest of the enqueue script, the idle slot's blocking pop served, its take)
    worker   the take script until the handler's first line (the reply's trip, the slot
             process waking up, and its Python until the handler)

Redis's clock and ``time.time()`` are the same clock on one machine.  Prints each part's
p50, p90 and p99 (medians over the runs) and the slowest tasks' split; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, percentile, start_redis

PARTS = ("pickup", "enqueue", "redis", "worker")


def one_run(n: int, scratch: Path) -> list[tuple[float, ...]]:
    """Pickup and its three parts (ms) of n tasks sent to a fresh idle worker."""
    import compare
    from record import read_records

    from tasks_app import producer
    from tasks_app.connection import get_broker

    broker = get_broker()
    broker.client.flushall()
    records = scratch / f"records-{time.monotonic_ns()}"
    worker = compare.Worker(compare.taskqueue_system(), records, scratch / "worker.log")
    sent: dict[float, str] = {}
    try:
        producer.enqueue("bench_noop", {"t": -1.0})  # the worker is up once this ran
        compare.wait_for_records(worker, records, 1, timeout=compare.READY_TIMEOUT)
        time.sleep(1.0)  # and idle
        pacing = random.Random(12)
        for _ in range(n):
            t = time.time()
            sent[t] = producer.enqueue("bench_noop", {"t": t}).id
            time.sleep(pacing.uniform(0.005, 0.010))
        compare.wait_for_records(worker, records, n + 1, timeout=60.0)
    finally:
        worker.stop()
    stamps = sorted(sent)
    rows = []
    for enqueued, started, _ in read_records(str(records)):
        if enqueued <= 0:
            continue
        # the record keeps the payload's time to the microsecond: the nearest one sent
        t = min(stamps, key=lambda s: abs(s - enqueued))
        script_us, wait_us = broker.client.hmget(broker.keys.task(sent[t]), "enqueued_us",
                                                 "wait_us")
        ran, taken = int(script_us) / 1e6, (int(script_us) + int(wait_us)) / 1e6
        rows.append(tuple(x * 1000 for x in (started - t, ran - t, taken - ran,
                                             started - taken)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per run (1,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs (medians are printed)")
    args = parser.parse_args()
    os.environ.pop("REDIS_URL", None)
    server = start_redis(persistence=False)
    os.environ["BENCH_REDIS_URL"] = os.environ["REDIS_URL"]
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.compare_settings"
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    figures: dict[str, list[float]] = {f"{part} p{p}": [] for part in PARTS for p in (50, 90, 99)}
    slowest: list[tuple[float, ...]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tq-pickup-") as scratch:
            for run in range(1, args.runs + 1):
                rows = one_run(args.tasks, Path(scratch))
                for i, part in enumerate(PARTS):
                    for p in (50, 90, 99):
                        figures[f"{part} p{p}"].append(percentile([r[i] for r in rows], p))
                slowest = sorted(rows)[-max(1, len(rows) // 100):]
                print(f"  run {run}: pickup p50 {figures['pickup p50'][-1]:.3f} ms, "
                      f"p99 {figures['pickup p99'][-1]:.3f} ms", flush=True)
    finally:
        server.stop()
    print(f"\nidle pickup of {args.tasks:,} tasks, one every 5-10 ms (ms, median of "
          f"{args.runs} runs)")
    print(f"{'part':<9}{'p50':>8}{'p90':>8}{'p99':>8}")
    for part in PARTS:
        cells = "".join(f"{statistics.median(figures[f'{part} p{p}']):8.3f}"
                        for p in (50, 90, 99))
        print(f"{part:<9}{cells}")
    print("\nthe last run's slowest 1% (pickup = enqueue + redis + worker, ms):")
    for row in slowest:
        print("  " + " = ".join(f"{x:.3f}" for x in row[:1]) + " = "
              + " + ".join(f"{x:.3f}" for x in row[1:]))


if __name__ == "__main__":
    main()
