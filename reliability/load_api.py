"""Load: tasks submitted through the REST API, drained by four workers, memory watched.

    .venv/bin/python reliability/load_api.py                      # 100,000 tasks
    .venv/bin/python reliability/load_api.py --soak-minutes 10    # ... then 10 min steady load
    .venv/bin/python reliability/load_api.py --quick              # 2,000 tasks, 30 s soak (CI)

Starts its own Redis (AOF on) unless REDIS_URL is set, daphne the way ./run.sh starts it,
and ``--workers`` (4) ``runworker_tq`` processes at their default concurrency, running the
demo ``echo`` handler.  Client processes (``--clients``, each with keep-alive HTTP/1.1
connections) submit a mix of single ``POST /api/v1/tasks`` and ``POST /api/v1/tasks/batch``
requests while the workers drain.

Pass conditions (exit 1 when one fails):
- every response is 2xx (counted by status);
- every submitted task id ends ``completed`` (read back from Redis, and a sample through
  ``GET /api/v1/tasks/{id}``), and the queue depth returns to 0 with nothing running;
- soak (when run): the same, and no process grows: for daphne, each worker supervisor and
  each slot, RSS at the end minus RSS after warm-up (the first fifth of the soak) is at most
  max(5 MiB, 10 %).  See docs/reliability.md for why.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bench.common import percentile, setup_django, start_redis  # noqa: E402
from reliability.common import children_of  # noqa: E402

GROWTH_ABS_MIB = 5.0
GROWTH_REL = 0.10


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` from /proc (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ProcessLookupError(pid)


# -- HTTP client ---------------------------------------------------------------------------


class Http:
    """One keep-alive HTTP/1.1 connection (asyncio streams; cheap next to the server)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Http:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: keep-alive\r\n\r\n")
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            self.close()
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, chunked, closing = 0, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                closing = "close" in value.lower()
        if chunked:
            data = b""
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                data += await self.reader.readexactly(size)
                await self.reader.readline()
            await self.reader.readline()
        else:
            data = await self.reader.readexactly(length)
        if closing:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Tally:
    """What one client process saw."""

    ids: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # per kind: [requests, tasks, first send (epoch s), last answer (epoch s)], latencies (ms)
    spans: dict[str, list[float]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def record(self, kind: str, status: int, tasks: int, sent: float, done: float) -> None:
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        span = self.spans.setdefault(kind, [0, 0, sent, done])
        span[0] += 1
        span[1] += tasks
        span[2], span[3] = min(span[2], sent), max(span[3], done)
        self.latencies.setdefault(kind, []).append((done - sent) * 1000)

    def merge(self, other: Tally) -> None:
        self.ids += other.ids
        self.errors += other.errors
        for status, n in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        for kind, span in other.spans.items():
            if kind not in self.spans:
                self.spans[kind] = list(span)
            else:
                mine = self.spans[kind]
                mine[0] += span[0]
                mine[1] += span[1]
                mine[2], mine[3] = min(mine[2], span[2]), max(mine[3], span[3])
            self.latencies.setdefault(kind, []).extend(other.latencies.get(kind, []))


def task_body(rng: random.Random, tag: str, i: int) -> dict[str, Any]:
    """A typical small task: the echo handler, a ~60-byte payload, any priority."""
    return {"type": "echo", "payload": {"tag": tag, "i": i, "note": "load test"},
            "priority": rng.randrange(4)}


async def submit_single(conn: Http, tally: Tally, rng: random.Random, tag: str, i: int) -> None:
    body = json.dumps(task_body(rng, tag, i)).encode()
    sent = time.time()
    try:
        status, data = await conn.request("POST", "/api/v1/tasks", body)
    except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError) as exc:
        tally.statuses["connection error"] = tally.statuses.get("connection error", 0) + 1
        tally.errors.append(f"single: {exc!r}")
        return
    tally.record("single", status, 1, sent, time.time())
    if 200 <= status < 300:
        tally.ids.append(json.loads(data)["id"])
    elif len(tally.errors) < 20:
        tally.errors.append(f"single {status}: {data[:300]!r}")


async def submit_batch(conn: Http, tally: Tally, rng: random.Random, tag: str, i: int,
                       size: int) -> None:
    body = json.dumps({"tasks": [task_body(rng, tag, i * size + j) for j in range(size)]}).encode()
    sent = time.time()
    try:
        status, data = await conn.request("POST", "/api/v1/tasks/batch", body)
    except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError) as exc:
        tally.statuses["connection error"] = tally.statuses.get("connection error", 0) + 1
        tally.errors.append(f"batch: {exc!r}")
        return
    tally.record("batch", status, size, sent, time.time())
    if 200 <= status < 300:
        tally.ids += [task["id"] for task in json.loads(data)["tasks"]]
    elif len(tally.errors) < 20:
        tally.errors.append(f"batch {status}: {data[:300]!r}")


async def burst(host: str, port: int, tag: str, singles: int, batches: int, batch_size: int,
                conns: int) -> Tally:
    """Submit ``singles`` single POSTs and ``batches`` batch POSTs as fast as answered;
    about a quarter of the connections send batches, the rest singles."""
    tally, rng = Tally(), random.Random(tag)
    n_batch_conns = max(1, conns // 4) if batches else 0
    n_single_conns = max(1, conns - n_batch_conns) if singles else 0
    left = {"single": singles, "batch": batches}

    async def client(kind: str) -> None:
        conn = await Http(host, port).open()
        try:
            while left[kind] > 0:
                left[kind] -= 1
                i = left[kind]
                if kind == "single":
                    await submit_single(conn, tally, rng, tag, i)
                else:
                    await submit_batch(conn, tally, rng, tag, i, batch_size)
        finally:
            conn.close()

    await asyncio.gather(*[client("single") for _ in range(n_single_conns)],
                         *[client("batch") for _ in range(n_batch_conns)])
    return tally


async def paced(host: str, port: int, tag: str, seconds: float, single_rate: float,
                batch_rate: float, batch_size: int, conns: int) -> Tally:
    """A steady load: ``single_rate`` single POSTs/s over ``conns`` connections and
    ``batch_rate`` batch POSTs/s on one more, for ``seconds``."""
    tally, rng = Tally(), random.Random(tag)
    start = time.perf_counter() + 0.1
    end = start + seconds

    async def client(kind: str, interval: float, offset: float) -> None:
        conn = await Http(host, port).open()
        i = 0
        try:
            while (due := start + offset + i * interval) < end:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                if kind == "single":
                    await submit_single(conn, tally, rng, f"{tag}-{offset}", i)
                else:
                    await submit_batch(conn, tally, rng, tag, i, batch_size)
                i += 1
        finally:
            conn.close()

    interval = conns / single_rate
    await asyncio.gather(*[client("single", interval, k * interval / conns) for k in range(conns)],
                         client("batch", 1 / batch_rate, 0.0))
    return tally


def run_burst(args: tuple[Any, ...]) -> Tally:
    return asyncio.run(burst(*args))


def run_paced(args: tuple[Any, ...]) -> Tally:
    return asyncio.run(paced(*args))


# -- processes -----------------------------------------------------------------------------


@dataclass
class Stack:
    """daphne and the workers, with their log files."""

    log_dir: Path
    daphne: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    port: int = 0

    def spawn(self, name: str, command: list[str], env: dict[str, str]
              ) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, n_workers: int) -> None:
        from tasks_app.devserver.redis import free_port

        env = dict(os.environ, PYTHONUNBUFFERED="1", TASKQUEUE_DEMO_HANDLERS="1")  # as ./run.sh
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                       cwd=ROOT, env=env, check=True)
        self.port = free_port()
        self.daphne = self.spawn("daphne", [sys.executable, "-m", "daphne", "-b", "127.0.0.1",
                                            "-p", str(self.port),
                                            "taskqueue_project.asgi:application"], env)
        for i in range(n_workers):
            self.workers.append(self.spawn(
                f"worker-{i + 1}", [sys.executable, "manage.py", "runworker_tq", "--worker-id",
                                    f"load-{i + 1}", "--log-level", "warning"], env))

    def wait_ready(self, timeout: float = 60.0) -> None:
        import urllib.request

        from tasks_app.connection import get_broker
        from tasks_app.core.inspect import Inspector

        inspector = Inspector(get_broker())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in [self.daphne, *self.workers]:
                assert proc is not None
                if proc.poll() is not None:
                    raise SystemExit(f"a process exited at startup; logs in {self.log_dir}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/tasks", timeout=2) as reply:
                    up = reply.status == 200
            except OSError:
                up = False
            infos = {w.id: w for w in inspector.workers()}
            slots_up = all(
                f"load-{i + 1}" in infos
                and len(children_of(w.pid)) >= infos[f"load-{i + 1}"].concurrency
                for i, w in enumerate(self.workers))
            if up and slots_up:
                return
            time.sleep(0.2)
        raise SystemExit(f"daphne or the workers did not come up; logs in {self.log_dir}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        import signal

        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        if self.daphne is not None and self.daphne.poll() is None:
            self.daphne.send_signal(signal.SIGTERM)
        for proc in [*self.workers, *([self.daphne] if self.daphne else [])]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def memory(self) -> dict[str, float]:
        """RSS in MiB of daphne, each worker supervisor and each of its slots (by pid order)."""
        out: dict[str, float] = {}
        assert self.daphne is not None
        out["web (daphne)"] = rss_mib(self.daphne.pid)
        for i, proc in enumerate(self.workers):
            out[f"worker {i + 1} supervisor"] = rss_mib(proc.pid)
            for j, child in enumerate(children_of(proc.pid)):
                try:
                    out[f"worker {i + 1} slot {j + 1}"] = rss_mib(child)
                except OSError:
                    continue
        return out


# -- checks --------------------------------------------------------------------------------


def final_states(ids: list[str]) -> tuple[dict[str, int], float]:
    """Counts of the tasks' states, read from Redis, and the last completed_at (epoch s)."""
    from tasks_app.connection import get_broker

    broker = get_broker()
    counts: dict[str, int] = {}
    last = 0.0
    for offset in range(0, len(ids), 5000):
        pipe = broker.client.pipeline(transaction=False)
        for tid in ids[offset:offset + 5000]:
            pipe.hmget(broker.keys.task(tid), "state", "completed_at")
        for state, completed_at in pipe.execute():
            counts[str(state)] = counts.get(str(state), 0) + 1
            if completed_at:
                last = max(last, int(completed_at) / 1000)
    return counts, last


def wait_drained(timeout: float) -> tuple[bool, dict[str, int], int]:
    """Wait until nothing is pending or running; (drained, depths, running)."""
    from tasks_app.connection import get_broker
    from tasks_app.core.inspect import Inspector

    inspector = Inspector(get_broker())
    deadline = time.monotonic() + timeout
    while True:
        depths, running = inspector.queue_depths(), inspector.running_count()
        if sum(depths.values()) == 0 and running == 0:
            return True, depths, running
        if time.monotonic() > deadline:
            return False, depths, running
        time.sleep(0.1)


def api_reads(url: str, ids: list[str], sample: int) -> tuple[dict[str, int], int, int]:
    """GET a sample of ids and the queue depths through the API: (statuses, completed seen,
    total_pending reported)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    picked = random.Random(7).sample(ids, min(sample, len(ids)))

    async def go() -> tuple[dict[str, int], int, int]:
        conn = await Http(parts.hostname or "127.0.0.1", parts.port or 80).open()
        statuses: dict[str, int] = {}
        completed = 0
        try:
            for tid in picked:
                status, data = await conn.request("GET", f"/api/v1/tasks/{tid}")
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200 and json.loads(data)["state"] == "completed":
                    completed += 1
            status, data = await conn.request("GET", "/api/v1/tasks")
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            pending = json.loads(data)["total_pending"] if status == 200 else -1
        finally:
            conn.close()
        return statuses, completed, pending

    return asyncio.run(go())


def only_2xx(statuses: dict[str, int]) -> bool:
    return all(s.isdigit() and 200 <= int(s) < 300 for s in statuses)


def growth_limit(baseline: float) -> float:
    return max(GROWTH_ABS_MIB, GROWTH_REL * baseline)


# -- report --------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        print(f"  [{'PASS' if ok else 'FAIL'}] {what}")
        if not ok:
            self.failures.append(what)


def print_memory(columns: list[tuple[str, dict[str, float]]]) -> None:
    names = list(columns[0][1])
    for _, snap in columns[1:]:
        names += [n for n in snap if n not in names]
    width = max(len(n) for n in names)
    print("  " + "RSS MiB".ljust(width) + "".join(f"{label:>14}" for label, _ in columns))
    for name in names:
        cells = "".join(f"{snap[name]:>14.1f}" if name in snap else f"{'-':>14}"
                        for _, snap in columns)
        print("  " + name.ljust(width) + cells)
    totals = "".join(f"{sum(v for k, v in snap.items() if k.startswith('worker')):>14.1f}"
                     for _, snap in columns)
    print("  " + "workers, all processes".ljust(width) + totals)


def describe_rates(tally: Tally) -> None:
    for kind in ("single", "batch"):
        if kind not in tally.spans:
            continue
        requests, tasks, first, last = tally.spans[kind]
        lat = tally.latencies[kind]
        print(f"  {kind:6} POSTs: {requests:>8,.0f} requests, {tasks:>8,.0f} tasks in "
              f"{last - first:6.1f} s: {requests / (last - first):>7,.0f} req/s, "
              f"{tasks / (last - first):>7,.0f} tasks/s (latency p50 {percentile(lat, 50):.1f} ms, "
              f"p99 {percentile(lat, 99):.1f} ms)")


def load_phase(stack: Stack, args: argparse.Namespace, report: Report) -> None:
    from urllib.parse import urlsplit

    n_single = round(args.tasks * args.single_fraction)
    n_batches = (args.tasks - n_single) // args.batch_size
    n_single = args.tasks - n_batches * args.batch_size
    parts = urlsplit(stack.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    print(f"\nLoad: {args.tasks:,} tasks through the REST API: {n_single:,} single POSTs and "
          f"{n_batches:,} batch POSTs of {args.batch_size}, from {args.clients} client processes "
          f"x {args.conns} keep-alive connections; {args.workers} workers draining meanwhile")
    jobs = []
    for k in range(args.clients):
        share_s = n_single // args.clients + (1 if k < n_single % args.clients else 0)
        share_b = n_batches // args.clients + (1 if k < n_batches % args.clients else 0)
        jobs.append((host, port, f"load-{k}", share_s, share_b, args.batch_size, args.conns))
    start = time.time()
    with multiprocessing.get_context("fork").Pool(args.clients) as pool:
        tallies = pool.map(run_burst, jobs)
    submitted_at = time.time()
    tally = Tally()
    for t in tallies:
        tally.merge(t)
    drained, depths, running = wait_drained(timeout=max(120.0, args.tasks / 200))
    counts, last_done = final_states(tally.ids)
    n_ids = len(tally.ids)
    describe_rates(tally)
    print(f"  all submissions: {n_ids:,} tasks in {submitted_at - start:.1f} s "
          f"({n_ids / (submitted_at - start):,.0f} tasks/s)")
    if last_done:
        print(f"  completion: {counts.get('completed', 0):,} tasks completed "
              f"{last_done - start:.1f} s after the first submission: "
              f"{counts.get('completed', 0) / (last_done - start):,.0f} tasks/s end to end; "
              f"the last one {max(0.0, last_done - submitted_at):.1f} s after the last submission")
    print(f"  responses by status: {tally.statuses}")
    for error in tally.errors[:5]:
        print(f"    {error}")
    print(f"  final states: {counts}")
    statuses, completed_seen, api_pending = api_reads(stack.url, tally.ids, args.sample)
    print(f"  GET /api/v1/tasks/{{id}} for {min(args.sample, n_ids):,} sampled ids: "
          f"{completed_seen:,} completed; statuses {statuses}; GET /api/v1/tasks total_pending "
          f"{api_pending}")
    report.check(only_2xx(tally.statuses), "every submission answered 2xx")
    report.check(n_ids == args.tasks and len(set(tally.ids)) == n_ids,
                 f"{args.tasks:,} distinct task ids returned (got {n_ids:,})")
    report.check(counts.get("completed", 0) == n_ids,
                 "every task id's final state is completed")
    report.check(only_2xx(statuses) and completed_seen == min(args.sample, n_ids),
                 "sampled GETs by id answer 200 completed")
    report.check(drained and api_pending == 0,
                 f"queue depth back to 0, nothing running (depths {depths}, running {running})")


def soak_phase(stack: Stack, args: argparse.Namespace, report: Report,
               memory: list[tuple[str, dict[str, float]]]) -> None:
    from urllib.parse import urlsplit

    seconds = args.soak_minutes * 60
    interval = args.sample_every or min(30.0, seconds / 6)
    rate_tasks = args.soak_single_rate + args.soak_batch_rate * args.soak_batch_size
    print(f"\nSoak: {args.soak_minutes:g} min of steady load, {args.soak_single_rate:g} single "
          f"POSTs/s + {args.soak_batch_rate:g} batch POSTs/s of {args.soak_batch_size} "
          f"(~{rate_tasks:,.0f} tasks/s); RSS sampled every {interval:g} s")
    parts = urlsplit(stack.url)
    job = (parts.hostname or "127.0.0.1", parts.port or 80, "soak", seconds,
           args.soak_single_rate, args.soak_batch_rate, args.soak_batch_size, 4)
    samples: list[tuple[float, dict[str, float]]] = []
    with multiprocessing.get_context("fork").Pool(1) as pool:
        pending = pool.apply_async(run_paced, (job,))
        start = time.time()
        next_at = start
        while True:
            now = time.time()
            if now >= next_at:
                samples.append((now - start, stack.memory()))
                next_at += interval
            if pending.ready() and now - start >= seconds:
                break
            time.sleep(max(0.05, min(1.0, next_at - time.time())))
        tally = pending.get()
    drained, depths, running = wait_drained(timeout=120.0)
    samples.append((time.time() - start, stack.memory()))
    counts, _ = final_states(tally.ids)
    describe_rates(tally)
    print(f"  responses by status: {tally.statuses}")
    for error in tally.errors[:5]:
        print(f"    {error}")
    print(f"  final states: {counts}")
    names = list(samples[0][1])
    print("  RSS MiB by sample time (s): " + "  ".join(f"{t:.0f}" for t, _ in samples))
    for name in names:
        print(f"    {name:24}" + " ".join(f"{snap.get(name, float('nan')):6.1f}"
                                         for _, snap in samples))
    warm = next(snap for t, snap in samples if t >= seconds / 5)
    end = samples[-1][1]
    memory.append(("soak warm", warm))
    memory.append(("soak end", end))
    worst = ""
    ok = True
    for name, base in warm.items():
        if name not in end:
            continue
        grew = end[name] - base
        if grew > growth_limit(base):
            ok = False
            worst += f" {name} +{grew:.1f} MiB (limit {growth_limit(base):.1f});"
    biggest = max((end[n] - warm[n], n) for n in warm if n in end)
    report.check(only_2xx(tally.statuses), "every soak submission answered 2xx")
    report.check(counts.get("completed", 0) == len(tally.ids) > 0,
                 f"every soak task completed ({len(tally.ids):,} tasks)")
    report.check(drained, "queue depth back to 0 after the soak")
    report.check(ok, f"no process grew after warm-up beyond max({GROWTH_ABS_MIB:g} MiB, "
                     f"{GROWTH_REL:.0%}); largest change {biggest[0]:+.1f} MiB ({biggest[1]})"
                 + (f":{worst}" if worst else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 tasks and a 30 s soak (CI)")
    parser.add_argument("--tasks", type=int, help="tasks to submit (default 100,000)")
    parser.add_argument("--single-fraction", type=float, default=0.1,
                        help="share of the tasks sent as single POSTs (default 0.1)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--conns", type=int, default=8, help="connections per client process")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sample", type=int, default=1000, help="ids read back through GET")
    parser.add_argument("--soak-minutes", type=float, help="steady load afterwards (0: none)")
    parser.add_argument("--soak-single-rate", type=float, default=100.0)
    parser.add_argument("--soak-batch-rate", type=float, default=5.0)
    parser.add_argument("--soak-batch-size", type=int, default=20)
    parser.add_argument("--sample-every", type=float, help="RSS sampling period of the soak, s")
    args = parser.parse_args()
    if args.tasks is None:
        args.tasks = 2_000 if args.quick else 100_000
    if args.soak_minutes is None:
        args.soak_minutes = 0.5 if args.quick else 0.0
    if args.quick:
        args.sample = min(args.sample, 200)

    server = start_redis()
    setup_django()
    log_dir = Path(tempfile.mkdtemp(prefix="tq-load-"))
    stack = Stack(log_dir)
    report = Report()
    try:
        stack.start(args.workers)
        stack.wait_ready()
        time.sleep(1.0)
        memory = [("idle, start", stack.memory())]
        load_phase(stack, args, report)
        memory.append(("after load", stack.memory()))
        if args.soak_minutes > 0:
            soak_phase(stack, args, report, memory)
        print("\nMemory (RSS, MiB):")
        print_memory(memory)
    finally:
        stack.stop()
        if server is not None:
            server.stop()
    print(f"\nlogs: {log_dir}")
    if report.failures:
        print("FAILED: " + "; ".join(report.failures))
        return 1
    print("OK: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
