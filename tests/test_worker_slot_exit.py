"""A handler that ends its slot process with exit status 0 (``os._exit(0)``, or a library's
``sys.exit()``) is a dead slot like any other: its attempt is failed as 'worker lost' and the
slot is replaced, so a poison task of that kind cannot shrink a worker slot by slot.

Found by reliability/worker_kills.py (the exit(0) poison task): before the fix the
supervisor only replaced slots that exited non-zero."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tasks_app import producer
from tasks_app.connection import get_broker
from tasks_app.core.inspect import Inspector
from tests.factories import make_spec
from tests.procs import WorkerPool, wait_for, wait_for_state

RUN = Path(__file__).resolve().parent.parent / "reliability" / "run.py"


class ReliabilityPool(WorkerPool):
    """Workers started through reliability/run.py, which registers rel.poison_exit."""

    @staticmethod
    def command(worker_id: str, concurrency: int, args: Sequence[str]) -> list[str]:
        return [sys.executable, str(RUN), "manage", "runworker_tq", "--worker-id", worker_id,
                "--concurrency", str(concurrency), "--log-level", "debug", *args]


@pytest.fixture
def rel_pool(tmp_path: Path) -> Iterator[WorkerPool]:
    with ReliabilityPool(tmp_path) as started:
        yield started


def test_slot_that_exits_0_mid_task_is_replaced_and_the_task_dead_lettered(
        rel_pool: WorkerPool, inspector: Inspector) -> None:
    worker = rel_pool.start(concurrency=2, inspector=inspector)
    poison = make_spec("rel.poison_exit", max_retries=2)
    get_broker().enqueue(poison)

    dead = wait_for_state(poison.id, "dead_letter", timeout=15)
    assert (dead.attempts, dead.error) == (3, "worker lost")
    wait_for(lambda: len(worker.slot_pids()) == 2, 5, message="both slots back")
    echo = producer.enqueue("echo", {"after": "exit"})
    assert wait_for_state(echo.id, "completed", timeout=5).result == {"after": "exit"}
    assert worker.alive
