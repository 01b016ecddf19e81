"""One Redis versus a three-master Redis Cluster: the drain rate, REST create latency, and
the Redis CPU each master spends per task (and how evenly the masters share it).

    .venv/bin/python bench/scaling.py                # 20,000-task drains, 15 s of REST load
    .venv/bin/python bench/scaling.py --quick        # short form
    .venv/bin/python bench/scaling.py --durability   # also REST p95 with DURABILITY "replica"

Layouts, each on a fresh deployment with no persistence:

- ``standalone``: one redis-server, one queue;
- ``cluster-3q``: a 3-master + 3-replica cluster, three queues whose slots sit on the
  three different masters;
- ``cluster-shards``: the same cluster, one queue of three shards.

For each: tasks are enqueued in bulk, then ``runworker_tq`` (default concurrency, serving
every queue) drains them; the figures are the drain rate, Redis CPU per task on each
master (INFO cpu before and after, divided by the tasks) and the busiest master's share
of the CPU; then POST /api/v1/tasks latency through daphne at a paced rate.  On a
two-core machine the worker, not Redis, limits the drain: what the figures show is
where the Redis work goes.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, percentile

sys.path.insert(0, str(ROOT))

from api import run_paced, wait_ready  # noqa: E402


def masters_of(layout: str, deployment: Any) -> list[Any]:
    """Clients of the primaries (one for the standalone server)."""
    import redis

    if layout == "standalone":
        return [redis.Redis(host="127.0.0.1", port=deployment.port)]
    return [node.client() for node in deployment.primaries()]


def cpu_seconds(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def queues_on_each_master(deployment: Any, n: int) -> list[str]:
    """``n`` queue names whose shard-0 slots are served by different masters."""
    from redis.cluster import key_slot

    from tasks_app.core.keys import Keys

    owners = []
    for node in deployment.primaries():
        with node.client() as client:
            mine = client.execute_command("CLUSTER", "MYID")
            owners.append(mine.decode() if isinstance(mine, bytes) else mine)
    with deployment.primaries()[0].client() as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
    table = []
    for entry in slots:
        node_id = entry[2][2]
        table.append((int(entry[0]), int(entry[1]),
                      node_id.decode() if isinstance(node_id, bytes) else node_id))
    found: dict[str, str] = {}
    for i in range(10_000):
        name = f"q{i}"
        slot = key_slot(Keys("default", name).pending.encode())
        owner = next(o for lo, hi, o in table if lo <= slot <= hi)
        if owner not in found:
            found[owner] = name
        if len(found) == n:
            break
    return list(found.values())


def run_layout(layout: str, tasks: int, seconds: float, durability: bool) -> None:
    from tasks_app.devserver.redis import EmbeddedRedis
    from tests.topologies import RedisClusterSet

    root = Path(tempfile.mkdtemp(prefix=f"tq-scaling-{layout}-"))
    if layout == "standalone":
        deployment: Any = EmbeddedRedis(root, persistence=False)
        deployment.start()
        url = deployment.url
        queues = ["default"]
    else:
        deployment = RedisClusterSet(root)
        deployment.start()
        url = deployment.url
        queues = queues_on_each_master(deployment, 3) if layout == "cluster-3q" else ["default"]
    env = dict(os.environ, REDIS_URL=url, PYTHONUNBUFFERED="1", TASKQUEUE_DEMO_HANDLERS="1",
               DJANGO_SETTINGS_MODULE="taskqueue_project.settings")
    try:
        drain(layout, deployment, url, queues, tasks, env)
        rest(url, env, seconds, "local")
        if durability and layout == "cluster-shards":  # the cluster's masters have replicas
            rest(url, env, seconds, "replica")
    finally:
        deployment.stop()


def drain(layout: str, deployment: Any, url: str, queues: list[str], n: int,
          env: dict[str, str]) -> None:
    from dataclasses import replace

    from tasks_app.core.broker import Broker, new_task_id
    from tasks_app.core.config import Config
    from tasks_app.core.task import TaskSpec

    shards = 3 if layout == "cluster-shards" else 1
    config = Config(redis_url=url, queues=tuple((q, shards) for q in queues),
                    max_pending=10 * n)
    broker = Broker.from_config(config)
    base = TaskSpec(id="", type="echo")
    per_queue = n // len(queues)
    for q in queues:
        for start in range(0, per_queue, 100):  # a call goes to one shard: spread them
            broker.enqueue_many([replace(base, id=new_task_id(), queue=q)
                                 for _ in range(min(100, per_queue - start))])
    total = per_queue * len(queues)
    masters = masters_of(layout, deployment)
    for m in masters:
        m.config_resetstat()
    before = [cpu_seconds(m) for m in masters]
    started = time.perf_counter()
    worker = subprocess.Popen([sys.executable, "manage.py", "runworker_tq", "--log-level",
                               "warning", "--queues", ",".join(queues)], cwd=ROOT,
                              env=env)
    from tasks_app.core.inspect import Inspector

    inspector = Inspector(broker)
    while inspector.totals()["completed"] < total:
        if worker.poll() is not None:
            raise SystemExit("the worker exited")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    worker.terminate()
    worker.wait(30)
    spent = [cpu_seconds(m) - b for m, b in zip(masters, before, strict=True)]
    per_task = [s / total * 1e6 for s in spent]
    busiest = max(spent) / sum(spent) if sum(spent) else 0.0
    print(f"{layout}: drained {total:,} tasks in {elapsed:.2f} s = {total / elapsed:,.0f} "
          f"tasks/s (from process start; {len(queues)} queue(s), {shards} shard(s) each)")
    print("  Redis CPU per task by master: "
          + ", ".join(f"{p:.1f} us" for p in per_task)
          + f"; total {sum(per_task):.1f} us; busiest master's share {busiest:.0%}")
    for i, m in enumerate(masters):
        stats = m.info("commandstats")
        top = sorted(((int(v["calls"]), k.removeprefix("cmdstat_")) for k, v in stats.items()),
                     reverse=True)[:6]
        print(f"  master {i}: calls per task " + ", ".join(f"{name} {n / total:.2f}"
                                                         for n, name in top))
        m.close()
    broker.close()


def rest(url: str, env: dict[str, str], seconds: float, durability: str) -> None:
    port = 8200 + os.getpid() % 500
    env = dict(env, TASKQUEUE_DURABILITY=durability)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env=env, check=True)
    daphne = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p",
                               str(port), "taskqueue_project.asgi:application"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        asyncio.run(run_paced(base, 8, 100.0, 1.0))  # warm-up
        result = asyncio.run(run_paced(base, 16, 200.0, seconds))
        lat = result.latencies
        print(f"  POST /api/v1/tasks, 200 req/s paced, DURABILITY {durability!r}: "
              f"p50 {percentile(lat, 50):.2f} ms, p95 {percentile(lat, 95):.2f} ms, "
              f"p99 {percentile(lat, 99):.2f} ms ({len(lat):,} requests, "
              f"statuses {result.statuses})")
    finally:
        daphne.terminate()
        daphne.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--durability", action="store_true",
                        help='also measure REST latency with DURABILITY "replica"')
    parser.add_argument("--layouts", default="standalone,cluster-3q,cluster-shards")
    args = parser.parse_args()
    tasks, seconds = (3_000, 3.0) if args.quick else (20_000, 15.0)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_project.settings")
    os.environ["TASKQUEUE_DEMO_HANDLERS"] = "1"
    for layout in args.layouts.split(","):
        run_layout(layout, tasks, seconds, args.durability)


if __name__ == "__main__":
    main()
