"""Celery's side of bench/compare.py: an app on the Redis broker with its defaults (no
result backend) and the no-op task.

    celery -A bench.peer_celery worker --pool threads
"""

from __future__ import annotations

import os

from celery import Celery

from bench.record import record

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])


@app.task
def noop(enqueued_at: float) -> None:
    """Record the run; nothing else."""
    record(enqueued_at)
