"""Scale: a backlog of 1,000,000 pending tasks costs no more per operation than 1,000.

    .venv/bin/python reliability/pending_scale.py            # 1k, 100k and 1M pending
    .venv/bin/python reliability/pending_scale.py --quick    # 1k, 10k and 50k (CI)
    .venv/bin/python reliability/pending_scale.py --levels 1000 200000

Starts its own Redis (AOF on, as the product runs) unless REDIS_URL is set (that Redis is
flushed).  No worker consumes.  The product's namespace is filled, with bulk enqueues of
1,000 through the core broker (``Broker.enqueue_many``), to each level in turn; each task is
the demo ``echo`` type with a typical small payload (PAYLOAD, 63 bytes of JSON), priorities
mixed.  At each level, over a sample, it times:

- enqueue, one task per call and bulks of 1,000 (``Broker.submit``);
- dequeue + ack of the head task (``Broker.dequeue`` then ``Broker.ack``, as a worker slot
  does), one for each task enqueued, so the level stays where it is;
- a read by id (``Broker.get``), and ``GET /api/v1/tasks/{id}``, ``GET /api/v1/tasks``
  (depths) and ``GET /metrics`` through Django in-process (no network);
- each call's time inside Redis (SLOWLOG with a 0 µs threshold);
- Redis memory per pending task: ``INFO memory`` used_memory after the fill minus before,
  divided by the number pending.

The same broker operations run interleaved, call by call, on a reference namespace that
stays at the smallest level, so both see the same machine: on a shared machine the speed
of everything drifts by 2x within minutes, and a ratio taken at the same moment does not.

Pass (exit 1 otherwise): at the largest level, for each broker operation, the median time
(client side, and inside Redis) is at most ``--max-ratio`` (2) times the reference's.
See docs/reliability.md for why 2x.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bench.common import percentile, setup_django, start_redis  # noqa: E402

PAYLOAD = {"user_id": 48151623, "template": "welcome", "locale": "en-GB"}
PAYLOAD_BYTES = len(json.dumps(PAYLOAD))
BULK = 1000
PROBE_WORKER = "scale-probe"
REF_NAMESPACE = "scale-ref"
OPS = ("enqueue, 1 per call", "enqueue, 1000 per call", "dequeue", "ack", "get by id")


@dataclass
class Side:
    """Timings of one namespace at one level: client side (ms) and inside Redis (µs)."""

    client: dict[str, list[float]] = field(default_factory=dict)
    server: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.client.setdefault(name, []).append(seconds * 1000)


@dataclass
class Level:
    """What was measured at one backlog size."""

    target: int
    pending: int = 0
    fill_rate: float = 0.0
    bytes_per_task: float = 0.0
    big: Side = field(default_factory=Side)
    ref: Side = field(default_factory=Side)


class RedisTimer:
    """Redis's own time per command, from SLOWLOG with a 0 µs threshold."""

    def __init__(self, brokers: dict[str, Any]) -> None:
        self.client = next(iter(brokers.values())).client
        # Each namespace has its own scripts (the key names are built in): its own function
        # library (FCALL <library>_<script>, Redis 7+), or its own SHAs (EVALSHA).
        from tasks_app.core.scripts import NAMES, source

        self.names = {}
        for broker in brokers.values():
            for name in NAMES:
                self.names[f"{broker.scripts.library_name}_{name}"] = name
                sha = hashlib.sha1(source(name, broker.keys, broker.config).encode()).hexdigest()
                self.names[sha] = name
        self.tags = {f"{{{broker.config.namespace}}}": side for side, broker in brokers.items()}
        self.saved = {k: self.client.config_get(k)[k]
                      for k in ("slowlog-log-slower-than", "slowlog-max-len")}

    def start(self) -> None:
        self.client.config_set("slowlog-max-len", 50_000)
        self.client.config_set("slowlog-log-slower-than", 0)
        self.client.slowlog_reset()

    def collect(self, level: Level | None) -> None:
        entries = self.client.slowlog_get(50_000)
        self.client.slowlog_reset()
        if level is None:
            return
        for entry in entries:
            command = entry["command"]
            if isinstance(command, bytes):
                command = command.decode(errors="replace")
            parts = command.split(" ", 5)
            label, key = None, ""
            if parts[0].upper() in ("EVALSHA", "FCALL") and len(parts) > 4:
                name, key = self.names.get(parts[1]), parts[3]
                if name == "enqueue" and parts[4] in ("1", "1000"):
                    label = f"enqueue, {parts[4]} per call"
                elif name in ("dequeue", "ack"):
                    label = name
            elif parts[0].upper() == "HGETALL" and ":task:" in parts[1]:
                label, key = "get by id", parts[1]
            side = next((s for tag, s in self.tags.items() if tag in key), None)
            if label and side:
                getattr(level, side).server.setdefault(label, []).append(float(entry["duration"]))

    def stop(self) -> None:
        for key, value in self.saved.items():
            self.client.config_set(key, value)
        self.client.slowlog_reset()


def specs(n: int, rng: random.Random) -> list[Any]:
    from tasks_app import producer

    return [producer.spec({"type": "echo", "payload": PAYLOAD, "priority": rng.randrange(4)})
            for _ in range(n)]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def depth(broker: Any) -> int:
    return int(broker.client.zcard(broker.keys.pending))


def fill(broker: Any, to: int, rng: random.Random, ids: list[str]) -> float:
    """Bulk-enqueue until ``to`` tasks are pending; the rate of the last 20 bulks (tasks/s)."""
    have = depth(broker)
    recent: list[tuple[int, float]] = []
    while have < to:
        batch = specs(min(BULK, to - have), rng)
        spent, _ = timed(lambda b=batch: broker.enqueue_many(b))  # type: ignore[misc]
        recent = [*recent[-19:], (len(batch), spent)]
        have += len(batch)
        ids += [spec.id for spec in rng.sample(batch, min(20, len(batch)))]
    return sum(n for n, _ in recent) / sum(s for _, s in recent) if recent else 0.0


def register_probe(broker: Any) -> None:
    broker.heartbeat(PROBE_WORKER, {"concurrency": 1, "priorities": "3,2,1,0"}, [])


def dequeue_ack(broker: Any, side: Side, done: list[str]) -> None:
    """Take the head task and complete it, as a worker slot does."""
    spent_d, job = timed(lambda: broker.dequeue(PROBE_WORKER, (3, 2, 1, 0)))
    if isinstance(job, str):
        raise SystemExit(f"dequeue answered {job!r} with tasks pending")
    spent_a, _ = timed(lambda: broker.ack(job, PROBE_WORKER, '{"ok": true}', 0.0))
    side.add("dequeue", spent_d)
    side.add("ack", spent_a)
    side.add("dequeue + ack", spent_d + spent_a)
    done.append(job.id)


def drop(broker: Any, done: list[str], ids: list[str]) -> None:
    """Delete the probe's completed tasks (not part of the backlog) and forget their ids."""
    for offset in range(0, len(done), 1000):
        broker.client.delete(*(broker.keys.task(t) for t in done[offset:offset + 1000]))
    gone = set(done)
    ids[:] = [t for t in ids if t not in gone]
    done.clear()


def measure(brokers: dict[str, Any], timer: RedisTimer, level: Level, rng: random.Random,
            ids: dict[str, list[str]], rounds: int, bulks: int) -> None:
    from django.test import Client

    api = Client(HTTP_HOST="localhost")
    done: dict[str, list[str]] = {side: [] for side in brokers}
    scratch = Side()
    for side, broker in brokers.items():  # warm: scripts loaded, connections open
        register_probe(broker)
        broker.submit(specs(1, rng))
        dequeue_ack(broker, scratch, done[side])
    api.get("/api/v1/tasks")
    api.get("/metrics")
    # Park Django's objects out of the collector's way: a full collection of them landing
    # inside one side's timed call (in step with the loop's allocations) skews the pair.
    gc.collect()
    gc.freeze()
    timer.start()
    order = list(brokers.items())
    for i in range(rounds):
        order.reverse()  # neither side always goes first
        for side_name, broker in order:
            side = getattr(level, side_name)
            one = specs(1, rng)
            spent, _ = timed(lambda b=broker, s=one: b.submit(s))  # type: ignore[misc]
            side.add("enqueue, 1 per call", spent)
            ids[side_name].append(one[0].id)
            dequeue_ack(broker, side, done[side_name])
            tid = rng.choice(ids[side_name])
            spent, _ = timed(lambda b=broker, t=tid: b.get(t))  # type: ignore[misc]
            side.add("get by id", spent)
        tid = rng.choice(ids["big"])
        spent, reply = timed(lambda t=tid: api.get(f"/api/v1/tasks/{t}"))  # type: ignore[misc]
        assert reply.status_code == 200, reply.content
        level.big.add("GET /api/v1/tasks/{id}", spent)
        if i % 10 == 0:
            spent, reply = timed(lambda: api.get("/api/v1/tasks"))
            assert reply.status_code == 200, reply.content
            level.big.add("GET /api/v1/tasks (depths)", spent)
            spent, reply = timed(lambda: api.get("/metrics"))
            assert reply.status_code == 200, reply.content
            level.big.add("GET /metrics", spent)
        if i % 200 == 199:
            timer.collect(level)
            for broker in brokers.values():
                register_probe(broker)
    timer.collect(level)
    for _ in range(bulks):
        order.reverse()
        # Let Redis settle after the last drain (its writes, the SLOWLOG read): the first
        # call after it ran up to 2x slower, whichever side it was.
        time.sleep(0.2)
        for broker in brokers.values():
            broker.ping()
        for side_name, broker in order:
            batch = specs(BULK, rng)
            gc.collect()
            spent, _ = timed(lambda b=broker, s=batch: b.submit(s))  # type: ignore[misc]
            getattr(level, side_name).add("enqueue, 1000 per call", spent)
            ids[side_name] += [spec.id for spec in rng.sample(batch, 20)]
        timer.collect(level)
        for side_name, broker in order:  # back to the level
            register_probe(broker)
            for _ in range(BULK):
                dequeue_ack(broker, scratch, done[side_name])
        timer.collect(None)
    timer.stop()
    for side_name, broker in brokers.items():
        drop(broker, done[side_name], ids[side_name])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1k, 10k and 50k pending (CI)")
    parser.add_argument("--levels", type=int, nargs="+", help="backlog sizes, ascending")
    parser.add_argument("--rounds", type=int, help="sampled operations per level")
    parser.add_argument("--bulks", type=int, help="bulks of 1,000 timed per level")
    parser.add_argument("--max-ratio", type=float, default=2.0,
                        help="largest level / reference, median, allowed (default 2)")
    args = parser.parse_args()
    levels = sorted(args.levels or ([1_000, 10_000, 50_000] if args.quick
                                    else [1_000, 100_000, 1_000_000]))
    rounds = args.rounds or (400 if args.quick else 2000)
    bulks = args.bulks or (6 if args.quick else 10)
    # Room above the largest level for the probes (the default cap is 1,000,000).
    os.environ["TASKQUEUE_MAX_PENDING"] = str(max(levels) * 2 + 100_000)
    server = start_redis()
    setup_django()
    from tasks_app.connection import get_broker
    from tasks_app.core.broker import Broker

    big = get_broker()
    ref = Broker.from_config(dataclasses.replace(big.config, namespace=REF_NAMESPACE))
    brokers = {"big": big, "ref": ref}
    big.client.flushall()
    rng = random.Random(1)
    ids: dict[str, list[str]] = {"big": [], "ref": []}
    results: list[Level] = []
    print(f"Pending backlog scale: levels {', '.join(f'{n:,}' for n in levels)} (reference "
          f"namespace at {levels[0]:,}); payload {PAYLOAD_BYTES} bytes of JSON "
          f"({json.dumps(PAYLOAD)}), type 'echo', priorities 0-3; {rounds:,} sampled "
          f"operations and {bulks} bulks of {BULK:,} per level; no worker consuming")
    timer = RedisTimer(brokers)
    try:
        fill(ref, levels[0], rng, ids["ref"])
        time.sleep(0.5)
        base_memory = used_memory(big.client)
        started = time.perf_counter()
        for n in levels:
            level = Level(n)
            level.fill_rate = fill(big, n, rng, ids["big"])
            time.sleep(0.5)
            level.bytes_per_task = (used_memory(big.client) - base_memory) / n
            measure(brokers, timer, level, rng, ids, rounds, bulks)
            level.pending = depth(big)
            results.append(level)
            print(f"  measured at {level.pending:,} pending "
                  f"({time.perf_counter() - started:.0f} s so far)", flush=True)
        info = big.client.info("memory")
    finally:
        timer.stop()
        if server is None:  # someone else's Redis: leave it empty (in the background)
            big.client.flushall(asynchronous=True)
        else:
            server.stop()
    print_table(results, info)
    return check(results, args.max_ratio)


def cell(values: list[float], width: int = 22) -> str:
    if not values:
        return f"{'-':>{width}}"
    text = (f"{statistics.mean(values):.3g}/{percentile(values, 50):.3g}/"
            f"{percentile(values, 99):.3g}")
    return f"{text:>{width}}"


def rate(side: Side, name: str, per_call: int) -> float:
    return per_call * 1000 / statistics.mean(side.client[name])


def print_table(results: list[Level], info: dict[str, Any]) -> None:
    w = 36
    print(f"\n  {'at N pending':{w}}" + "".join(f"{r.pending:>22,}" for r in results))
    print(f"  {'bulk enqueue (fill), tasks/s':{w}}"
          + "".join(f"{r.fill_rate:>22,.0f}" for r in results))
    print(f"  {'enqueue, bulks of 1,000, tasks/s':{w}}"
          + "".join(f"{rate(r.big, 'enqueue, 1000 per call', BULK):>22,.0f}" for r in results))
    print(f"  {'enqueue, 1 per call, tasks/s':{w}}"
          + "".join(f"{rate(r.big, 'enqueue, 1 per call', 1):>22,.0f}" for r in results))
    print(f"  {'client side, ms: mean/p50/p99':{w}}")
    for name in results[0].big.client:
        print(f"  {name:{w}}" + "".join(cell(r.big.client[name]) for r in results))
    print(f"  {'inside Redis, us: mean/p50/p99':{w}}")
    for name in OPS:
        print(f"  {name:{w}}" + "".join(cell(r.big.server.get(name, [])) for r in results))
    print(f"  {'Redis used_memory per pending task':{w}}"
          + "".join(f"{r.bytes_per_task:>20,.0f} B" for r in results))
    print(f"  (Redis at the end: used_memory {int(info['used_memory']) / 2**20:,.0f} MiB, "
          f"used_memory_rss {int(info.get('used_memory_rss', 0)) / 2**20:,.0f} MiB)")
    print(f"\n  median, this level / reference namespace ({results[0].target:,} pending) "
          "measured alongside:")
    print(f"  {'':{w}}" + "".join(f"{r.pending:>22,}" for r in results))
    for name in OPS:
        print(f"  {name + ', client side':{w}}"
              + "".join(times(ratio(r, name, "client")) for r in results))
        print(f"  {name + ', inside Redis':{w}}"
              + "".join(times(ratio(r, name, "server")) for r in results))


def times(value: float) -> str:
    return f"{'x' + format(value, '.2f'):>22}"


def ratio(level: Level, name: str, kind: str) -> float:
    big, ref = getattr(level.big, kind).get(name), getattr(level.ref, kind).get(name)
    if not big or not ref:
        return float("nan")
    return percentile(big, 50) / percentile(ref, 50)


def check(results: list[Level], max_ratio: float) -> int:
    large = results[-1]
    failures = []
    print(f"\n  pass conditions at {large.pending:,} pending: median at most x{max_ratio:g} "
          "the reference's")
    for name in OPS:
        for kind, where in (("client", "client side"), ("server", "inside Redis")):
            r = ratio(large, name, kind)
            ok = r <= max_ratio  # NaN (not measured) fails
            print(f"  [{'PASS' if ok else 'FAIL'}] {name}, {where}: x{r:.2f}")
            if not ok:
                failures.append(f"{name}, {where}")
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("OK: per-operation cost flat from the smallest to the largest backlog")
    return 0


if __name__ == "__main__":
    sys.exit(main())
