"""Dramatiq's side of bench/compare.py: a RedisBroker with its defaults and the no-op actor.

    dramatiq bench.peer_dramatiq
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.record import record

dramatiq.set_broker(RedisBroker(url=os.environ["BENCH_REDIS_URL"]))


@dramatiq.actor
def noop(enqueued_at: float) -> None:
    """Record the run; nothing else."""
    record(enqueued_at)
