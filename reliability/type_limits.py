"""Per-type limits under real workers: a rate held over a long window, a concurrency
limit held while another type flows.

    .venv/bin/python reliability/type_limits.py           # 4 workers x 4 slots, 30 s
    .venv/bin/python reliability/type_limits.py --quick   # 4 workers x 4 slots, 10 s (CI)

Type ``echo`` is limited to ``rate: "20/s"`` and gets more tasks than the window can
start; type ``sleep`` (0.2 s each) is limited to ``concurrency: 2``; both are queued
together in the one default queue, and the workers drain them.  Every task record is then
read back (``started_at``, ``completed_at``, on the Redis clock).

Figures: ``echo`` starts in the window that begins 1 s after its first start (after the
token bucket's initial burst) and their rate; the most ``sleep`` attempts running at one
instant (an end at t before a start at t).

Pass: the rate within 10% of 20/s over the window; at most 2 ``sleep`` attempts at once,
and 2 reached; every ``sleep`` task completed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reliability.common import (  # noqa: E402
    Proc,
    Run,
    fast_env,
    setup_django,
    start_redis,
    start_worker,
    table,
    task_fields,
    verdict,
    wait_slots,
    wait_until,
)

RATE = 20


def most_at_once(spans: list[tuple[int, int]]) -> int:
    """The most spans open at one instant (an end at t comes before a start at t)."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CI form (10 s)")
    args = parser.parse_args()
    seconds = 10 if args.quick else 30
    run = Run("type-limits")
    env = fast_env(lease=30.0, heartbeat=1.0, recovery=2.0)
    server = start_redis(run)
    setup_django(env)
    from tasks_app import producer
    from tasks_app.core.limits import TypeLimit

    limits = producer.type_limits()
    limits.set("echo", TypeLimit(rate=f"{RATE}/s"))
    limits.set("sleep", TypeLimit(concurrency=2))
    echo = [t.id for t in producer.enqueue_many(
        [{"type": "echo"}] * (RATE * (seconds + 4)))]
    sleep = [t.id for t in producer.enqueue_many(
        [{"type": "sleep", "payload": {"seconds": 0.2}}] * (5 * seconds))]
    print(f"type limits: {len(echo)} echo at {RATE}/s, {len(sleep)} sleep at concurrency 2, "
          f"4 workers x 4 slots, {seconds} s window, dir {run.dir}")
    workers: list[Proc] = [start_worker(run, env, 4, f"l{i}") for i in range(4)]
    try:
        for w in workers:
            wait_slots(w, 4)
        done = wait_until(lambda: all(v[0] == "completed" for v in
                                      task_fields(sleep, "state").values()), seconds + 60)
        wait_until(lambda: sum(1 for v in task_fields(echo, "started_at").values() if v[0])
                   >= RATE * (seconds + 2), seconds + 30)
        time.sleep(0.5)
        starts = sorted(int(v[0]) for v in task_fields(echo, "started_at").values() if v[0])
        spans = [(int(v[0]), int(v[1])) for v in
                 task_fields(sleep, "started_at", "completed_at").values() if v[1]]
    finally:
        for w in workers:
            w.stop(timeout=10)
        server.stop()
    first = starts[0]
    window = [s for s in starts if first + 1000 <= s < first + 1000 + seconds * 1000]
    rate = len(window) / seconds
    peak = most_at_once(spans)
    table(f"Per-type limits ({'quick' if args.quick else 'full'})", [
        ("echo starts in the window", len(window), ""),
        ("echo starts per second", f"{rate:.2f}", f"{RATE} +- 10%"),
        ("echo starts in the first second (burst)",
         sum(1 for s in starts if s < first + 1000), f"<= {2 * RATE + 1}"),
        ("sleep tasks completed", f"{len(spans)}/{len(sleep)}", "all"),
        ("sleep attempts running at once (most)", peak, "== 2"),
    ])
    return verdict([
        (f"echo rate within 10% of {RATE}/s over {seconds} s", abs(rate - RATE) <= RATE * 0.1),
        ("at most 2 sleep attempts at once, and 2 reached", peak == 2),
        ("every sleep task completed", done and len(spans) == len(sleep)),
    ])


if __name__ == "__main__":
    sys.exit(main())
