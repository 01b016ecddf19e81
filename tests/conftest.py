"""Shared fixtures: one real redis-server for the whole session, flushed before each test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from tasks_app.core.inspect import Inspector
from tasks_app.devserver.redis import EmbeddedRedis
from tests.procs import WorkerPool
from tests.topologies import RedisClusterSet, SentinelSet

REDIS_KEY = pytest.StashKey[EmbeddedRedis]()


def pytest_configure(config: pytest.Config) -> None:
    """Start the session's redis-server and point REDIS_URL (env and Django) at it."""
    if config.option.help or config.option.version:
        return
    server = EmbeddedRedis(tempfile.mkdtemp(prefix="tq-test-redis-"), persistence=True)
    server.start()
    config.stash[REDIS_KEY] = server
    os.environ["REDIS_URL"] = server.url
    # The suite runs the demo handlers, here and in the servers and workers it starts.
    os.environ["TASKQUEUE_DEMO_HANDLERS"] = "1"
    point_django_at(server.url)


def point_django_at(url: str) -> None:
    """Patch the already-loaded settings: pytest-django imports them before any conftest."""
    from django.conf import settings

    from taskqueue_project.settings import channel_layers
    from tasks_app.conf import tq_settings
    from tasks_app.discovery import import_demo_modules

    settings.TASKQUEUE = {**settings.TASKQUEUE, "REDIS_URL": url, "DEMO_HANDLERS": True}
    settings.CHANNEL_LAYERS = channel_layers(url)
    tq_settings.reload()
    import_demo_modules()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the session's redis-server and remove its data dir."""
    server = config.stash.get(REDIS_KEY, None)
    if server is None:
        return
    server.stop()
    shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config) -> EmbeddedRedis:
    """The session's real redis-server (AOF on, so restart() keeps data)."""
    return pytestconfig.stash[REDIS_KEY]


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A decode_responses client for the session's server."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def clean_redis(redis_server: EmbeddedRedis) -> Iterator[None]:
    """Start every test with an empty Redis and no cached broker."""
    if not redis_server.running:
        redis_server.start()
    with redis_server.client() as client:
        client.flushall()
    reset_cached_broker()
    yield


def reset_cached_broker() -> None:
    """Drop the process-wide broker so it reconnects with the current settings."""
    from tasks_app.connection import reset_broker

    reset_broker()


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    """Real ``runworker_tq`` processes, always stopped at the end of the test."""
    with WorkerPool(tmp_path) as workers:
        yield workers


@pytest.fixture
def inspector() -> Inspector:
    """An Inspector on the test Redis."""
    from tasks_app import producer

    return producer.inspector()


Deployment = TypeVar("Deployment", RedisClusterSet, SentinelSet)


def _topology(request: pytest.FixtureRequest, build: type[Deployment],
              prefix: str) -> Iterator[Deployment]:
    """Start a topology for the session; keep its dir (logs) when a test failed."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    deployment = build(root)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()
        if request.session.testsfailed:
            print(f"{build.__name__} logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster_set(request: pytest.FixtureRequest) -> Iterator[RedisClusterSet]:
    """A real 3-master + 3-replica Redis Cluster, started on first use."""
    yield from _topology(request, RedisClusterSet, "tq-test-cluster-")


@pytest.fixture(scope="session")
def sentinel_set(request: pytest.FixtureRequest) -> Iterator[SentinelSet]:
    """A real master + replica + 3 sentinels, started on first use."""
    yield from _topology(request, SentinelSet, "tq-test-sentinel-")


@pytest.fixture
def cluster(redis_cluster_set: RedisClusterSet) -> RedisClusterSet:
    """The session's cluster, every primary flushed (data and functions)."""
    redis_cluster_set.flush()
    return redis_cluster_set


@pytest.fixture
def sentinels(sentinel_set: SentinelSet) -> SentinelSet:
    """The session's sentinel set, its master flushed (data and functions)."""
    sentinel_set.flush()
    return sentinel_set
