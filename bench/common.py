"""Shared helpers for the benchmarks: a private Redis, Django setup, percentiles."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def start_redis(persistence: bool = True) -> Any:
    """A private redis-server with AOF (everysec) like the product runs, or with no persistence
    at all (no AOF, no RDB) when ``persistence`` is False; None if REDIS_URL is set."""
    from tasks_app.devserver.redis import EmbeddedRedis

    if os.environ.get("REDIS_URL"):
        return None
    server = EmbeddedRedis(tempfile.mkdtemp(prefix="tq-bench-"), persistence=persistence)
    server.start()
    os.environ["REDIS_URL"] = server.url
    return server


def setup_django() -> None:
    """Configure Django so handlers and settings load as in the product (under ./run.sh)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_project.settings")
    os.environ.setdefault("TASKQUEUE_DEMO_HANDLERS", "1")  # the benches run the echo task
    import django

    django.setup()


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
