"""taskqueue's side of bench/compare.py: the no-op task type, registered the way a site
registers its handlers (a ``handlers`` module of an installed app: bench.compare_settings
adds this package to INSTALLED_APPS)."""

from __future__ import annotations

from typing import Any

from bench.record import record
from tasks_app.core.registry import TaskContext, handler


@handler("bench_noop")
def bench_noop(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Record the run; nothing else."""
    record(payload["t"])
