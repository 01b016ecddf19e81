"""Real Redis Cluster and Sentinel deployments on loopback, for the topology tests.

Built from the same server binary as the rest of the suite (``find_redis_server()``),
without redis-cli: the cluster is wired with CLUSTER MEET / ADDSLOTSRANGE / REPLICATE.

    cluster = RedisClusterSet(tmp)      # 3 masters + 3 replicas
    cluster.start(); cluster.url        # redis+cluster://127.0.0.1:p1,...
    sentinel = SentinelSet(tmp)         # 1 master + 1 replica + 3 sentinels
    sentinel.start(); sentinel.url      # redis+sentinel://:pw@127.0.0.1:s1,.../tqmaster
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tasks_app.devserver.redis import HOST, find_redis_server, free_port

START_TIMEOUT = 15.0
SLOTS = 16384
MASTER_NAME = "tqmaster"
SENTINEL_PASSWORD = "tq-sentinel-secret"


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` (errors count as not yet) until true, else RuntimeError."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what} ({last})")


class Node:
    """One server process (data node or sentinel) with its config file, dir and log."""

    def __init__(self, root: Path, name: str, lines: list[str], *, sentinel: bool = False,
                 password: str | None = None) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.lines = [f"port {self.port}", f"bind {HOST}", f"dir {self.dir}",
                      f"logfile {self.dir / 'server.log'}", "daemonize no", *lines]
        self.sentinel = sentinel
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The server's log file (kept after the run, for failures)."""
        return self.dir / "server.log"

    @property
    def address(self) -> str:
        """host:port."""
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        """Write the config (first start only: sentinels rewrite theirs) and start."""
        conf = self.dir / "server.conf"
        if not conf.exists():
            conf.write_text("\n".join(self.lines) + "\n")
            conf.chmod(0o600)
        command = [find_redis_server(), str(conf), *(["--sentinel"] if self.sentinel else [])]
        self.process = subprocess.Popen(command, cwd=self.dir, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        wait_until(self._answers, START_TIMEOUT, f"{self.address} to answer PING")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"server on {self.address} exited:\n{self.log_tail()}")
        with self.client(timeout=0.5) as probe:
            return bool(probe.ping())

    def client(self, timeout: float = 5.0) -> redis.Redis:
        """A direct client of this one node (no cluster or sentinel logic)."""
        return redis.Redis(host=HOST, port=self.port, password=self.password,
                           socket_timeout=timeout, retry=Retry(NoBackoff(), 0))

    def kill(self) -> None:
        """kill -9, as a host crash would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def restart(self) -> None:
        """kill -9, then start again on the same port and dir."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class RedisClusterSet:
    """A real 3-master + 3-replica Redis Cluster on loopback."""

    def __init__(self, root: Path, masters: int = 3) -> None:
        base = ["cluster-enabled yes", "cluster-config-file nodes.conf",
                "cluster-node-timeout 2000", "appendonly no", 'save ""',
                "cluster-require-full-coverage no"]
        # The bus port is given too: the default (port + 10000) may not exist.
        self.bus_ports = [free_port() for _ in range(masters * 2)]
        self.nodes = [Node(root, f"cluster-{i}", [*base, f"cluster-port {bus}"])
                      for i, bus in enumerate(self.bus_ports)]
        self.masters = masters

    @property
    def url(self) -> str:
        """A redis+cluster:// URL listing every node as a seed."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def start(self) -> None:
        """Start every node, join them, give the masters the slots, attach the replicas."""
        for node in self.nodes:
            node.start()
        ids = [str(self._node_id(node)) for node in self.nodes]
        first = self.nodes[0]
        for node in self.nodes[1:]:
            with node.client() as client:
                client.execute_command("CLUSTER", "MEET", HOST, first.port, self.bus_ports[0])
        bounds = [SLOTS * i // self.masters for i in range(self.masters + 1)]
        for i, node in enumerate(self.nodes[:self.masters]):
            with node.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", bounds[i], bounds[i + 1] - 1)
        wait_until(self._all_known, START_TIMEOUT, "every node to know every other")
        for i, node in enumerate(self.nodes[self.masters:]):
            with node.client() as client:
                client.execute_command("CLUSTER", "REPLICATE", ids[i])
        wait_until(self.healthy, START_TIMEOUT, "cluster_state:ok and replicas in sync")

    def _node_id(self, node: Node) -> str:
        with node.client() as client:
            return str(client.execute_command("CLUSTER", "MYID"), "ascii")

    def _all_known(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                text = client.execute_command("CLUSTER", "NODES").decode()
            if len(text.strip().splitlines()) < len(self.nodes) or "handshake" in text:
                return False
        return True

    def healthy(self) -> bool:
        """Every node sees cluster_state:ok, with one replica linked to each master."""
        for node in self.nodes:
            with node.client() as client:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
        return len(self.primaries()) == self.masters and all(
            self._replicas_linked(node) for node in self.primaries())

    def _replicas_linked(self, node: Node) -> bool:
        with node.client() as client:
            return int(client.info("replication").get("connected_slaves", 0)) >= 1

    def primaries(self) -> list[Node]:
        """The nodes that are masters now (failovers move this)."""
        found = []
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            with contextlib.suppress(redis.RedisError), node.client(timeout=1.0) as client:
                if client.info("replication").get("role") == "master":
                    found.append(node)
        return found

    def flush(self) -> None:
        """FLUSHALL and FUNCTION FLUSH on every primary (replicas follow)."""
        for node in self.primaries():
            with node.client() as client:
                client.flushall()
                client.execute_command("FUNCTION", "FLUSH")

    def node_for_port(self, port: int) -> Node:
        """The node listening on ``port``."""
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def logs(self) -> str:
        """The tail of every node's log."""
        return "\n".join(f"--- {n.address} ---\n{n.log_tail()}" for n in self.nodes)


class SentinelSet:
    """A real master + replica watched by three sentinels, all requiring one password."""

    def __init__(self, root: Path, password: str = SENTINEL_PASSWORD) -> None:
        self.password = password
        auth = [f"requirepass {password}", f"masterauth {password}", "appendonly no",
                'save ""']
        self.master = Node(root, "sentinel-master", auth, password=password)
        self.replica = Node(root, "sentinel-replica",
                            [*auth, "replica-priority 100"], password=password)
        self.sentinels = [Node(root, f"sentinel-{i}", [], sentinel=True, password=password)
                          for i in range(3)]
        self.data_nodes = [self.master, self.replica]

    @property
    def url(self) -> str:
        """A redis+sentinel:// URL listing the three sentinels."""
        hosts = ",".join(node.address for node in self.sentinels)
        return f"redis+sentinel://:{self.password}@{hosts}/{MASTER_NAME}"

    def start(self) -> None:
        """Start the master, the replica, then the sentinels; wait until they agree."""
        self.master.start()
        self.replica.lines.append(f"replicaof {HOST} {self.master.port}")
        self.replica.start()
        for node in self.sentinels:
            node.lines += [
                f"requirepass {self.password}",
                f"sentinel monitor {MASTER_NAME} {HOST} {self.master.port} 2",
                f"sentinel auth-pass {MASTER_NAME} {self.password}",
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
                f"sentinel failover-timeout {MASTER_NAME} 5000",
                f"sentinel sentinel-pass {self.password}",
            ]
            node.start()
        wait_until(self._ready, 30.0, "the sentinels to see the replica and each other")

    def _ready(self) -> bool:
        for node in self.sentinels:
            with node.client() as client:
                replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                others = client.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)
            if not replicas or len(others) < len(self.sentinels) - 1:
                return False
        with self.replica.client() as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def master_address(self) -> tuple[str, int]:
        """The master the first answering sentinel names."""
        for node in self.sentinels:
            with contextlib.suppress(redis.RedisError), node.client() as client:
                host, port = client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
                return host.decode(), int(port)
        raise RuntimeError("no sentinel answers")

    def current_master(self) -> Node:
        """The data node that is master now."""
        port = self.master_address()[1]
        return next(node for node in self.data_nodes if node.port == port)

    def failover(self, timeout: float = 20.0) -> Node:
        """SENTINEL FAILOVER: promote the replica; wait until the sentinels name it and it
        is master, and return it (the old master turns replica a little later)."""
        old = self.current_master()
        with self.sentinels[0].client() as client:
            client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        new = next(node for node in self.data_nodes if node is not old)

        def switched() -> bool:
            if self.master_address()[1] != new.port:
                return False
            with new.client() as client:
                return bool(client.info("replication").get("role") == "master")

        wait_until(switched, timeout, f"failover to {new.address}")
        # The sentinels turn the old master into a replica at their next look at it, up
        # to 10 s later; send it the same REPLICAOF now so a test need not wait.
        with old.client() as client:
            client.execute_command("REPLICAOF", HOST, new.port)
        return new

    def flush(self) -> None:
        """FLUSHALL and FUNCTION FLUSH on the master."""
        with self.current_master().client() as client:
            client.flushall()
            client.execute_command("FUNCTION", "FLUSH")

    def stop(self) -> None:
        """Stop the sentinels first (so they start no failover), then the data nodes."""
        for node in [*self.sentinels, self.replica, self.master]:
            node.stop()

    def logs(self) -> str:
        """The tail of every process's log."""
        nodes = [*self.data_nodes, *self.sentinels]
        return "\n".join(f"--- {n.address} ---\n{n.log_tail()}" for n in nodes)
