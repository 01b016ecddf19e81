"""Slowloris against a live daphne: many clients trickle request headers, a byte every
few seconds, while a legitimate client measures its latency.

Starts its own redis-server and daphne (or uses ``--url``).  Opens ``--clients``
connections that send a request line and then one header byte every
``--interval`` seconds, never finishing; meanwhile a legitimate client sends a
request every ``--legit-every`` seconds on a fresh connection.  Prints the
legitimate latency p50/p99/max before and during the attack, how many slow
connections daphne still held, its open descriptors and RLIMIT_NOFILE.  Exits
non-zero if a legitimate request failed or its p99 during the attack passed
``--max-p99``.

    .venv/bin/python -m reliability.slow_clients            # full: 1,000 clients, 30 s
    .venv/bin/python -m reliability.slow_clients --quick    # CI: 200 clients, 10 s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_project.settings")

LEGIT_PATH = "/api/v1/tasks"


async def slow_client(port: int, interval: float, until: float, alive: list[int]) -> None:
    """Send a request line, then one header byte per ``interval`` until ``until``."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    alive[0] += 1
    try:
        writer.write(b"GET /admin/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        while time.monotonic() < until:
            await asyncio.sleep(interval)
            writer.write(b"X")
            await writer.drain()
            if reader.at_eof():
                break
    except OSError:
        pass
    finally:
        alive[0] -= 1
        writer.close()


async def legit_request(port: int) -> float:
    """One GET on a fresh connection; its latency in seconds (raises on a bad answer)."""
    started = time.monotonic()
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        writer.write(f"GET {LEGIT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    if not reply.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"legitimate request got {reply[:80]!r}")
    return time.monotonic() - started


async def measure(port: int, seconds: float, every: float) -> tuple[list[float], int]:
    """Latencies of legitimate requests for ``seconds``, and how many failed."""
    latencies: list[float] = []
    failed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            latencies.append(await legit_request(port))
        except (TimeoutError, OSError, RuntimeError) as exc:
            failed += 1
            print(f"legitimate request failed: {exc}", flush=True)
        await asyncio.sleep(every)
    return latencies, failed


def summary(latencies: list[float]) -> str:
    if not latencies:
        return "no requests"
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"{len(ordered)} requests, p50 {statistics.median(ordered) * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms")


def p99_of(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


def daphne_figures(pid: int | None) -> str:
    if pid is None:
        return "daphne pid unknown"
    import psutil  # type: ignore[import-untyped]

    proc = psutil.Process(pid)
    limits = [ln for ln in Path(f"/proc/{pid}/limits").read_text().splitlines()
              if ln.startswith("Max open files")]
    return (f"daphne: {proc.num_fds()} open descriptors, RSS {proc.memory_info().rss >> 20} MiB,"
            f" {limits[0].split('files', 1)[1].split()[:2]} (soft, hard) RLIMIT_NOFILE")


async def attack(port: int, clients: int, interval: float, seconds: float, every: float,
                 pid: int | None) -> tuple[list[float], list[float], int, int]:
    baseline, failed_before = await measure(port, 3.0, every)
    print(f"baseline: {summary(baseline)}", flush=True)
    until = time.monotonic() + seconds + 5
    alive = [0]
    tasks = []
    for i in range(clients):
        tasks.append(asyncio.create_task(slow_client(port, interval, until, alive)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    print(f"{alive[0]} slow clients connected; {daphne_figures(pid)}", flush=True)
    during, failed = await measure(port, seconds, every)
    print(f"during the attack: {summary(during)}; {alive[0]} slow clients still connected; "
          f"{daphne_figures(pid)}", flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return baseline, during, failed + failed_before, alive[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI size: 200 clients, 10 s")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between a slow client's bytes")
    parser.add_argument("--legit-every", type=float, default=0.05)
    parser.add_argument("--max-p99", type=float, default=1.0, help="seconds")
    parser.add_argument("--url", help="attack this server (http://127.0.0.1:PORT)")
    args = parser.parse_args(argv)
    clients = args.clients or (200 if args.quick else 1000)
    seconds = args.seconds or (10.0 if args.quick else 30.0)

    from tasks_app.api.body_limits import raise_open_files_limit

    soft, hard = raise_open_files_limit()  # this process holds a socket per slow client
    print(f"attacker RLIMIT_NOFILE {soft}/{hard}; {clients} slow clients, a byte every "
          f"{args.interval} s, for {seconds:.0f} s", flush=True)
    if args.url:
        port = int(args.url.rsplit(":", 1)[1].strip("/"))
        baseline, during, failed, _ = asyncio.run(
            attack(port, clients, args.interval, seconds, args.legit_every, None))
    else:
        import django

        from tasks_app.core.redis_server import EmbeddedRedis

        work = Path(tempfile.mkdtemp(prefix="tq-slow-"))
        redis = EmbeddedRedis(str(work / "redis"))
        redis.start()
        os.environ["REDIS_URL"] = redis.url
        django.setup()
        from tests.servers import LiveServer

        try:
            with LiveServer(work, {"REDIS_URL": redis.url}) as server:
                pid = server.proc.pid if server.proc else None
                baseline, during, failed, _ = asyncio.run(
                    attack(server.port, clients, args.interval, seconds, args.legit_every, pid))
        finally:
            redis.stop()
    worst = p99_of(during)
    ok = failed == 0 and bool(during) and worst <= args.max_p99
    print(f"{'PASS' if ok else 'FAIL'}: {failed} legitimate requests failed; p99 during the "
          f"attack {worst * 1000:.1f} ms (limit {args.max_p99 * 1000:.0f} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
