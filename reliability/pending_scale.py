"""Scale: a backlog of 1,000,000 pending tasks costs no more per operation than 1,000.

    .venv/bin/python reliability/pending_scale.py            # 1k, 100k and 1M pending
    .venv/bin/python reliability/pending_scale.py --quick    # 1k, 10k and 50k (CI)
    .venv/bin/python reliability/pending_scale.py --levels 1000 200000

Starts its own Redis (AOF on, as the product runs) unless REDIS_URL is set (that Redis is
flushed).  No worker consumes: the backlog is filled with bulk enqueues of 1,000 through
the core broker (``Broker.enqueue_many``), each task the demo ``echo`` type with a typical
small payload (see PAYLOAD), priorities mixed.  At each level it measures, over a sample:

- enqueue, one call per task (``producer.enqueue``) and bulks of 1,000 (``Broker.enqueue_many``);
- dequeue + ack of the head task (``Broker.dequeue`` then ``Broker.ack``, as a worker slot
  does), one for each task enqueued, so the level stays where it is;
- a read by id (``Broker.get``) and ``GET /api/v1/tasks/{id}``, ``GET /api/v1/tasks`` (queue
  depths) and ``GET /metrics`` through Django in-process (no network), of random tasks;
- Redis memory per pending task: ``INFO memory`` used_memory after the fill minus before,
  divided by the number pending.

Pass (exit 1 otherwise): at the largest level, each median latency is at most
``--max-ratio`` (2) times the smallest level's, and the bulk enqueue rate at least half of it.
See docs/reliability.md for why 2x.
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT / "bench"))

from common import percentile, setup_django, start_redis  # noqa: E402

# A typical small payload: 63 bytes of JSON.
PAYLOAD = {"user_id": 48151623, "template": "welcome", "locale": "en-GB"}
PAYLOAD_BYTES = len(json.dumps(PAYLOAD))
BULK = 1000
PROBE_WORKER = "scale-probe"


@dataclass
class Level:
    """What was measured at one backlog size (latencies in ms)."""

    pending: int
    fill_rate: float = 0.0
    bulk_rate: float = 0.0
    bytes_per_task: float = 0.0
    timings: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.timings.setdefault(name, []).append(seconds * 1000)


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


def depth(client: Any, keys: Any) -> int:
    pipe = client.pipeline(transaction=False)
    for p in range(4):
        pipe.zcard(keys.pending(p))
    return sum(pipe.execute())


def fill(broker: Any, to: int, rng: random.Random, sample_ids: list[str]) -> float:
    """Bulk-enqueue until ``to`` tasks are pending; the rate of the last 20 bulks (tasks/s)."""
    have = depth(broker.client, broker.keys)
    recent: list[tuple[int, float]] = []
    while have < to:
        batch = specs(min(BULK, to - have), rng)
        spent, _ = timed(lambda b=batch: broker.enqueue_many(b))  # type: ignore[misc]
        recent = [*recent[-19:], (len(batch), spent)]
        have += len(batch)
        sample_ids.append(batch[rng.randrange(len(batch))].id)
    return sum(n for n, _ in recent) / sum(s for _, s in recent) if recent else 0.0


def register_probe(broker: Any) -> None:
    broker.heartbeat(PROBE_WORKER, {"concurrency": 1, "priorities": "3,2,1,0"}, [])


def dequeue_ack(broker: Any, level: Level, done: list[str]) -> None:
    """Take the head task and complete it, as a worker slot does."""
    spent_d, job = timed(lambda: broker.dequeue(PROBE_WORKER, (3, 2, 1, 0)))
    if isinstance(job, str):
        raise SystemExit(f"dequeue answered {job!r} with tasks pending")
    spent_a, _ = timed(lambda: broker.ack(job, PROBE_WORKER, '{"ok": true}', 0.0))
    level.add("dequeue", spent_d)
    level.add("ack", spent_a)
    level.add("dequeue + ack", spent_d + spent_a)
    done.append(job.id)


def measure(broker: Any, level: Level, rng: random.Random, sample_ids: list[str],
            rounds: int, bulks: int) -> None:
    from django.test import Client

    from tasks_app import producer

    client = Client(HTTP_HOST="localhost")
    done: list[str] = []
    register_probe(broker)
    # warm: scripts loaded, Django URL resolver and views imported
    producer.enqueue("echo", PAYLOAD)
    dequeue_ack(broker, Level(0), done)
    client.get("/api/v1/tasks")
    client.get("/metrics")
    for i in range(rounds):
        spent, _ = timed(lambda: producer.enqueue("echo", PAYLOAD, priority=rng.randrange(4)))
        level.add("enqueue (1 per call)", spent)
        dequeue_ack(broker, level, done)
        tid = rng.choice(sample_ids)
        spent, _ = timed(lambda t=tid: broker.get(t))  # type: ignore[misc]
        level.add("get by id (broker)", spent)
        spent, reply = timed(lambda t=tid: client.get(f"/api/v1/tasks/{t}"))  # type: ignore[misc]
        assert reply.status_code == 200, reply.content
        level.add("GET /api/v1/tasks/{id}", spent)
        if i % 10 == 0:
            spent, reply = timed(lambda: client.get("/api/v1/tasks"))
            assert reply.status_code == 200, reply.content
            level.add("GET /api/v1/tasks (depths)", spent)
            spent, reply = timed(lambda: client.get("/metrics"))
            assert reply.status_code == 200, reply.content
            level.add("GET /metrics", spent)
        if i % 200 == 0:
            register_probe(broker)
    total = 0.0
    for _ in range(bulks):
        batch = specs(BULK, rng)
        spent, _ = timed(lambda b=batch: broker.enqueue_many(b))  # type: ignore[misc]
        total += spent
        register_probe(broker)
        for _ in range(BULK):  # back to the level
            dequeue_ack(broker, Level(0), done)
    level.bulk_rate = bulks * BULK / total
    # The probe's completed tasks are not part of the backlog: drop them (memory figure).
    gone = set(done)
    sample_ids[:] = [t for t in sample_ids if t not in gone]
    for offset in range(0, len(done), 1000):
        broker.client.delete(*(broker.keys.task(t) for t in done[offset:offset + 1000]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1k, 10k and 50k pending (CI)")
    parser.add_argument("--levels", type=int, nargs="+", help="backlog sizes, ascending")
    parser.add_argument("--rounds", type=int, help="sampled operations per level")
    parser.add_argument("--bulks", type=int, help="bulks of 1,000 timed per level")
    parser.add_argument("--max-ratio", type=float, default=2.0,
                        help="largest/smallest level latency allowed (default 2)")
    args = parser.parse_args()
    levels = args.levels or ([1_000, 10_000, 50_000] if args.quick
                             else [1_000, 100_000, 1_000_000])
    rounds = args.rounds or (300 if args.quick else 2000)
    bulks = args.bulks or (3 if args.quick else 10)
    # Room above the largest level for the probes (the default cap is 1,000,000).
    os.environ["TASKQUEUE_MAX_PENDING"] = str(max(levels) * 2 + 100_000)
    server = start_redis()
    setup_django()
    from tasks_app.connection import get_broker

    broker = get_broker()
    broker.client.flushall()
    rng = random.Random(1)
    sample_ids: list[str] = []
    results: list[Level] = []
    print(f"Pending backlog scale: levels {', '.join(f'{n:,}' for n in levels)}; payload "
          f"{PAYLOAD_BYTES} bytes of JSON ({json.dumps(PAYLOAD)}), type 'echo', priorities "
          f"0-3; {rounds:,} sampled operations and {bulks} bulks of {BULK:,} per level; "
          f"no worker consuming")
    try:
        base_memory = used_memory(broker.client)
        started = time.perf_counter()
        for n in levels:
            level = Level(n)
            level.fill_rate = fill(broker, n, rng, sample_ids)
            time.sleep(0.5)
            level.bytes_per_task = (used_memory(broker.client) - base_memory) / n
            measure(broker, level, rng, sample_ids, rounds, bulks)
            level.pending = depth(broker.client, broker.keys)
            results.append(level)
            print(f"  reached {n:,} pending ({time.perf_counter() - started:.0f} s so far)",
                  flush=True)
        info = broker.client.info("memory")
    finally:
        broker.client.flushall()
        if server is not None:
            server.stop()
    report = print_table(results, info)
    return check(results, args.max_ratio, report)


def print_table(results: list[Level], info: dict[str, Any]) -> list[str]:
    names = list(results[0].timings)
    head = f"  {'at N pending':32}" + "".join(f"{r.pending:>22,}" for r in results)
    print("\n" + head)
    print(f"  {'bulk enqueue (fill), tasks/s':32}"
          + "".join(f"{r.fill_rate:>22,.0f}" for r in results))
    print(f"  {'bulk enqueue of 1,000, tasks/s':32}"
          + "".join(f"{r.bulk_rate:>22,.0f}" for r in results))
    single = [1000 / statistics.mean(r.timings["enqueue (1 per call)"]) for r in results]
    print(f"  {'enqueue 1 per call, tasks/s':32}" + "".join(f"{v:>22,.0f}" for v in single))
    print(f"  {'ms: mean / p50 / p99':32}")
    for name in names:
        cells = ""
        for r in results:
            t = r.timings[name]
            cells += f"{statistics.mean(t):>8.3f}/{percentile(t, 50):.3f}/{percentile(t, 99):.3f}"
        print(f"  {name:32}{cells}")
    print(f"  {'Redis used_memory per task, B':32}"
          + "".join(f"{r.bytes_per_task:>22,.0f}" for r in results))
    print(f"  (Redis at the end: used_memory {int(info['used_memory']) / 2**20:,.0f} MiB, "
          f"rss {int(info.get('used_memory_rss', 0)) / 2**20:,.0f} MiB)")
    return names


def check(results: list[Level], max_ratio: float, names: list[str]) -> int:
    small, large = results[0], results[-1]
    failures = []
    print(f"\n  largest / smallest level ({large.pending:,} vs {small.pending:,} pending), "
          f"limit {max_ratio:g}x:")
    for name in names:
        ratio = percentile(large.timings[name], 50) / percentile(small.timings[name], 50)
        ok = ratio <= max_ratio
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: median x{ratio:.2f}")
        if not ok:
            failures.append(name)
    ratio = small.bulk_rate / large.bulk_rate
    ok = ratio <= max_ratio
    print(f"  [{'PASS' if ok else 'FAIL'}] bulk enqueue rate: {large.bulk_rate:,.0f} vs "
          f"{small.bulk_rate:,.0f} tasks/s (x{1 / ratio:.2f})")
    if not ok:
        failures.append("bulk enqueue rate")
    if failures:
        print("FAILED: " + ", ".join(failures))
        return 1
    print("OK: per-operation cost flat from the smallest to the largest backlog")
    return 0


if __name__ == "__main__":
    sys.exit(main())
