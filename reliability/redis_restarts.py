"""Redis restarts: kill -9 the Redis server under REST submission load, restart it.

    .venv/bin/python reliability/redis_restarts.py           # 5 crashes with appendfsync
                                                             # always, then 5 with everysec
    .venv/bin/python reliability/redis_restarts.py --quick   # 2 crashes, always (CI)

Runs a private redis-server with AOF, the web server (daphne) and two workers.
A few client threads POST /api/v1/tasks steadily; a poller GETs /admin/health
every 0.2 s.  Redis is killed with SIGKILL (no shutdown, no final AOF flush)
and restarted from its files, several times.  Every response is counted by
status; every task id that got a 2xx is looked up at the end.

Pass (appendfsync always): every task whose submission got a 2xx completes;
no 2xx for a request sent and answered entirely while Redis was down (the API
answers 503); /admin/health says unhealthy (503) for every poll made while
Redis was down; workers complete a task within 10 s of Redis being back.
With everysec the same checks run, except that 2xx tasks lost in the crash are
reported (count, and how long before the kill they were accepted) rather than
failed: that is the window everysec trades for speed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reliability.common import (  # noqa: E402
    Proc,
    Run,
    fast_env,
    setup_django,
    start_redis,
    start_worker,
    table,
    task_fields,
    verdict,
    wait_slots,
    wait_until,
)

DOWN_SECONDS = 2.0
RESUME_LIMIT = 10.0
CLIENTS = 3


@dataclass
class Outage:
    killed: float
    back: float = 0.0
    ready: float = 0.0
    first_completion: float | None = None


@dataclass
class Observed:
    posts: list[tuple[float, float, int, str | None]] = field(default_factory=list)
    health: list[tuple[float, float, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def free_port() -> int:
    from tasks_app.devserver.redis import free_port as fp

    return fp()


def client_loop(port: int, stop: threading.Event, seen: Observed) -> None:
    body = json.dumps({"type": "rel.sleep", "payload": {"seconds": 0.02}, "max_retries": 10})
    conn: http.client.HTTPConnection | None = None
    while not stop.is_set():
        start = time.time()
        status, tid = -1, None
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/api/v1/tasks", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            if 200 <= status < 300:
                tid = json.loads(data)["id"]
        except (OSError, http.client.HTTPException, ValueError):
            with contextlib.suppress(Exception):
                conn.close()  # type: ignore[union-attr]
            conn = None
        with seen.lock:
            seen.posts.append((start, time.time(), status, tid))
        time.sleep(0.02)


def health_loop(port: int, stop: threading.Event, seen: Observed) -> None:
    while not stop.is_set():
        start = time.time()
        status, state = -1, ""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/admin/health")
            resp = conn.getresponse()
            status = resp.status
            state = json.loads(resp.read()).get("status", "")
            conn.close()
        except (OSError, http.client.HTTPException, ValueError):
            pass
        with seen.lock:
            seen.health.append((start, time.time(), status, state))
        time.sleep(0.2)


def completions(server_url: str) -> int | None:
    """The cluster completion counter, or None while Redis is down (own short client)."""
    import redis

    from tasks_app.connection import get_broker

    key = get_broker().keys.metrics
    try:
        with redis.Redis.from_url(server_url, socket_timeout=0.5,
                                  socket_connect_timeout=0.5) as client:
            values = client.hgetall(key)
    except (redis.RedisError, OSError):
        return None
    return sum(int(v) for k, v in values.items()
               if k.startswith(b"c\tcompleted\t") and k.endswith(b"\tsuccess"))


def scenario(fsync: str, restarts: int, redis_port: int) -> tuple[list[tuple[str, object, str]],
                                                            list[tuple[str, bool]]]:
    run = Run(f"redis-{fsync}")
    env = fast_env(lease=5.0, heartbeat=1.0, recovery=1.0)
    server = start_redis(run, appendfsync=fsync, port=redis_port)
    setup_django(env)
    from tasks_app.connection import reset_broker

    reset_broker()
    port = free_port()
    web = Proc(run, "daphne", ["daphne", "-b", "127.0.0.1", "-p", str(port),
                               "taskqueue_project.asgi:application"], env)
    workers = [start_worker(run, env, 4, f"w{i}") for i in range(2)]
    for w in workers:
        wait_slots(w, 4)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            break
        time.sleep(0.1)
    print(f"\nappendfsync {fsync}: {restarts} crashes, {CLIENTS} REST clients, dir {run.dir}")
    seen = Observed()
    stop = threading.Event()
    threads = [threading.Thread(target=client_loop, args=(port, stop, seen), daemon=True)
               for _ in range(CLIENTS)]
    threads.append(threading.Thread(target=health_loop, args=(port, stop, seen), daemon=True))
    for t in threads:
        t.start()
    outages: list[Outage] = []
    try:
        time.sleep(3.0)
        for _ in range(restarts):
            server.crash()  # SIGKILL and reaped: down from here ...
            outage = Outage(killed=time.time())
            time.sleep(DOWN_SECONDS)
            outage.back = time.time()  # ... to here (start() may answer a little later)
            server.start()
            outage.ready = time.time()  # answers PING again
            outages.append(outage)
            base = None
            end = time.monotonic() + 30
            while time.monotonic() < end:  # first completion after Redis is back
                count = completions(server.url)
                if count is not None and base is None:
                    base = count
                elif count is not None and base is not None and count > base:
                    outage.first_completion = time.time()
                    break
                time.sleep(0.05)
            time.sleep(3.0)
        stop.set()
        for t in threads:
            t.join(15)
        accepted = [p for p in seen.posts if 200 <= p[2] < 300]
        ids = [p[3] for p in accepted if p[3]]

        def done() -> bool:
            return all(v[0] in ("completed", None) for v in task_fields(ids, "state").values())

        reset_broker()
        wait_until(done, timeout=60)
        fields = task_fields(ids, "state")
    finally:
        stop.set()
        for w in workers:
            w.stop(timeout=10)
        web.stop()
        server.stop()

    def in_outage(start: float, end: float, margin: float = 0.0) -> bool:
        return any(o.killed + margin <= start and end <= o.back for o in outages)

    by_status = Counter(p[2] for p in seen.posts)
    during = Counter(p[2] for p in seen.posts if in_outage(p[0], p[1]))
    false_2xx = sum(n for s, n in during.items() if 200 <= s < 300)
    missing = [tid for tid, v in fields.items() if v[0] is None]
    not_done = [tid for tid, v in fields.items() if v[0] not in ("completed", None)]
    accept_time = {p[3]: p[1] for p in accepted}
    windows = []
    for tid in missing:  # accepted how long before the next kill?
        after = [o.killed for o in outages if o.killed >= accept_time[tid] - 1.0]
        if after:
            windows.append(min(after) - accept_time[tid])
    slow_503 = max((p[1] - p[0] for p in seen.posts if p[2] == 503), default=0.0)
    slow_health = max((h[1] - h[0] for h in seen.health if h[2] == 503), default=0.0)
    health_out = Counter(f"{h[2]} {h[3]}" for h in seen.health if in_outage(h[0], h[1], 0.3))
    healthy_during = sum(n for k, n in health_out.items() if not k.startswith("503 unhealthy"))
    resumes = [(o.first_completion - o.ready) if o.first_completion else float("inf")
               for o in outages]
    rows: list[tuple[str, object, str]] = [
        (f"[{fsync}] Redis crashes (kill -9, {DOWN_SECONDS:g} s down)", len(outages), ""),
        (f"[{fsync}] POSTs by status", " ".join(f"{s}:{n}" for s, n in sorted(by_status.items())),
         ""),
        (f"[{fsync}] POSTs sent+answered while down, by status",
         " ".join(f"{s}:{n}" for s, n in sorted(during.items())) or "-", "no 2xx"),
        (f"[{fsync}] 2xx accepted", len(ids), ""),
        (f"[{fsync}] 2xx completed", sum(v[0] == "completed" for v in fields.values()),
         "== accepted" if fsync == "always" else "== accepted - lost"),
        (f"[{fsync}] 2xx lost (no record after restart)", len(missing),
         "== 0" if fsync == "always" else "reported"),
        (f"[{fsync}] lost: accepted this long before the kill (s)",
         f"{min(windows):.3f}..{max(windows):.3f}" if windows else "-", ""),
        (f"[{fsync}] 2xx not finished", len(not_done), "== 0"),
        (f"[{fsync}] slowest 503 answer to a POST / to a health poll (s)",
         f"{slow_503:.3f} / {slow_health:.3f}", ""),
        (f"[{fsync}] health polls while down", sum(health_out.values()), ""),
        (f"[{fsync}] health polls while down, by answer",
         " ".join(f"{k}:{n}" for k, n in sorted(health_out.items())) or "-", "all 503 unhealthy"),
        (f"[{fsync}] workers resume: Redis back -> first completion (s)",
         " ".join(f"{r:.2f}" for r in resumes), f"each <= {RESUME_LIMIT:g}"),
    ]
    checks = [
        (f"[{fsync}] no false 2xx while Redis was down", false_2xx == 0),
        (f"[{fsync}] health unhealthy (503) during every outage poll",
         healthy_during == 0 and sum(health_out.values()) > 0),
        (f"[{fsync}] workers resume within {RESUME_LIMIT:g} s", max(resumes) <= RESUME_LIMIT),
        (f"[{fsync}] every 2xx task that exists completes", not not_done),
        (f"[{fsync}] saw 503s while Redis was down", during.get(503, 0) > 0),
    ]
    if fsync == "always":
        checks.append((f"[{fsync}] every task whose submission got a 2xx completes", not missing))
    return rows, checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CI form")
    parser.add_argument("--fsync", choices=["always", "everysec", "both"], default=None)
    args = parser.parse_args()
    restarts = 2 if args.quick else 5
    modes = {"always": ["always"], "everysec": ["everysec"], "both": ["always", "everysec"]}[
        args.fsync or ("always" if args.quick else "both")]
    rows: list[tuple[str, object, str]] = []
    checks: list[tuple[str, bool]] = []
    redis_port = free_port()
    for mode in modes:
        r, c = scenario(mode, restarts, redis_port)
        rows += r
        checks += c
    table(f"Redis restarts ({'quick' if args.quick else 'full'})", rows)
    return verdict(checks)


if __name__ == "__main__":
    sys.exit(main())
