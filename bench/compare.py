"""taskqueue side by side with Huey, Dramatiq and Celery: the same no-op task on one Redis.

    .venv/bin/python bench/compare.py            # 20,000-task drains, medians of 3 runs
    .venv/bin/python bench/compare.py --quick    # small sizes, still 3 runs

The peers are not dependencies of taskqueue: on its first run this script makes
bench/.venv-compare (the repo's .venv Python; requirements-local.txt plus
bench/requirements-compare.txt) and runs itself again from there.

One private redis-server with no persistence (no AOF, no RDB), flushed before every
measurement. Each system runs its own worker command with its documented defaults:

    taskqueue  python manage.py runworker_tq            (2 x cpus slot processes)
    Huey       huey_consumer bench.peer_huey.huey -k process -w 4
               (the README's multi-worker consumer; its bare default is one thread)
    Dramatiq   dramatiq bench.peer_dramatiq              (processes = cpus, 8 threads each)
    Celery     celery -A bench.peer_celery worker --pool threads   (concurrency = cpus)

Every handler calls bench.record.record(t) first: the enqueue time the producer put in
the payload (time.time() just before the enqueue call), its own start and end, all from
time.time() on this machine, appended to a file. The figures come from that file, the
same way for every system:

(a) drain: N tasks enqueued, then the worker starts; tasks/s from the first handler start
    to the last handler end, and from the worker's spawn to the last handler end; with
    Redis commands and Redis CPU per task from the spawn until the last task ran.
(b) enqueue: one call per task of the system's normal one-task API, tasks/s.
(c) idle pickup: a warm, idle worker; one task every 5-10 ms; handler start minus the
    producer's time.time() just before the enqueue call; p50 and p99.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import ROOT, percentile, start_redis
from record import count_records, read_records
from redis_profile import PhaseProfile, Profiler, cpu_us_per_task, print_profile

VENV = ROOT / "bench" / ".venv-compare"
REQUIREMENTS = (ROOT / "requirements-local.txt", ROOT / "bench" / "requirements-compare.txt")
INSTALLED_FROM = (*REQUIREMENTS, ROOT / "requirements.txt", ROOT / "pyproject.toml")
"""What the venv is remade on a change of: the requirements and the project's own
dependencies (``-e .`` reads them from pyproject.toml)."""
SYSTEMS = ("taskqueue", "huey", "dramatiq", "celery")
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


# --- the compare venv -------------------------------------------------------------------

def ensure_venv() -> None:
    """Run from bench/.venv-compare, making or updating it first."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    stamp = VENV / ".requirements-stamp"
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in INSTALLED_FROM)).hexdigest()
    python = VENV / "bin" / "python"
    if not python.exists() or not stamp.exists() or stamp.read_text() != digest:
        base = ROOT / ".venv" / "bin" / "python"
        print(f"making {VENV.relative_to(ROOT)} (once) ...", flush=True)
        run_or_exit([str(base if base.exists() else sys.executable), "-m", "venv", str(VENV)])
        run_or_exit([str(python), "-m", "pip", "install", "--quiet",
                     *(arg for path in REQUIREMENTS for arg in ("-r", str(path)))])
        stamp.write_text(digest)
    os.execv(python, [str(python), __file__, *sys.argv[1:]])


def run_or_exit(argv: list[str]) -> None:
    result = subprocess.run(argv, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(argv)}")


# --- the four systems -------------------------------------------------------------------

@dataclass
class System:
    """How to enqueue one no-op task and how to start a worker, for one system."""

    name: str
    enqueue: Callable[[float], Any]
    worker_argv: list[str]
    preload: Callable[[int], None] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def fill(self, n: int) -> None:
        """Enqueue n tasks as fast as the system allows (before a drain)."""
        if self.preload is not None:
            self.preload(n)
        else:
            for _ in range(n):
                self.enqueue(0.0)


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def taskqueue_system() -> System:
    from tasks_app import producer

    def preload(n: int) -> None:
        for offset in range(0, n, 1000):
            producer.enqueue_many([{"type": "bench_noop", "payload": {"t": 0.0}}
                                   for _ in range(min(1000, n - offset))])

    return System("taskqueue", lambda t: producer.enqueue("bench_noop", {"t": t}),
                  [sys.executable, "manage.py", "runworker_tq", "--log-level", "warning"],
                  preload)


def huey_system() -> System:
    from bench.peer_huey import noop

    return System("huey", noop, [venv_bin("huey_consumer"), "bench.peer_huey.huey",
                                 "-k", "process", "-w", "4"])


def dramatiq_system() -> System:
    from bench.peer_dramatiq import noop

    return System("dramatiq", noop.send, [venv_bin("dramatiq"), "bench.peer_dramatiq"])


def celery_system() -> System:
    from bench.peer_celery import noop

    return System("celery", noop.delay, [venv_bin("celery"), "-A", "bench.peer_celery",
                                         "worker", "--pool", "threads", "--loglevel",
                                         "warning"])


FACTORIES = {"taskqueue": taskqueue_system, "huey": huey_system,
             "dramatiq": dramatiq_system, "celery": celery_system}


# --- workers ----------------------------------------------------------------------------

class Worker:
    """One system's worker command in a process group of its own, logging to a file."""

    def __init__(self, system: System, records: Path, log: Path) -> None:
        env = {**os.environ, "BENCH_RECORDS": str(records), "PYTHONPATH": str(ROOT),
               **system.extra_env}
        self.log = log
        self.name = system.name
        with open(log, "ab") as out:
            self.process = subprocess.Popen(system.worker_argv, cwd=ROOT, env=env,
                                            stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        LIVE.append(self)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"{self.name} worker exited ({self.process.returncode}). "
                             f"{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"Last lines of {self.log}:\n" + "\n".join(text)

    def stop(self) -> None:
        """SIGTERM the whole group, SIGKILL it if the leader outlives STOP_TIMEOUT, and
        SIGKILL whatever of the group the leader left behind."""
        if self in LIVE:
            LIVE.remove(self)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(5.0)


LIVE: list[Worker] = []


class BenchError(RuntimeError):
    """A measurement could not be taken."""


def wait_for_records(worker: Worker, path: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (done := count_records(path)) < count:
        worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{worker.name}: {done:,}/{count:,} tasks ran within "
                             f"{timeout:.0f} s. {worker.log_tail()}")
        time.sleep(0.01)


# --- the three measurements -------------------------------------------------------------

@dataclass
class Run:
    """One system's figures from one round."""

    drain_from_first: float = 0.0
    drain_from_spawn: float = 0.0
    commands_per_task: float = 0.0
    cpu_us_per_task: float = 0.0
    enqueue_rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    profile: PhaseProfile | None = None


class Bench:
    """The measurements, sharing one Redis and one scratch directory."""

    def __init__(self, client: Any, scratch: Path) -> None:
        self.client = client
        self.scratch = scratch
        self.counter = 0

    def fresh(self, label: str) -> tuple[Path, Path]:
        """Flush Redis; a new records file and worker log."""
        self.client.flushall()
        self.counter += 1
        stem = self.scratch / f"{self.counter:03d}-{label}"
        return stem.with_suffix(".records"), stem.with_suffix(".log")

    def drain(self, system: System, n: int, run: Run) -> None:
        records, log = self.fresh(f"{system.name}-drain")
        system.fill(n)
        profiler = Profiler(self.client)
        spawned = time.time()
        worker = Worker(system, records, log)
        try:
            wait_for_records(worker, records, n, timeout=max(120.0, n / 100))
            profile = profiler.stop()
        finally:
            worker.stop()
        rows = read_records(str(records))
        first_start = min(row[1] for row in rows)
        last_end = max(row[2] for row in rows)
        run.drain_from_first = len(rows) / (last_end - first_start)
        run.drain_from_spawn = len(rows) / (last_end - spawned)
        run.commands_per_task = profile.total_calls / n
        run.cpu_us_per_task = cpu_us_per_task(profile, n)
        run.profile = profile

    def enqueue(self, system: System, n: int, run: Run) -> None:
        self.fresh(f"{system.name}-enqueue")
        system.enqueue(0.0)  # connect, load scripts
        start = time.perf_counter()
        for _ in range(n):
            system.enqueue(0.0)
        run.enqueue_rate = n / (time.perf_counter() - start)

    def latency(self, system: System, n: int, run: Run) -> None:
        records, log = self.fresh(f"{system.name}-latency")
        worker = Worker(system, records, log)
        try:
            system.enqueue(-1.0)  # a warm-up task: the worker is up once it has run
            wait_for_records(worker, records, 1, timeout=READY_TIMEOUT)
            time.sleep(1.0)  # and idle
            pacing = random.Random(12)
            for _ in range(n):
                system.enqueue(time.time())
                time.sleep(pacing.uniform(0.005, 0.010))
            wait_for_records(worker, records, n + 1, timeout=60.0)
        finally:
            worker.stop()
        waits = [(start - enqueued) * 1000 for enqueued, start, _ in read_records(str(records))
                 if enqueued > 0]
        run.p50_ms = percentile(waits, 50)
        run.p99_ms = percentile(waits, 99)


# --- report -----------------------------------------------------------------------------

def median_of(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(run, attr) for run in runs)


def print_table(title: str, columns: list[tuple[str, str]], results: dict[str, list[Run]],
                key: str, higher_is_better: bool, unit: str) -> None:
    """One metric: each system's medians, the best peer and taskqueue's ratio to it."""
    print(f"\n{title}")
    print(f"  {'system':<11}" + "".join(f"{label:>22}" for label, _ in columns))
    for name, runs in results.items():
        print(f"  {name:<11}" + "".join(f"{median_of(runs, attr):>22,.2f}"
                                        for _, attr in columns))
    peers = {name: median_of(runs, key) for name, runs in results.items() if name != "taskqueue"}
    if "taskqueue" not in results or not peers:
        return
    pick = max if higher_is_better else min
    best_peer = pick(peers, key=lambda name: peers[name])
    ours = median_of(results["taskqueue"], key)
    overall = pick([*peers, "taskqueue"],
                   key=lambda name: ours if name == "taskqueue" else peers[name])
    ratio = ours / peers[best_peer] if peers[best_peer] else float("inf")
    print(f"  taskqueue / best peer ({best_peer}) on {key}: {ratio:.2f}x "
          f"({'higher' if higher_is_better else 'lower'} is better, in {unit}); "
          f"best: {overall}")


def report(results: dict[str, list[Run]], sizes: argparse.Namespace) -> None:
    print(f"\nmedians of {sizes.runs} runs; machine: {os.cpu_count()} cpus, shared with "
          "whatever else runs on it")
    print_table(f"(a) drain of {sizes.drain:,} no-op tasks (tasks/s; Redis work from worker "
                "spawn to the last task)",
                [("from first start", "drain_from_first"), ("from spawn", "drain_from_spawn"),
                 ("redis cmds/task", "commands_per_task"),
                 ("redis cpu us/task", "cpu_us_per_task")],
                results, "drain_from_first", True, "tasks/s")
    print_table(f"(b) enqueue, one call per task ({sizes.enqueue:,} tasks, tasks/s)",
                [("tasks/s", "enqueue_rate")], results, "enqueue_rate", True, "tasks/s")
    print_table(f"(c) idle pickup, enqueue call to handler start ({sizes.latency:,} tasks, "
                "one every 5-10 ms, ms)",
                [("p50 ms", "p50_ms"), ("p99 ms", "p99_ms")], results, "p50_ms", False, "ms")
    if "taskqueue" in results and len(results) > 1:
        p99 = {name: median_of(runs, "p99_ms") for name, runs in results.items()}
        best = min((n for n in p99 if n != "taskqueue"), key=lambda n: p99[n])
        print(f"  taskqueue / best peer ({best}) on p99_ms: "
              f"{p99['taskqueue'] / p99[best]:.2f}x (lower is better); "
              f"best: {min(p99, key=lambda n: p99[n])}")


# --- main -------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--runs", type=int, default=3, help="rounds (the median is printed)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument("--profile", action="store_true",
                        help="each system's Redis commands per task during its last drain")
    parser.add_argument("--drain", type=int, help="tasks per drain (20,000; quick 2,000)")
    parser.add_argument("--enqueue", type=int, help="tasks per enqueue run (5,000; quick 1,000)")
    parser.add_argument("--latency", type=int, help="tasks per latency run (1,000; quick 200)")
    args = parser.parse_args()
    args.drain = args.drain or (2_000 if args.quick else 20_000)
    args.enqueue = args.enqueue or (1_000 if args.quick else 5_000)
    args.latency = args.latency or (200 if args.quick else 1_000)
    args.systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    ensure_venv()
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below runs
    os.environ.pop("REDIS_URL", None)  # always a private, persistence-free server
    server = start_redis(persistence=False)
    os.environ["BENCH_REDIS_URL"] = os.environ["REDIS_URL"]
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.compare_settings"
    import django

    django.setup()
    client = server.client()
    systems = [FACTORIES[name]() for name in args.systems]
    results: dict[str, list[Run]] = {system.name: [] for system in systems}
    print(f"{os.cpu_count()} cpus; Redis {client.info('server').get('redis_version')} on "
          f"{server.url} (no AOF, no RDB); drain {args.drain:,}, enqueue {args.enqueue:,}, "
          f"latency {args.latency:,} tasks; {args.runs} runs", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="tq-compare-") as scratch:
            bench = Bench(client, Path(scratch))
            for round_no in range(1, args.runs + 1):
                for system in systems:
                    run = Run()
                    bench.drain(system, args.drain, run)
                    bench.enqueue(system, args.enqueue, run)
                    bench.latency(system, args.latency, run)
                    results[system.name].append(run)
                    print(f"  run {round_no} {system.name:<10} drain {run.drain_from_first:,.0f}/s "
                          f"enqueue {run.enqueue_rate:,.0f}/s pickup p50 {run.p50_ms:.2f} ms "
                          f"p99 {run.p99_ms:.2f} ms", flush=True)
        report(results, args)
        if args.profile:
            print(f"\nRedis work per task during the last drain of {args.drain:,} tasks "
                  "(from worker spawn to the last task)")
            for name, runs in results.items():
                if runs[-1].profile is not None:
                    print_profile(name, runs[-1].profile, args.drain)
    except BenchError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        for worker in list(LIVE):
            worker.stop()
        server.stop()

if __name__ == "__main__":
    main()
