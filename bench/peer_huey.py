"""Huey's side of bench/compare.py: a RedisHuey with its defaults and the no-op task.

    huey_consumer bench.peer_huey.huey -k process -w 4
"""

from __future__ import annotations

import os

from huey import RedisHuey

from bench.record import record

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"])


@huey.task()
def noop(enqueued_at: float) -> None:
    """Record the run; nothing else."""
    record(enqueued_at)
