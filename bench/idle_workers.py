"""What idle workers cost Redis: N ``runworker_tq --concurrency 1`` processes registered on
one Redis with nothing to do, and the commands per second and Redis CPU they cause.

    .venv/bin/python bench/idle_workers.py                 # 100 workers, 30 s window
    .venv/bin/python bench/idle_workers.py --workers 10 --seconds 10   # a short form
    .venv/bin/python bench/idle_workers.py --queues 3      # each serving three queues

Prints figures; asserts nothing.  Each worker is a supervisor and one slot process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, setup_django, start_redis


def redis_totals(client) -> tuple[int, float, dict[str, int]]:  # type: ignore[no-untyped-def]
    """(commands processed, Redis CPU seconds, calls per command) so far."""
    stats = client.info("stats")
    cpu = client.info("cpu")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"])
             for name, v in client.info("commandstats").items()}
    return (int(stats["total_commands_processed"]),
            float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--queues", type=int, default=1,
                        help="queues each worker serves (named q0, q1, ...; 1: default)")
    args = parser.parse_args()
    server = start_redis(persistence=False)
    setup_django()
    from tasks_app.connection import get_broker
    from tasks_app.core.inspect import Inspector

    broker = get_broker()
    queues = ["default"] + [f"q{i}" for i in range(1, args.queues)]
    for name in queues:
        broker.register_queue(name)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "tq-idle-workers"
    log_dir.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = []
    started = time.monotonic()
    try:
        for i in range(args.workers):
            log = open(log_dir / f"w{i}.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "runworker_tq", "--concurrency", "1",
                 "--worker-id", f"idle-{i}", "--queues", ",".join(queues)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        inspector = Inspector(broker)
        while len(inspector.workers()) < args.workers:
            if time.monotonic() - started > 60 + args.workers:
                sys.exit(f"only {len(inspector.workers())} of {args.workers} workers registered")
            time.sleep(0.5)
        print(f"{args.workers} idle workers registered in {time.monotonic() - started:.1f} s, "
              f"each serving {len(queues)} queue(s)")
        time.sleep(6)  # past their first heartbeat and recovery rounds
        client = broker.client
        cmds0, cpu0, calls0 = redis_totals(client)
        t0 = time.monotonic()
        time.sleep(args.seconds)
        cmds1, cpu1, calls1 = redis_totals(client)
        elapsed = time.monotonic() - t0
        ops = (cmds1 - cmds0) / elapsed
        cpu = (cpu1 - cpu0) / elapsed
        print(f"Redis commands: {ops:,.0f}/s in all, {ops / args.workers:.1f}/s per idle worker")
        print(f"Redis CPU: {cpu * 100:.2f}% of one core in all, "
              f"{cpu / args.workers * 1e6:,.0f} us/s per idle worker")
        top = sorted(((calls1.get(n, 0) - calls0.get(n, 0), n) for n in calls1), reverse=True)
        print("  by command (calls/s): " + ", ".join(
            f"{name} {n / elapsed:,.1f}" for n, name in top[:8] if n))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
