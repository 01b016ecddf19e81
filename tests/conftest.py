"""Shared fixtures: one real redis-server for the whole session, flushed before each test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from tasks_app.core.inspect import Inspector
from tasks_app.devserver.redis import EmbeddedRedis
from tests.procs import WorkerPool
from tests.topologies import RedisClusterSet, SentinelSet

REDIS_KEY = pytest.StashKey["EmbeddedRedis | TopologyServer"]()

TOPOLOGY = os.environ.get("TQ_TEST_TOPOLOGY", "")
"""'' (one redis-server), 'cluster' or 'sentinel': the Redis the whole session runs on."""
TOPOLOGY_FILES = frozenset({
    # The behaviour tests that also run against a real Cluster and a real Sentinel set
    # (./test.sh --topologies): API contract, lifecycle, priority, named queues, workers,
    # events, metrics, admin, Django Tasks.
    "test_api_tasks.py", "test_api_admin.py", "test_api_errors.py", "test_core_states.py",
    "test_core_queues.py", "test_core_named_queues.py", "test_core_dlq.py",
    "test_core_fencing.py", "test_events_e2e.py", "test_events_ws.py", "test_metrics.py",
    "test_admin_dlq.py", "test_django_tasks.py", "test_worker_delivery.py",
    "test_worker_scheduling.py", "test_worker_shutdown.py", "test_hotpath_batching.py",
    "test_workflows.py", "test_unique_tasks.py", "test_core_schedules.py", "test_progress.py",
    "test_core_type_limits.py",
})


class TopologyServer:
    """Stands in for the session's redis-server when the suite runs on a Cluster or a
    Sentinel set: the same ``url``, ``running``, ``start`` and ``client`` surface; tests
    that stop, crash or address one server directly are standalone-only (skipped)."""

    def __init__(self, deployment: RedisClusterSet | SentinelSet) -> None:
        self.deployment = deployment
        self.url = deployment.url
        self.running = True
        self.data_dir = Path(tempfile.gettempdir())

    def start(self) -> None:
        """Nothing to do: the deployment runs for the whole session."""

    def shutdown(self) -> None:
        """Stop the deployment (session end)."""
        self.deployment.stop()

    def client(self) -> Any:
        """A client for the deployment (a cluster client on a cluster)."""
        from tasks_app.core.topology import make_client

        return make_client(self.url)

    def flushall(self) -> None:
        """Flush every primary (data and functions)."""
        self.deployment.flush()

    def __getattr__(self, name: str) -> Any:
        pytest.skip(f"standalone-only test: uses redis_server.{name}")


def pytest_configure(config: pytest.Config) -> None:
    """Start the session's redis-server and point REDIS_URL (env and Django) at it."""
    if config.option.help or config.option.version:
        return
    server: Any
    if TOPOLOGY:
        build = {"cluster": RedisClusterSet, "sentinel": SentinelSet}[TOPOLOGY]
        deployment = build(Path(tempfile.mkdtemp(prefix=f"tq-test-{TOPOLOGY}-")))
        deployment.start()
        server = TopologyServer(deployment)
    else:
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
    if isinstance(server, TopologyServer):
        server.shutdown()
        return
    server.stop()
    shutil.rmtree(server.data_dir, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a Cluster or Sentinel session, keep only the behaviour tests of TOPOLOGY_FILES; in
    the secondary leg of ./test.sh --matrix, leave out the soaks (marked ``once``): they
    test the engine's behaviour under faults, which the interpreter does not change; and
    the pages in headless Chromium (their subject is the browser side, the same whatever
    Python serves it; the server side of every page is also tested without a browser)."""
    if os.environ.get("TQ_MATRIX_SECONDARY") == "1":
        soaks = [item for item in items if item.get_closest_marker("once")
                 or "browser" in getattr(item, "fixturenames", ())]
        if soaks:
            config.hook.pytest_deselected(items=soaks)
            items[:] = [item for item in items if not item.get_closest_marker("once")]
    if not TOPOLOGY:
        return
    keep = [item for item in items if item.path.name in TOPOLOGY_FILES]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep
    skip = pytest.mark.skip(reason=f"standalone-only, this session runs on {TOPOLOGY}")
    for item in keep:
        if item.get_closest_marker("standalone"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config) -> EmbeddedRedis:
    """The session's real redis-server (AOF on, so restart() keeps data); on a Cluster or
    Sentinel session, a TopologyServer with the same surface (typed as the server the
    tests were written for: what it lacks skips the test)."""
    return pytestconfig.stash[REDIS_KEY]  # type: ignore[return-value]


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A decode_responses client for the session's server (a cluster client on a
    cluster)."""
    from tasks_app.core.topology import make_client

    client = make_client(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def clean_redis(redis_server: EmbeddedRedis) -> Iterator[None]:
    """Start every test with an empty Redis and no cached broker."""
    if isinstance(redis_server, TopologyServer):
        redis_server.flushall()
    else:
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
