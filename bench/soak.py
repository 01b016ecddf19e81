"""Chaos soak: workers killed with SIGKILL and Redis restarted while tasks run.

    .venv/bin/python bench/soak.py                 # 5,000 tasks, 60 s of chaos
    .venv/bin/python bench/soak.py --quick         # 600 tasks, 12 s (the CI form)

Checks what the queue promises: every accepted task completes, none is lost,
none completes twice (the cluster-wide completion counter equals the number
of tasks), nothing dead-letters.  Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time

from common import ROOT, setup_django, start_redis

FAST = {
    "TASKQUEUE_LEASE_SECONDS": "2",
    "TASKQUEUE_HEARTBEAT_INTERVAL": "0.5",
    "TASKQUEUE_HEARTBEAT_TIMEOUT": "2",
    "TASKQUEUE_RECOVERY_INTERVAL": "0.5",
    "TASKQUEUE_RETRY_BACKOFF_BASE": "0.05",
    "TASKQUEUE_RETRY_BACKOFF_MAX": "0.5",
    "TASKQUEUE_SHUTDOWN_GRACE": "5",
}


def start_worker() -> subprocess.Popen[bytes]:
    env = {**os.environ, **FAST}
    return subprocess.Popen(
        [sys.executable, "manage.py", "runworker_tq", "-c", "2", "--log-level", "error"],
        cwd=ROOT, env=env, stderr=subprocess.DEVNULL,
    )


def enqueue(n: int) -> list[str]:
    from tasks_app import producer

    ids: list[str] = []
    for offset in range(0, n, 500):
        batch = []
        for i in range(offset, min(offset + 500, n)):
            if i % 4 == 0:
                batch.append({"type": "sleep", "payload": {"seconds": random.choice([0.01, 0.05])},
                              "max_retries": 50})
            else:
                batch.append({"type": "echo", "payload": {"i": i}, "max_retries": 50})
        ids += [t.id for t in producer.enqueue_many(batch)]
    return ids


def states(ids: list[str]) -> dict[str, int]:
    from tasks_app.connection import get_broker

    broker = get_broker()
    pipe = broker.client.pipeline(transaction=False)
    for tid in ids:
        pipe.hget(broker.keys.task(tid), "state")
    counts: dict[str, int] = {}
    for state in pipe.execute():
        counts[str(state)] = counts.get(str(state), 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, chaos_seconds, n_workers = (600, 12, 2) if args.quick else (5000, 60, 3)
    server = start_redis()
    if server is None:
        raise SystemExit("soak needs its own Redis (it restarts it): unset REDIS_URL")
    setup_django()
    from tasks_app.connection import get_broker, reset_broker
    from tasks_app.core import metrics

    workers = [start_worker() for _ in range(n_workers)]
    kills = restarts = 0
    try:
        ids = enqueue(n)
        print(f"enqueued {n} tasks; {n_workers} workers; {chaos_seconds} s of chaos")
        end = time.monotonic() + chaos_seconds
        restart_at = time.monotonic() + chaos_seconds / 2
        while time.monotonic() < end:
            time.sleep(random.uniform(0.5, 1.5))
            victim = random.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            workers[victim] = start_worker()
            kills += 1
            if restarts == 0 and time.monotonic() > restart_at:
                server.restart()
                reset_broker()
                restarts += 1
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            counts = states(ids)
            if counts.get("completed", 0) + counts.get("dead_letter", 0) == n:
                break
            time.sleep(0.5)
        counts = states(ids)
        snap = metrics.parse(get_broker().client.hgetall(get_broker().keys.metrics))
        completions = sum(v for (t, status), v in snap.counters["completed"].items()
                          if status == "success")
        retries = sum(snap.counters["retries"].values())
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        server.stop()
    print(f"kills: {kills}, redis restarts: {restarts}, retried attempts: {retries}")
    print(f"final states: {counts}")
    print(f"completions counted: {completions} (tasks: {n})")
    ok = counts.get("completed") == n and completions == n
    print("OK: every task completed exactly once" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
