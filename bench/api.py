"""HTTP API benchmarks: POST /api/v1/tasks latency and rate, the batch endpoint in tasks/s.

    .venv/bin/python bench/api.py                  # Redis + daphne as ./run.sh starts them
    .venv/bin/python bench/api.py --worker         # ... with one runworker_tq draining meanwhile
    .venv/bin/python bench/api.py --quick          # short form
    .venv/bin/python bench/api.py --url http://127.0.0.1:8080   # an already running server

The load generator is asyncio with raw HTTP/1.1 keep-alive connections (one per client),
so it costs little CPU next to the server on the same machine.  Latency is measured from
each request's scheduled send time (no coordinated omission).  Prints figures; asserts
nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from common import ROOT, percentile, start_redis


@dataclass
class Result:
    """Latencies (ms) of the answered requests and their statuses."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def add(self, status: int, latency_ms: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(latency_ms)


class Connection:
    """One keep-alive HTTP/1.1 connection that sends JSON POSTs."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: keep-alive\r\n\r\n")
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding":
                chunked = "chunked" in value.lower()
        if chunked:
            return status, await self._chunks()
        return status, await self.reader.readexactly(length)

    async def _chunks(self) -> bytes:
        assert self.reader is not None
        body = b""
        while size := int((await self.reader.readline()).split(b";")[0], 16):
            body += await self.reader.readexactly(size)
            await self.reader.readline()
        await self.reader.readline()
        return body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def paced_client(conn: Connection, path: str, body: bytes, start: float, interval: float,
                       count: int, result: Result) -> None:
    """Send ``count`` requests, one every ``interval`` s from ``start``."""
    for i in range(count):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        status, _ = await conn.post(path, body)
        result.add(status, (time.perf_counter() - scheduled) * 1000)


async def greedy_client(conn: Connection, path: str, body: bytes, deadline: float,
                        result: Result) -> None:
    """Send requests back to back until the deadline."""
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        status, _ = await conn.post(path, body)
        result.add(status, (time.perf_counter() - sent) * 1000)


async def open_all(host: str, port: int, n: int) -> list[Connection]:
    conns = [Connection(host, port) for _ in range(n)]
    await asyncio.gather(*(c.open() for c in conns))
    return conns


async def run_paced(url: str, clients: int, rate: float, seconds: float) -> Result:
    """``rate`` requests/s in total spread over ``clients`` connections."""
    parts = urlsplit(url)
    conns = await open_all(parts.hostname or "127.0.0.1", parts.port or 80, clients)
    body = json.dumps({"type": "echo", "payload": {"hello": "world"}, "priority": "high"}).encode()
    interval = clients / rate
    count = int(seconds * rate / clients)
    result = Result()
    start = time.perf_counter() + 0.2
    tasks = [paced_client(c, "/api/v1/tasks", body, start + i * interval / clients, interval,
                          count, result) for i, c in enumerate(conns)]
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return result


async def run_greedy(url: str, clients: int, seconds: float) -> Result:
    """As many requests as the server answers, from ``clients`` connections."""
    parts = urlsplit(url)
    conns = await open_all(parts.hostname or "127.0.0.1", parts.port or 80, clients)
    body = json.dumps({"type": "echo", "payload": {"hello": "world"}}).encode()
    result = Result()
    start = time.perf_counter()
    await asyncio.gather(*(greedy_client(c, "/api/v1/tasks", body, start + seconds, result)
                           for c in conns))
    result.elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return result


async def run_batches(url: str, clients: int, batches: int, size: int) -> Result:
    """``batches`` batch requests of ``size`` tasks over ``clients`` connections."""
    parts = urlsplit(url)
    conns = await open_all(parts.hostname or "127.0.0.1", parts.port or 80, clients)
    body = json.dumps({"tasks": [{"type": "echo", "payload": {"i": i}}
                                 for i in range(size)]}).encode()
    result = Result()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(batches):
        queue.put_nowait(i)

    async def client(conn: Connection) -> None:
        while not queue.empty():
            queue.get_nowait()
            sent = time.perf_counter()
            status, _ = await conn.post("/api/v1/tasks/batch", body)
            result.add(status, (time.perf_counter() - sent) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in conns))
    result.elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return result


def describe(label: str, result: Result) -> str:
    lat = result.latencies
    rate = len(lat) / result.elapsed
    return (f"{label}: {rate:,.0f} req/s, p50 {percentile(lat, 50):.2f} ms, "
            f"p95 {percentile(lat, 95):.2f} ms, p99 {percentile(lat, 99):.2f} ms, "
            f"max {max(lat):.2f} ms ({len(lat):,} requests, statuses {result.statuses})")


def start_server(port: int, worker: bool) -> list[subprocess.Popen[bytes]]:
    """daphne (and a worker) the way the launcher starts them."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TASKQUEUE_DEMO_HANDLERS="1")  # as ./run.sh
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env=env, check=True)
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
              "taskqueue_project.asgi:application"]
    procs = [subprocess.Popen(daphne, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    if worker:
        procs.append(subprocess.Popen([sys.executable, "manage.py", "runworker_tq",
                                       "--log-level", "warning"], cwd=ROOT, env=env))
    return procs


def wait_ready(url: str, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/tasks", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def run(url: str, quick: bool) -> None:
    seconds = 5.0 if quick else 20.0
    asyncio.run(run_greedy(url, 32, 2.0))  # warm-up
    paced = asyncio.run(run_paced(url, 32, 300.0, seconds))
    print(describe("POST /api/v1/tasks, 32 clients paced at 300 req/s", paced))
    greedy = asyncio.run(run_greedy(url, 32, seconds))
    print(describe("POST /api/v1/tasks, 32 clients flat out          ", greedy))
    batches = 20 if quick else 100
    batch = asyncio.run(run_batches(url, 4, batches, 1000))
    tasks_per_s = batches * 1000 / batch.elapsed
    print(f"POST /api/v1/tasks/batch, 1,000 tasks each, 4 clients: {tasks_per_s:,.0f} tasks/s "
          f"(p50 {percentile(batch.latencies, 50):.1f} ms per batch, {batches} batches, "
          f"statuses {batch.statuses})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--url", help="benchmark this running server instead of starting one")
    parser.add_argument("--worker", action="store_true", help="run one worker meanwhile")
    parser.add_argument("--port", type=int, default=8089)
    args = parser.parse_args()
    if args.url:
        run(args.url.rstrip("/"), args.quick)
        return
    server = start_redis()
    procs = start_server(args.port, args.worker)
    url = f"http://127.0.0.1:{args.port}"
    try:
        wait_ready(url)
        run(url, args.quick)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(30)
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
