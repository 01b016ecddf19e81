"""Slowloris against a live daphne: many clients trickle request headers, a byte every
few seconds, while a legitimate client measures its latency.

Starts its own redis-server and daphne (or uses ``--url``) with
``HTTP_HEADER_TIMEOUT`` = ``--header-timeout``.  Opens ``--clients`` connections
that send a request line and then one header byte every ``--interval`` seconds,
never finishing, and reconnect as soon as the server drops them; meanwhile a
legitimate client sends a request every ``--legit-every`` seconds on a fresh
connection.  Prints the legitimate latency p50/p99/max before and during the
attack, how many slow connections daphne held, its open descriptors and
RLIMIT_NOFILE, and how the server cut the slow connections off (how many, with
408 or not, after how long).  Exits non-zero if a legitimate request failed, its
p99 during the attack passed ``--max-p99``, or a slow connection outlived the
header timeout by more than ``--max-overrun`` seconds.

    .venv/bin/python -m reliability.slow_clients          # 1,000 clients, 45 s, timeout 30 s
    .venv/bin/python -m reliability.slow_clients --quick  # CI: 200 clients, 10 s, timeout 4 s
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


class CutOffs:
    """How the server ended the slow connections."""

    def __init__(self) -> None:
        self.alive = 0
        self.lifetimes: list[float] = []  # seconds from connect to the server's close
        self.with_408 = 0


async def slow_client(port: int, interval: float, until: float, cuts: CutOffs) -> None:
    """Until ``until``: connect, send a request line, then one header byte per ``interval``;
    when the server closes the connection, note how and when, and start again."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(interval)
            continue
        cuts.alive += 1
        opened = time.monotonic()
        try:
            writer.write(b"GET /admin/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            await writer.drain()
            while time.monotonic() < until:
                try:
                    reply = await asyncio.wait_for(reader.read(4096), interval)
                except TimeoutError:
                    writer.write(b"X")
                    await writer.drain()
                    continue
                cuts.lifetimes.append(time.monotonic() - opened)  # server answered or closed
                cuts.with_408 += reply.startswith(b"HTTP/1.1 408 ")
                break
        except OSError:
            cuts.lifetimes.append(time.monotonic() - opened)
        finally:
            cuts.alive -= 1
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
                 pid: int | None) -> tuple[list[float], list[float], int, CutOffs]:
    baseline, failed_before = await measure(port, 3.0, every)
    print(f"baseline: {summary(baseline)}", flush=True)
    until = time.monotonic() + seconds + 5
    cuts = CutOffs()
    tasks = []
    for i in range(clients):
        tasks.append(asyncio.create_task(slow_client(port, interval, until, cuts)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    print(f"{cuts.alive} slow clients connected; {daphne_figures(pid)}", flush=True)
    during, failed = await measure(port, seconds, every)
    print(f"during the attack: {summary(during)}; {cuts.alive} slow connections open; "
          f"{daphne_figures(pid)}", flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return baseline, during, failed + failed_before, cuts


def cut_off_summary(cuts: CutOffs) -> str:
    if not cuts.lifetimes:
        return "the server cut off no slow connection"
    ordered = sorted(cuts.lifetimes)
    return (f"the server cut off {len(ordered)} slow connections ({cuts.with_408} with a 408) "
            f"after p50 {statistics.median(ordered):.2f} s, max {ordered[-1]:.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="CI size: 200 clients, 10 s, header timeout 4 s")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between a slow client's bytes")
    parser.add_argument("--legit-every", type=float, default=0.05)
    parser.add_argument("--max-p99", type=float, default=1.0, help="seconds")
    parser.add_argument("--header-timeout", type=float,
                        help="the server's HTTP_HEADER_TIMEOUT (default: 4 quick, else 30, "
                             "the product's default); with --url, what to expect of it")
    parser.add_argument("--max-overrun", type=float, default=3.0,
                        help="seconds a slow connection may outlive the header timeout")
    parser.add_argument("--url", help="attack this server (http://127.0.0.1:PORT)")
    args = parser.parse_args(argv)
    clients = args.clients or (200 if args.quick else 1000)
    seconds = args.seconds or (10.0 if args.quick else 45.0)
    header_timeout = args.header_timeout or (4.0 if args.quick else 30.0)

    from tasks_app.server import raise_open_files_limit

    soft, hard = raise_open_files_limit()  # this process holds a socket per slow client
    print(f"attacker RLIMIT_NOFILE {soft}/{hard}; {clients} slow clients, a byte every "
          f"{args.interval} s, for {seconds:.0f} s; header timeout {header_timeout:g} s",
          flush=True)
    if args.url:
        port = int(args.url.rsplit(":", 1)[1].strip("/"))
        baseline, during, failed, cuts = asyncio.run(
            attack(port, clients, args.interval, seconds, args.legit_every, None))
    else:
        import django

        from tasks_app.devserver.redis import EmbeddedRedis

        work = Path(tempfile.mkdtemp(prefix="tq-slow-"))
        redis = EmbeddedRedis(str(work / "redis"))
        redis.start()
        os.environ["REDIS_URL"] = redis.url
        django.setup()
        from tests.servers import LiveServer

        try:
            env = {"REDIS_URL": redis.url, "TASKQUEUE_HTTP_HEADER_TIMEOUT": str(header_timeout)}
            with LiveServer(work, env) as server:
                pid = server.proc.pid if server.proc else None
                baseline, during, failed, cuts = asyncio.run(
                    attack(server.port, clients, args.interval, seconds, args.legit_every, pid))
        finally:
            redis.stop()
    worst = p99_of(during)
    longest = max(cuts.lifetimes, default=0.0)
    print(cut_off_summary(cuts), flush=True)
    # Connections opened in the last header_timeout seconds were never due to be cut.
    held = seconds + 5 > header_timeout + args.max_overrun
    cut_in_time = (not held or (bool(cuts.lifetimes) and cuts.with_408 == len(cuts.lifetimes)
                                and longest <= header_timeout + args.max_overrun))
    ok = failed == 0 and bool(during) and worst <= args.max_p99 and cut_in_time
    print(f"{'PASS' if ok else 'FAIL'}: {failed} legitimate requests failed; p99 during the "
          f"attack {worst * 1000:.1f} ms (limit {args.max_p99 * 1000:.0f} ms); longest slow "
          f"connection {longest:.2f} s (limit {header_timeout + args.max_overrun:g} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
