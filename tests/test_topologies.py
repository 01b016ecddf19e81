"""Redis Sentinel and Redis Cluster: URLs, and the queue on a real cluster and sentinel set."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.test import override_settings
from redis.cluster import RedisCluster

from taskqueue_project.settings import channel_layers
from tasks_app import producer
from tasks_app.core.broker import Broker, Ended
from tasks_app.core.config import Config
from tasks_app.core.errors import BrokerUnavailable
from tasks_app.core.states import TaskState
from tasks_app.core.topology import Kind, make_client, parse_redis_url
from tests.api_support import call
from tests.factories import ALL_PRIORITIES, WORKER, make_spec, register
from tests.procs import WorkerPool, wait_for
from tests.test_cli import tq
from tests.test_security_login import PASSWORD, login
from tests.topologies import MASTER_NAME, RedisClusterSet, SentinelSet, wait_until

pytestmark = pytest.mark.once  # version-independent: the newest-Python leg runs it


# -- URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "kind", "nodes", "extra"), [
    ("redis://localhost:6380/2", Kind.STANDALONE, (("localhost", 6380),), {"db": 2}),
    ("rediss://:pw@cache:6379/0", Kind.STANDALONE, (("cache", 6379),),
     {"tls": True, "password": "pw"}),
    ("unix:///run/redis.sock?db=1", Kind.STANDALONE, (), {"db": 1}),
    ("redis+sentinel://s1:26379,s2:26380,s3/mymaster", Kind.SENTINEL,
     (("s1", 26379), ("s2", 26380), ("s3", 26379)), {"master_name": "mymaster", "db": 0}),
    ("rediss+sentinel://app:pw@[::1]:5000/m/3", Kind.SENTINEL, (("::1", 5000),),
     {"master_name": "m", "db": 3, "tls": True, "username": "app", "password": "pw"}),
    ("redis+sentinel://:pw@s1:26379/m?sentinel_auth=none", Kind.SENTINEL, (("s1", 26379),),
     {"sentinel_auth": False, "password": "pw"}),
    ("redis+cluster://n1:7000,n2:7001", Kind.CLUSTER, (("n1", 7000), ("n2", 7001)), {}),
    ("rediss+cluster://:a%40b@n1:7000/", Kind.CLUSTER, (("n1", 7000),),
     {"tls": True, "password": "a@b"}),
])
def test_redis_urls_of_every_topology_parse(url: str, kind: Kind,
                                            nodes: tuple[tuple[str, int], ...],
                                            extra: dict[str, Any]) -> None:
    target = parse_redis_url(url)
    assert (target.kind, target.nodes) == (kind, nodes)
    for name, value in extra.items():
        assert getattr(target, name) == value


@pytest.mark.parametrize(("url", "says"), [
    ("http://host:6379", "unknown Redis URL scheme 'http'"),
    ("redis+sentinel://:SECRET@s1:26379", "must name the master"),
    ("redis+sentinel://:SECRET@s1:26379/", "must name the master"),
    ("redis+sentinel://:SECRET@s1:26379/m/x", "must be a number, not 'x'"),
    ("redis+sentinel://:SECRET@s1:26379/m/1/2", "at most /MASTER_NAME/DB"),
    ("redis+sentinel://:SECRET@s1:port/m", "invalid port 'port' for host 's1'"),
    ("redis+sentinel://:SECRET@s1:26379,,s2/m", "a host is missing"),
    ("redis+sentinel://:SECRET@s1:99999/m", "invalid port '99999'"),
    ("redis+sentinel://:SECRET@s1/m?sentinel_auth=maybe", "sentinel_auth must be one of"),
    ("redis+cluster://:SECRET@n1:7000/3", "takes no database part"),
    ("redis+cluster://:SECRET@:7000", "a host is missing before the port"),
    ("redis+cluster://:SECRET@n1:7000?db=2", "unknown option 'db'"),
    ("redis://:SECRET@host:6379/notadb", "must be a number, not 'notadb'"),
    ("redis://:SECRET@host:port/0", "malformed Redis URL"),
])
def test_a_malformed_url_names_the_problem_and_never_the_password(url: str, says: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_redis_url(url)
    assert says in str(raised.value)
    assert "SECRET" not in str(raised.value)
    assert "SECRET" not in repr(parse_redis_url("redis+cluster://:SECRET@n1:7000"))


# -- on a real cluster and sentinel set ------------------------------------------


@pytest.fixture(params=["cluster", "sentinel"])
def topology(request: pytest.FixtureRequest) -> RedisClusterSet | SentinelSet:
    """Each real topology in turn, flushed."""
    name = "cluster" if request.param == "cluster" else "sentinels"
    deployment: RedisClusterSet | SentinelSet = request.getfixturevalue(name)
    return deployment


@pytest.fixture
def broker(topology: RedisClusterSet | SentinelSet) -> Iterator[Broker]:
    """A broker on the topology's URL."""
    b = Broker.from_config(Config(redis_url=topology.url))
    yield b
    b.close()


def run_one_task(broker: Broker) -> None:
    """Submit, take (blocking wait and all) and finish one task; it must complete."""
    register(broker)
    task = broker.submit([make_spec(payload={"n": 1})]).tasks[0]
    _, got = broker.wait_and_take(WORKER, ALL_PRIORITIES, 1.0, 100)
    assert isinstance(got, list) and task.id in [job.id for job in got]  # (and earlier ones)
    ended = [Ended(job, "ok", '"done"') for job in got]
    outcomes, _ = broker.finish(WORKER, ended, 0, ALL_PRIORITIES)
    assert all(o is not None and o.state is TaskState.COMPLETED for o in outcomes)
    assert broker.get(task.id).state is TaskState.COMPLETED


def test_the_broker_submits_takes_and_finishes_on_each_topology(broker: Broker) -> None:
    run_one_task(broker)
    expected = RedisCluster if "cluster" in broker.config.redis_url else redis.Redis
    assert isinstance(broker.client, expected)
    assert isinstance(broker.blocking_client, expected)


def test_the_function_library_is_loaded_again_on_the_node_that_lost_it(
        topology: RedisClusterSet | SentinelSet, broker: Broker) -> None:
    run_one_task(broker)
    node = serving_node(topology, broker)
    with node.client() as direct:
        assert broker.scripts.library_name.encode() in str(
            direct.execute_command("FUNCTION", "LIST")).encode()
        direct.execute_command("FUNCTION", "FLUSH")
        assert direct.execute_command("FUNCTION", "LIST") == []
    task = broker.enqueue(make_spec())
    assert broker.get(task.id).state is TaskState.PENDING
    with node.client() as direct:
        assert broker.scripts.library_name in str(direct.execute_command("FUNCTION", "LIST"))


def test_on_a_cluster_the_library_loads_while_another_primary_is_down(
        cluster: RedisClusterSet) -> None:
    broker = Broker.from_config(Config(redis_url=cluster.url))
    try:
        run_one_task(broker)
        node = serving_node(cluster, broker)
        other = next(n for n in cluster.primaries() if n is not node)
        other.kill()
        with node.client() as direct:
            direct.execute_command("FUNCTION", "FLUSH")
        task = broker.enqueue(make_spec())  # loads the library where the key lives only
        assert broker.get(task.id).state is TaskState.PENDING
    finally:
        broker.close()
        other.start()
        wait_until(cluster.healthy, 30.0, "the cluster to heal")


def serving_node(topology: RedisClusterSet | SentinelSet, broker: Broker) -> Any:
    """The data node holding the broker's keys."""
    if isinstance(topology, SentinelSet):
        return topology.current_master()
    port = broker.client.get_node_from_key(broker.keys.pending).port
    return topology.node_for_port(port)


def test_health_endpoint_and_rate_limit_work_on_each_topology(
        topology: RedisClusterSet | SentinelSet) -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": topology.url, "SUBMIT_RATE_LIMIT": "2/m"}):
        health = call("GET", "/admin/health")
        statuses = [call("POST", "/api/v1/tasks", {"type": "echo"}).status for _ in range(3)]
    assert (health.status, health.body["redis"]) == (200, "connected")
    assert statuses == [201, 201, 429]


def test_health_reports_an_unreachable_cluster() -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": "redis+cluster://127.0.0.1:1"}):
        health = call("GET", "/admin/health")
    assert (health.status, health.body["redis"]) == (503, "disconnected")


def test_a_worker_process_completes_a_task_on_each_topology(
        topology: RedisClusterSet | SentinelSet, broker: Broker, tmp_path: Path) -> None:
    task = broker.enqueue(make_spec(payload={"x": 1}))
    env = {"REDIS_URL": topology.url, "TASKQUEUE_EVENTS_ENABLED": "0"}
    with WorkerPool(tmp_path) as pool:
        pool.start(env=env)
        wait_for(lambda: broker.get(task.id).state is TaskState.COMPLETED, 20.0,
                 message=f"task {task.id} to complete")


def test_the_broker_follows_a_sentinel_failover_without_restart(sentinels: SentinelSet) -> None:
    broker = Broker.from_config(Config(redis_url=sentinels.url))
    try:
        run_one_task(broker)
        pool = broker.client.connection_pool
        opened = [pool.get_connection() for _ in range(4)]  # as four busy threads would
        for connection in opened:
            pool.release(connection)
        old = sentinels.current_master()
        new = sentinels.failover()
        assert new is not old
        wait_for(lambda: worked(broker), 10.0, message="a task run on the new master")
        run_one_task(broker)
        with new.client() as direct:
            assert direct.info("replication")["role"] == "master"
            assert direct.exists(broker.keys.seq)
        # The idle connections still open to the old master are not handed out again.
        taken = [pool.get_connection() for _ in range(4)]
        assert {(c.host, c.port) for c in taken} == {("127.0.0.1", new.port)}
        for connection in taken:
            pool.release(connection)
    finally:
        broker.close()


def worked(broker: Broker) -> bool:
    """True once a task runs through (BrokerUnavailable while the master moves, and once
    per pool whose connections still point at the old master)."""
    try:
        run_one_task(broker)
    except BrokerUnavailable:
        return False
    return True


def test_a_sentinel_url_without_credentials_is_refused_by_the_protected_set(
        sentinels: SentinelSet) -> None:
    hosts = ",".join(node.address for node in sentinels.sentinels)
    client = make_client(f"redis+sentinel://{hosts}/{MASTER_NAME}", socket_timeout=2.0)
    with pytest.raises(redis.RedisError):
        client.ping()
    client.close()


@pytest.mark.django_db
def test_login_throttle_counts_failures_on_each_topology(
        topology: RedisClusterSet | SentinelSet) -> None:
    User.objects.create_user("alice", password=PASSWORD)
    with override_settings(TASKQUEUE={"REDIS_URL": topology.url, "AUTH_ENABLED": True,
                                      "LOGIN_MAX_FAILURES_PER_USERNAME": 2}):
        statuses = [login("alice", "wrong").status for _ in range(2)]
        statuses.append(login("alice", PASSWORD).status)
    assert statuses == [401, 401, 429]


def test_the_cli_enqueues_and_reads_on_each_topology(
        topology: RedisClusterSet | SentinelSet) -> None:
    with override_settings(TASKQUEUE={"REDIS_URL": topology.url}):
        made = tq("enqueue", "echo", '{"a": 1}', "--json")
        task_id = json.loads(made.out)["id"]
        got = tq("get", task_id, "--json")
        status = tq("status", "--json")
        queues = tq("queues", "--json")
        cancelled = tq("cancel", task_id, "--json")
    assert (made.code, got.code, status.code, queues.code, cancelled.code) == (0, 0, 0, 0, 0)
    assert json.loads(got.out)["state"] == "pending"
    assert "pending" in status.out and "default" in queues.out
    assert json.loads(cancelled.out)["state"] == "cancelled"


def test_the_cli_names_an_unreachable_cluster_without_its_password() -> None:
    url = "redis+cluster://:hunter2@127.0.0.1:1,127.0.0.1:2"
    with override_settings(TASKQUEUE={"REDIS_URL": url}):
        run = tq("status")
    assert run.code == 1
    assert "redis+cluster://:***@127.0.0.1:1,127.0.0.1:2" in run.err and "hunter2" not in run.err


# -- manage.py check and startup ---------------------------------------------------

DEAD_SENTINELS = "redis+sentinel://:hunter2@127.0.0.1:1,127.0.0.1:2/tqmaster"


def check_messages(url: str, layer_url: str | None = None,
                   hosts: list[Any] | None = None) -> list[tuple[str, str]]:
    """(id, text) of the taskqueue messages for a REDIS_URL and its channel layer."""
    layers = channel_layers(layer_url or url)
    if hosts is not None:
        layers["default"]["CONFIG"]["hosts"] = hosts
    with override_settings(TASKQUEUE={"REDIS_URL": url}, CHANNEL_LAYERS=layers):
        return [(str(m.id), m.msg) for m in run_checks(include_deployment_checks=False)
                if m.id and m.id.startswith("taskqueue.")]


def test_check_passes_a_reachable_sentinel_set_and_cluster_with_their_layers(
        sentinels: SentinelSet, cluster: RedisClusterSet) -> None:
    assert check_messages(sentinels.url) == []
    assert check_messages(cluster.url) == []


def test_check_names_a_sentinel_set_with_no_reachable_sentinel() -> None:
    ((ident, text),) = check_messages(DEAD_SENTINELS)
    assert ident == "taskqueue.E022"
    assert "127.0.0.1:1, 127.0.0.1:2" in text and "tqmaster" in text and "hunter2" not in text


def test_check_refuses_a_topology_url_as_a_channel_layer_host() -> None:
    url = "redis+cluster://127.0.0.1:7000"
    assert [i for i, _ in check_messages(url, hosts=[url])] == ["taskqueue.E021"]
    other = channel_layers("redis+cluster://10.0.0.9:7000")["default"]["CONFIG"]["hosts"]
    assert [i for i, _ in check_messages(url, hosts=other)] == ["taskqueue.W003"]


@pytest.mark.parametrize("url", ["redis+cluster://:hunter2@n1:7000/3",
                                 "redis+sentinel://:hunter2@s1:26379"])
def test_check_names_a_malformed_url_without_its_password(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    found = check_messages(url, layer_url="redis://127.0.0.1:6379/0")
    assert [i for i, _ in found] == ["taskqueue.E002"]
    assert "hunter2" not in found[0][1] and "not a valid Redis URL" in found[0][1]
    monkeypatch.setenv("REDIS_URL", url)
    with override_settings(TASKQUEUE={}):
        env = [(m.id, m.msg) for m in run_checks() if m.id == "taskqueue.E020"]
    assert len(env) == 1 and "hunter2" not in env[0][1]


def test_a_worker_refuses_to_start_when_no_sentinel_answers(tmp_path: Path) -> None:
    with WorkerPool(tmp_path) as pool:
        worker = pool.start(env={"REDIS_URL": DEAD_SENTINELS})
        code = worker.wait(30)
    assert code != 0
    assert "taskqueue.E022" in worker.log() and "No sentinel of REDIS_URL answers" in worker.log()
    assert "hunter2" not in worker.log()


@pytest.mark.django_db(transaction=True)
def test_ws_clients_get_task_events_on_each_topology(
        topology: RedisClusterSet | SentinelSet) -> None:
    from tests.test_events_ws import connect, next_event

    async def scenario() -> None:
        client = await connect()
        task = await asyncio.to_thread(producer.enqueue, "echo", {"x": 1})
        got = await next_event(client, timeout=5)
        assert (got["type"], got["data"]["task_id"]) == ("task.submitted", task.id)
        await client.disconnect()

    with override_settings(TASKQUEUE={"REDIS_URL": topology.url},
                           CHANNEL_LAYERS=channel_layers(topology.url)):
        asyncio.run(scenario())


def test_replica_durable_writes_follow_a_cluster_failover_without_restart(
        cluster: RedisClusterSet) -> None:
    """DURABILITY "replica" sends its writes straight to the node holding the key: after
    that master is killed and its replica promoted, they must find the new owner (not
    answer MOVED, or fail on the dead node, for ever)."""
    broker = Broker.from_config(Config(redis_url=cluster.url, durability="replica"))
    victim = serving_node(cluster, broker)

    def submits() -> bool:
        try:
            task = broker.enqueue(make_spec())
        except BrokerUnavailable:  # ReplicaTimeout included, while a replica syncs
            return False
        return broker.get(task.id).state is TaskState.PENDING

    try:
        wait_for(submits, 15.0, message="a replica-durable create (replicas in sync)")
        victim.kill()
        wait_until(lambda: len(cluster.primaries()) == cluster.masters, 30.0,
                   "a replica promoted in the killed master's place")
        victim.start()  # rejoins as a replica of the promoted one (WAIT needs a replica)
        wait_until(cluster.healthy, 30.0, "the cluster to heal")
        wait_for(submits, 15.0, message="a replica-durable create on the promoted master")
        assert serving_node(cluster, broker) is not victim
    finally:
        broker.close()
        if victim.process is None or victim.process.poll() is not None:
            victim.start()
        wait_until(cluster.healthy, 30.0, "the cluster to heal")
