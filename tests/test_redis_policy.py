"""Redis misconfiguration: a server that may evict keys is reported by the worker at startup
(a WARNING) and by /admin/health (a warning in the body); managed Redis where CONFIG is
disabled is handled (INFO memory, else 'unknown', never an error)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tasks_app.core.config import Config
from tasks_app.core.inspect import Inspector
from tasks_app.core.redis_policy import eviction_policy
from tasks_app.devserver.redis import EmbeddedRedis
from tests.api_support import call
from tests.procs import WorkerPool, wait_for
from workers_app.runtime.worker import Worker, WorkerOptions


@pytest.fixture
def evicting(redis_client: redis.Redis) -> Iterator[None]:
    """The shared test server set to allkeys-lru, put back to noeviction afterwards."""
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")


class NoConfig:
    """A client of a managed Redis where CONFIG is renamed away; INFO may work or not."""

    def __init__(self, info: dict[str, Any] | None) -> None:
        self._info = info

    def config_get(self, pattern: str) -> dict[str, str]:
        raise redis.ResponseError("unknown command 'CONFIG', with args beginning with: 'GET'")

    def info(self, section: str) -> dict[str, Any]:
        if self._info is None:
            raise redis.ResponseError("NOPERM this user has no permissions to run 'info'")
        return self._info


def test_noeviction_needs_no_warning(redis_client: redis.Redis) -> None:
    found = eviction_policy(redis_client)
    assert (found.policy, found.warning) == ("noeviction", None)


def test_an_evicting_policy_is_warned_about(redis_client: redis.Redis, evicting: None) -> None:
    found = eviction_policy(redis_client)
    assert found.policy == "allkeys-lru"
    assert found.warning is not None and "noeviction" in found.warning


def test_config_disabled_falls_back_to_info_memory() -> None:
    found = eviction_policy(NoConfig({"maxmemory_policy": "volatile-lru"}))
    assert found.policy == "volatile-lru" and found.warning is not None


def test_config_and_info_disabled_is_unknown_not_an_error() -> None:
    found = eviction_policy(NoConfig(None))
    assert (found.policy, found.warning) == ("unknown", None)


def test_connection_errors_propagate_to_the_caller() -> None:
    client = redis.Redis(port=1, socket_connect_timeout=0.2)
    with pytest.raises(redis.ConnectionError):
        eviction_policy(client)


def test_health_warns_when_redis_may_evict(evicting: None) -> None:
    reply = call("GET", "/admin/health")
    assert reply.status == 200
    assert reply.body["status"] == "healthy" and reply.body["redis"] == "connected"
    assert reply.body["redis_maxmemory_policy"] == "allkeys-lru"
    assert len(reply.body["warnings"]) == 1 and "noeviction" in reply.body["warnings"][0]


def test_health_has_no_warning_with_noeviction() -> None:
    reply = call("GET", "/admin/health")
    assert reply.body == {"status": "healthy", "redis": "connected"}


def test_health_stays_healthy_when_config_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks_app.api import health

    real = health.probe_client()

    class Managed(NoConfig):
        def ping(self) -> bool:
            return bool(real.ping())

    monkeypatch.setattr(health, "probe_client", lambda: Managed(None))
    reply = call("GET", "/admin/health")
    assert reply.body == {"status": "healthy", "redis": "connected"}


def test_worker_logs_a_warning_at_startup(redis_server: EmbeddedRedis, evicting: None,
                                          caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker(Config(redis_url=redis_server.url), WorkerOptions(concurrency=1))
    try:
        with caplog.at_level(logging.WARNING, logger="workers_app.runtime"):
            worker._warn_if_evicting()
    finally:
        worker.broker.close()
    assert any("maxmemory-policy is allkeys-lru" in r.getMessage() and r.levelname == "WARNING"
               for r in caplog.records)


def test_worker_check_never_stops_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker(Config(redis_url="redis://127.0.0.1:1/0", connect_timeout=0.2),
                    WorkerOptions(concurrency=1))
    try:
        worker._warn_if_evicting()  # Redis unreachable: no exception, no warning
    finally:
        worker.broker.close()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_runworker_tq_warns_in_its_log(pool: WorkerPool, inspector: Inspector,
                                       evicting: None) -> None:
    worker = pool.start(inspector=inspector)
    wait_for(lambda: worker.log_lines("maxmemory-policy is allkeys-lru"), 10,
             message="the eviction warning in the worker log")
    assert any("WARNING" in line for line in worker.log_lines("maxmemory-policy"))
