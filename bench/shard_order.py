"""How far order strays across the shards of one queue.

Priority is strict and FIFO holds within a shard; a producer spreads tasks over the
shards at random and a take starts at a random shard, so across shards both are only
approximate.  This enqueues tasks into a queue of S shards and takes them one at a
time (one consumer, as a single slot sees them), then prints:

- FIFO (one priority): how far each task's take position is from its enqueue position
  (mean and max displacement, in tasks);
- priority (random priorities): the share of takes that started a task while a task of
  a higher priority was pending in another shard (an inversion), and by how many levels.

    .venv/bin/python bench/shard_order.py                 # 4 shards, 20,000 tasks
    .venv/bin/python bench/shard_order.py --shards 8 --tasks 5000

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
from dataclasses import replace

from common import start_redis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    server = start_redis(persistence=False)
    try:
        run(args.shards, args.tasks)
    finally:
        if server is not None:
            server.stop()


def run(shards: int, n: int) -> None:
    import os

    from tasks_app.core.broker import Broker, new_task_id
    from tasks_app.core.config import Config
    from tasks_app.core.queues import Serving
    from tasks_app.core.task import TaskSpec

    broker = Broker.from_config(Config(redis_url=os.environ["REDIS_URL"],
                                       queues=(("q", shards),), max_pending=10 * n))
    broker.client.flushdb()
    broker.serving = Serving.parse("q")
    broker.heartbeat("w", {"concurrency": 1}, [])
    base = TaskSpec(id="", type="echo", queue="q")

    # FIFO across shards: one priority.
    order = {}
    for i in range(n):
        spec = replace(base, id=new_task_id())
        broker.enqueue(spec)
        order[spec.id] = i
    taken = []
    while isinstance(jobs := broker.take("w", (0, 1, 2, 3), 1), list):
        taken.append(order[jobs[0].id])
        broker.finish("w", [], 0, (0,))  # nothing to record; keeps the call shape honest
    shift = [abs(pos - i) for pos, i in enumerate(taken)]
    print(f"{shards} shards, {n:,} tasks of one priority, taken one at a time:")
    print(f"  FIFO displacement: mean {statistics.mean(shift):,.1f} tasks, "
          f"p99 {sorted(shift)[int(0.99 * len(shift))]:,} tasks, max {max(shift):,} tasks "
          f"({max(shift) / n:.1%} of the queue)")

    # Priority across shards.
    prios = [random.randrange(4) for _ in range(n)]
    pending = {p: 0 for p in range(4)}
    for p in prios:
        broker.enqueue(replace(base, id=new_task_id(), priority=p))
        pending[p] += 1
    inversions, levels = 0, []
    while isinstance(jobs := broker.take("w", (0, 1, 2, 3), 1), list):
        p = jobs[0].priority
        best = max(q for q, c in pending.items() if c)
        if p < best:
            inversions += 1
            levels.append(best - p)
        pending[p] -= 1
    print(f"  {n:,} tasks of random priorities: {inversions / n:.1%} of takes started a task "
          f"while a higher priority waited in another shard"
          + (f" (by {statistics.mean(levels):.2f} levels on average)" if levels else ""))
    broker.close()


if __name__ == "__main__":
    main()
