"""``manage.py checkworker_tq``: the worker containers' health check."""

from __future__ import annotations

import socket
import time
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from tasks_app.connection import get_broker
from tasks_app.core.inspect import Inspector
from tests.procs import WorkerPool


def beat(worker_id: str, hostname: str) -> None:
    """One heartbeat of a worker on ``hostname``."""
    get_broker().heartbeat(worker_id, {"concurrency": 1, "priorities": "3,2,1,0",
                                       "hostname": hostname}, [])


def check(*args: str) -> str:
    out = StringIO()
    call_command("checkworker_tq", *args, stdout=out)
    return out.getvalue()


def test_a_fresh_heartbeat_from_this_host_is_healthy() -> None:
    beat("worker-here", socket.gethostname())
    assert check().startswith("worker-here idle, last heartbeat ")


def test_workers_of_other_hosts_do_not_count() -> None:
    beat("worker-there", "elsewhere")
    with pytest.raises(CommandError, match="no heartbeat from a worker on "):
        check()
    assert "worker-there" in check("--hostname", "elsewhere")
    assert "worker-there" in check("--worker-id", "worker-there")
    with pytest.raises(CommandError, match="no heartbeat from worker nope"):
        check("--worker-id", "nope")


def test_a_stale_heartbeat_is_unhealthy() -> None:
    fast = {**settings.TASKQUEUE, "HEARTBEAT_INTERVAL": 0.1, "HEARTBEAT_TIMEOUT": 0.3}
    with override_settings(TASKQUEUE=fast):
        beat("worker-here", socket.gethostname())
        assert "worker-here" in check()
        time.sleep(0.5)
        with pytest.raises(CommandError, match=r"in the last 0.3 s"):
            check()


def test_unreachable_redis_is_unhealthy() -> None:
    down = {**settings.TASKQUEUE, "REDIS_URL": "redis://127.0.0.1:1/0"}
    with override_settings(TASKQUEUE=down), pytest.raises(CommandError, match="unreachable"):
        check()


def test_a_real_worker_passes_and_fails_once_stopped(
        pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(inspector=inspector)
    assert worker.id in check("--worker-id", worker.id)
    worker.terminate()
    assert worker.wait(10) == 0
    with pytest.raises(CommandError):
        check("--worker-id", worker.id)
