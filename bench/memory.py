"""Memory of a default worker: PSS, RSS and USS of the supervisor and each slot process.

    .venv/bin/python bench/memory.py                   # default concurrency, median of 3 runs
    .venv/bin/python bench/memory.py --concurrency 8 --runs 1 --tasks 5000
    .venv/bin/python bench/memory.py --floor          # this site's processes doing nothing

Starts a private Redis (unless REDIS_URL is set) and ``manage.py runworker_tq`` of this
repository's own site, waits until it is registered and idle, reads
/proc/<pid>/smaps_rollup of the supervisor and all its descendants, runs echo tasks and
reads them again (slots that touch inherited objects un-share copy-on-write pages).
PSS (proportional set size) splits each shared page among the processes sharing it, so the
PSS of all processes adds up to the memory the worker really uses; RSS counts shared pages
once per process; USS (Private_Clean + Private_Dirty) is what each process alone holds.
The anonymous part of PSS (Pss_Anon) leaves out the shared libraries' pages, whose PSS also
depends on how many other processes on the machine map the same libraries.
With ``--floor`` it prints instead what the same number of processes of this site cost when
they do nothing at all: one process that ran django.setup() and imported the worker, frozen
(gc.freeze) and forked once per slot into children that only sleep; no worker does better.
Linux only.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, setup_django, start_redis

PROC = Path("/proc")
SETTLE = 3.0  # seconds a fresh or drained worker is left to settle before reading


@dataclass
class Usage:
    """One process's memory, in kB as the kernel reports it."""

    pid: int
    role: str
    pss: int
    rss: int
    uss: int
    anon: int  # PSS of anonymous memory: the Python heap, not the shared libraries


def read_rollup(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/smaps_rollup."""
    fields: dict[str, int] = {}
    for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            fields[name] = int(parts[0])
    return fields


def children(pid: int) -> list[int]:
    """Direct children of a process (every thread's list)."""
    found: list[int] = []
    for task in (PROC / str(pid) / "task").iterdir():
        with open(task / "children") as f:
            found += [int(p) for p in f.read().split()]
    return sorted(set(found))


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    for child in children(pid):
        out += [child, *descendants(child)]
    return out


def measure(pid: int) -> list[Usage]:
    """The supervisor's and every descendant's memory."""
    rows = []
    for n, proc in enumerate([pid, *descendants(pid)]):
        try:
            fields = read_rollup(proc)
        except (FileNotFoundError, ProcessLookupError):
            continue
        role = "supervisor" if n == 0 else f"child {n}"
        rows.append(Usage(proc, role, fields.get("Pss", 0), fields.get("Rss", 0),
                          fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
                          fields.get("Pss_Anon", 0)))
    return rows


def mb(kb: float) -> str:
    return f"{kb / 1024:8.1f}"


def print_table(title: str, rows: list[Usage]) -> None:
    print(f"  {title}")
    print(f"    {'process':<12} {'pid':>7} {'PSS MB':>8} {'RSS MB':>8} {'USS MB':>8} "
          f"{'anon PSS':>8}")
    for r in rows:
        print(f"    {r.role:<12} {r.pid:>7} {mb(r.pss)} {mb(r.rss)} {mb(r.uss)} {mb(r.anon)}")
    print(f"    {'total':<12} {'':>7} {mb(sum(r.pss for r in rows))} "
          f"{mb(sum(r.rss for r in rows))} {mb(sum(r.uss for r in rows))} "
          f"{mb(sum(r.anon for r in rows))}")


def start_worker(worker_id: str, concurrency: int | None) -> subprocess.Popen[bytes]:
    extra = ["--concurrency", str(concurrency)] if concurrency else []
    return subprocess.Popen(
        [sys.executable, "manage.py", "runworker_tq", "--log-level", "warning",
         "--worker-id", worker_id, *extra],
        cwd=ROOT, env=dict(os.environ),
    )


def wait_idle(worker: subprocess.Popen[bytes], worker_id: str, slots: int) -> None:
    """Until the worker is in the registry and all its slots are forked, then SETTLE more."""
    from tasks_app.connection import get_broker
    from tasks_app.core.inspect import Inspector

    inspector = Inspector(get_broker())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with status {worker.returncode}")
        registered = any(w.id == worker_id for w in inspector.workers())
        if registered and len(children(worker.pid)) >= slots:
            time.sleep(SETTLE)
            return
        time.sleep(0.1)
    raise SystemExit("the worker did not start in time")


def run_tasks(n: int) -> None:
    """Enqueue n echo tasks and wait until they are done."""
    from tasks_app import producer
    from tasks_app.connection import get_broker
    from tasks_app.core.inspect import Inspector

    for offset in range(0, n, 1000):
        producer.enqueue_many([{"type": "echo", "payload": {"i": i}}
                               for i in range(offset, min(offset + 1000, n))])
    inspector = Inspector(get_broker())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if sum(inspector.queue_depths().values()) == 0 and inspector.running_count() == 0:
            time.sleep(SETTLE)
            return
        time.sleep(0.05)
    raise SystemExit("the tasks did not finish in time")


def one_run(concurrency: int | None, slots: int, tasks: int) -> tuple[int, int, int]:
    """Start a worker, print its memory idle and after the tasks; return both PSS totals and
    the idle anonymous PSS (kB)."""
    from tasks_app.connection import get_broker

    get_broker().client.flushall()
    worker_id = f"memory-{uuid.uuid4().hex[:6]}"
    worker = start_worker(worker_id, concurrency)
    try:
        wait_idle(worker, worker_id, slots)
        idle = measure(worker.pid)
        print_table("idle", idle)
        run_tasks(tasks)
        busy = measure(worker.pid)
        print_table(f"idle after {tasks:,} echo tasks", busy)
    finally:
        worker.terminate()
        worker.wait(30)
    return sum(r.pss for r in idle), sum(r.pss for r in busy), sum(r.anon for r in idle)


FLOOR = """
import gc, os, sys, time
import django
django.setup()
import workers_app.management.commands.runworker_tq, workers_app.runtime.slot
gc.collect()
gc.freeze()
children = []
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        time.sleep(3 * SETTLE)
        os._exit(0)
    children.append(pid)
print(*children, flush=True)
for pid in children:
    os.waitpid(pid, 0)
"""


def floor(slots: int) -> tuple[int, int]:
    """Print the memory of an idle process of this site and ``slots`` forks of it doing
    nothing; return the PSS total and its anonymous part (kB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = FLOOR.replace("SETTLE", repr(SETTLE))
    proc = subprocess.Popen([sys.executable, "-c", code, str(slots)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(SETTLE)
        rows = measure(proc.pid)
        print_table(f"floor: this site's process and {slots} idle fork(s)", rows)
    finally:
        proc.wait(60)
    return sum(r.pss for r in rows), sum(r.anon for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=None,
                        help="slot processes (default: the product default)")
    parser.add_argument("--runs", type=int, default=3, help="runs; the median is printed")
    parser.add_argument("--tasks", type=int, default=2000, help="echo tasks for the second figure")
    parser.add_argument("--floor", action="store_true",
                        help="print what this site's processes cost doing nothing, and exit")
    args = parser.parse_args()
    if not (PROC / "self" / "smaps_rollup").exists():
        raise SystemExit("bench/memory.py needs Linux: /proc/<pid>/smaps_rollup is missing")
    server = start_redis()
    setup_django()
    from tasks_app.conf import tq_settings

    slots = args.concurrency or tq_settings.core_config().concurrency
    if args.floor:
        try:
            floors = [floor(slots) for _ in range(args.runs)]
        finally:
            if server is not None:
                server.stop()
        total = statistics.median(f[0] for f in floors)
        anon = statistics.median(f[1] for f in floors)
        print(f"floor, {slots} idle fork(s) of this site, PSS summed, median of {args.runs}: "
              f"{total / 1024:.1f} MB (anonymous {anon / 1024:.1f} MB)")
        return
    try:
        totals = []
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}: runworker_tq with {slots} slot(s)")
            totals.append(one_run(args.concurrency, slots, args.tasks))
    finally:
        if server is not None:
            server.stop()
    idle = statistics.median(t[0] for t in totals)
    busy = statistics.median(t[1] for t in totals)
    anon = statistics.median(t[2] for t in totals)
    print(f"worker memory, {slots} slot(s), PSS summed over the supervisor and its slots, "
          f"median of {args.runs}: idle {idle / 1024:.1f} MB (anonymous {anon / 1024:.1f} MB), "
          f"after {args.tasks:,} echo tasks {busy / 1024:.1f} MB")


if __name__ == "__main__":
    main()
