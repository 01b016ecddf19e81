"""Live events benchmark: delivery latency to 100 WebSocket clients, and what events cost.

    .venv/bin/python bench/events.py            # full run
    .venv/bin/python bench/events.py --quick    # short form

Starts its own Redis, daphne and workers.  Prints figures; asserts nothing.
Latency is event timestamp (set in the worker when the state changed, ms
resolution) to arrival at the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime

from common import ROOT, percentile, setup_django, start_redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_daphne(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                             "taskqueue_project.asgi:application"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("daphne did not start")


def start_worker(events_on: bool, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TASKQUEUE_EVENTS_ENABLED": "1" if events_on else "0"}
    return subprocess.Popen([sys.executable, "manage.py", "runworker_tq", "--log-level",
                             "warning", *extra], cwd=ROOT, env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def parse_ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def client(url: str, latencies: list[float], stop_at: list[float]) -> None:
    import websockets

    async with websockets.connect(url, max_queue=None) as ws:
        while not stop_at or time.time() < stop_at[0]:
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            event = json.loads(raw)
            if event["type"] == "task.started":
                latencies.append((time.time() - parse_ts(event["timestamp"])) * 1000)


async def measure_latency(port: int, n_clients: int, n_tasks: int, rate: float) -> list[float]:
    from tasks_app import producer

    latencies: list[float] = []
    stop_at: list[float] = []
    url = f"ws://127.0.0.1:{port}/ws?types=task.started"
    clients = [asyncio.create_task(client(url, latencies, stop_at)) for _ in range(n_clients)]
    await asyncio.sleep(2.0)
    for _ in range(n_tasks):
        await asyncio.to_thread(producer.enqueue, "echo", {})
        await asyncio.sleep(1 / rate)
    await asyncio.sleep(1.0)
    stop_at.append(time.time())
    await asyncio.gather(*clients)
    return latencies


def drain(n: int, events_on: bool) -> float:
    from tasks_app import producer
    from tasks_app.connection import get_broker

    broker = get_broker()
    for offset in range(0, n, 1000):
        producer.enqueue_many([{"type": "echo", "payload": {"i": i}}
                               for i in range(offset, min(offset + 1000, n))])
    start = time.time()
    worker = start_worker(events_on, "--burst")
    worker.wait(600)
    keys = broker.client.keys(broker.keys.task("*"))
    pipe = broker.client.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "completed_at")
    last = max(int(x) for x in pipe.execute() if x) / 1000
    broker.client.flushall()
    return n / (last - start)


def drain_watched(port: int, n: int, n_clients: int) -> tuple[float, int]:
    """Drain with events on while n_clients WebSocket clients take every event offered."""
    import threading

    received: list[float] = []
    stop_at: list[float] = []
    url = f"ws://127.0.0.1:{port}/ws"

    async def watch() -> None:
        await asyncio.gather(*(client(url, received, stop_at) for _ in range(n_clients)))

    thread = threading.Thread(target=asyncio.run, args=(watch(),), daemon=True)
    thread.start()
    time.sleep(2.0)
    rate = drain(n, events_on=True)
    stop_at.append(time.time())
    thread.join(30)
    return rate, len(received)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_clients = 20 if args.quick else 100
    n_tasks, rate = (200, 100.0) if args.quick else (1000, 200.0)
    n_drain = 5_000 if args.quick else 20_000
    server = start_redis()
    setup_django()
    port = free_port()
    daphne = start_daphne(port)
    try:
        worker = start_worker(True)
        try:
            latencies = asyncio.run(measure_latency(port, n_clients, n_tasks, rate))
        finally:
            stop(worker)
        print(f"event delivery latency, {n_clients} clients, {n_tasks} tasks at {rate:.0f}/s: "
              f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms "
              f"({len(latencies)} deliveries)")
        from tasks_app.connection import get_broker

        get_broker().client.flushall()
        on = drain(n_drain, events_on=True)
        off = drain(n_drain, events_on=False)
        watched, delivered = drain_watched(port, n_drain, n_clients)
        print(f"drain of {n_drain:,} echo tasks (default runworker_tq, daphne running): "
              f"events off {off:,.0f} tasks/s; events on, no client connected {on:,.0f} tasks/s "
              f"({100 * (off - on) / off:+.1f}% cost); events on, {n_clients} clients connected "
              f"{watched:,.0f} tasks/s ({100 * (off - watched) / off:+.1f}% cost, "
              f"{delivered:,} task.started deliveries)")
    finally:
        stop(daphne)
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
