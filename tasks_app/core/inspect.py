"""Inspection and admin operations: queue depths, workers, the dead-letter queue.

Reads use pipelines for batching only; they are snapshots, not atomic.
Changes go through the same Lua scripts as the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors, metrics
from .broker import Broker, redis_errors
from .keys import PRIORITIES, pending_band
from .states import Priority, TaskState
from .task import Task, ms_to_iso

DLQ_BATCH = 500
PURGE_BATCH = 500
Progress = Callable[[int], None]
"""Told how many items a batched operation has done so far, after each batch."""
# The reasons the scripts write into dead-letter entries (lib.lua's ``dead_letter`` callers).
DLQ_REASONS = ("max retries exceeded",)

STREAM_ID_PART_MAX = 2**64 - 1
"""The largest milliseconds or sequence part of a Redis stream entry id."""


@dataclass(frozen=True)
class QueueStats:
    """Depths of one priority (``running``: its tasks leased to workers, when counted)."""

    priority: int
    depth: int
    scheduled: int
    paused: bool
    running: int = 0

    @property
    def name(self) -> str:
        """The priority's label."""
        return Priority(self.priority).label

    def to_dict(self) -> dict[str, Any]:
        """The API representation (``queued`` and ``pending_unacked`` name depth and running
        as clients of the original server read them)."""
        return {"depth": self.depth, "priority": self.priority, "scheduled": self.scheduled,
                "paused": self.paused, "queued": self.depth, "pending_unacked": self.running}


@dataclass(frozen=True)
class QueueSnapshot:
    """Every priority's counts, the DLQ size and the counters, read in one atomic step."""

    queues: list[QueueStats]
    dlq_size: int
    counters: dict[str, int]

    def totals(self) -> dict[str, int]:
        """Sums over the priorities beside the cluster-wide counters."""
        return {
            "queued": sum(q.depth for q in self.queues),
            "pending_unacked": sum(q.running for q in self.queues),
            "scheduled": sum(q.scheduled for q in self.queues),
            "dlq_size": self.dlq_size,
            **self.counters,
        }

    def to_dict(self) -> dict[str, Any]:
        """``queues`` by name (highest first), ``scheduled_count``, ``dlq_size``, ``totals``."""
        return {"queues": {q.name: q.to_dict() for q in self.queues},
                "scheduled_count": sum(q.scheduled for q in self.queues),
                "dlq_size": self.dlq_size, "totals": self.totals()}


@dataclass(frozen=True)
class PurgeTarget:
    """What a purge of one priority would cancel now: ``count`` pending tasks, those
    enqueued up to sequence number ``up_to`` (None when nothing is pending)."""

    priority: int
    count: int
    up_to: int | None


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker as the registry shows it."""

    id: str
    state: str
    started_at: int | None
    last_heartbeat: int | None
    active_tasks: int
    concurrency: int
    hostname: str
    pid: int | None
    processed: int
    failed: int
    priorities: list[int]

    def to_dict(self) -> dict[str, Any]:
        """The API representation."""
        return {
            "id": self.id,
            "state": self.state,
            "started_at": ms_to_iso(self.started_at),
            "last_heartbeat": ms_to_iso(self.last_heartbeat),
            "active_tasks": self.active_tasks,
            "concurrency": self.concurrency,
            "hostname": self.hostname,
            "pid": self.pid,
            "processed": self.processed,
            "failed": self.failed,
            "priorities": [Priority(p).label for p in self.priorities],
        }


@dataclass(frozen=True)
class DLQEntry:
    """One dead-letter stream entry with the task it refers to."""

    message_id: str
    task_id: str
    reason: str
    error: str
    added_at: int
    task: Task | None
    type: str = ""
    priority: int | None = None
    attempts: int | None = None

    @property
    def task_type(self) -> str:
        """The type from the stream entry, else from the task record."""
        return self.type or (self.task.type if self.task else "")

    @property
    def task_priority(self) -> int | None:
        """The priority from the stream entry, else from the task record."""
        if self.priority is not None or self.task is None:
            return self.priority
        return int(self.task.priority)

    @property
    def task_attempts(self) -> int | None:
        """The attempts from the stream entry, else from the task record."""
        if self.attempts is not None or self.task is None:
            return self.attempts
        return self.task.attempts

    def to_dict(self) -> dict[str, Any]:
        """The API representation: the task (its record, or what the entry says when the
        record is gone) with the entry's reason, time and ids."""
        if self.task is not None:
            task = self.task.to_dict()
        else:
            task = {"id": self.task_id, "state": TaskState.DEAD_LETTER.value, "error": self.error}
        return {"task": task, "reason": self.reason, "added_at": ms_to_iso(self.added_at),
                "message_id": self.message_id, "task_id": self.task_id,
                "task_type": self.task_type}


@dataclass(frozen=True)
class DLQMatches:
    """One page of a filtered walk over the dead-letter stream, newest first.

    ``next_before`` continues the walk (None once the stream's oldest entry was read);
    ``scanned`` is how many stream entries this page read; ``truncated`` says the walk
    stopped at its scan limit before filling the page.
    """

    entries: list[DLQEntry]
    next_before: str | None
    scanned: int
    truncated: bool


class Inspector:
    """Read and administer one namespace."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.keys = broker.keys
        self.client: Any = broker.client

    def queue_stats(self) -> list[QueueStats]:
        """Pending and scheduled counts and paused flags, highest priority first."""
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for p in PRIORITIES:
                pipe.zcount(self.keys.pending, *pending_band(p))
                pipe.zcard(self.keys.delayed(p))
            pipe.smembers(self.keys.paused_queues)
            *counts, paused = pipe.execute()
        stats = [
            QueueStats(p, counts[2 * p], counts[2 * p + 1], str(p) in paused) for p in PRIORITIES
        ]
        return sorted(stats, key=lambda s: -s.priority)

    def queue_snapshot(self) -> QueueSnapshot:
        """Pending, scheduled, running and paused per priority, the DLQ size and the
        counters, all from one script: a consistent snapshot (costs one read per running
        task)."""
        reply = self.broker.run_script("queue_stats", self.keys.workers, [])
        *rows, dlq, raw = reply
        stats = [QueueStats(p, int(rows[4 * p]), int(rows[4 * p + 1]), rows[4 * p + 3] == 1,
                            int(rows[4 * p + 2])) for p in PRIORITIES]
        counters = dict(zip(raw[::2], raw[1::2], strict=True))
        return QueueSnapshot(sorted(stats, key=lambda s: -s.priority), int(dlq),
                             counter_totals(metrics.parse(counters).counters))

    def queue_depths(self) -> dict[str, int]:
        """Pending tasks per priority name, all four included."""
        return {s.name: s.depth for s in self.queue_stats()}

    def totals(self) -> dict[str, int]:
        """Cluster-wide counts since the metrics began, and the live gauges, in one dict."""
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.keys.metrics)
            pipe.xlen(self.keys.dlq)
            raw, dlq = pipe.execute()
        counters = counter_totals(metrics.parse(raw).counters)
        return {**counters, "running": self.running_count(), "dlq_size": int(dlq)}

    def running_count(self) -> int:
        """Tasks currently leased to workers: the registered workers' active sets, and the
        attempts of workers that left the registry whose lease has not run out yet."""
        with redis_errors():
            ids = self.client.zrange(self.keys.workers, 0, -1)
            pipe = self.client.pipeline(transaction=False)
            for wid in ids:
                pipe.scard(self.keys.worker_active(wid))
            pipe.zcard(self.keys.leases)
            return sum(int(n) for n in pipe.execute())

    def oldest_pending_us(self) -> dict[int, int | None]:
        """When the oldest pending task of each priority became pending (µs since the epoch)."""
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for p in PRIORITIES:
                pipe.zrangebyscore(self.keys.pending, *pending_band(p), start=0, num=1)
            heads = pipe.execute()
            pipe = self.client.pipeline(transaction=False)
            for head in heads:
                pipe.hget(self.keys.task(head[0]), "enqueued_us") if head else pipe.echo("")
            stamps = pipe.execute()
        return {p: (int(s) if s else None) for p, s in zip(PRIORITIES, stamps, strict=True)}

    def now_ms(self) -> int:
        """The Redis server's clock, which every timestamp the queue stores comes from (ms)."""
        with redis_errors():
            seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def _live_since_ms(self) -> int:
        """Heartbeats at or after this Redis time (ms) count as live."""
        return self.now_ms() - int(self.broker.config.heartbeat_timeout * 1000)

    def workers(self) -> list[WorkerInfo]:
        """Live workers (heartbeat within the heartbeat timeout), oldest first."""
        with redis_errors():
            ids = self.client.zrangebyscore(self.keys.workers, self._live_since_ms(), "+inf")
            pipe = self.client.pipeline(transaction=False)
            for wid in ids:
                pipe.hgetall(self.keys.worker(wid))
                pipe.scard(self.keys.worker_active(wid))
            replies = pipe.execute()
        out = []
        for raw, active in zip(replies[::2], replies[1::2], strict=True):
            if raw:
                out.append(_worker(raw, int(active)))
        return out

    def worker(self, worker_id: str) -> WorkerInfo:
        """One live worker; raises :class:`WorkerNotFound`."""
        with redis_errors():
            since = self._live_since_ms()
            pipe = self.client.pipeline(transaction=False)
            pipe.zscore(self.keys.workers, worker_id)
            pipe.hgetall(self.keys.worker(worker_id))
            pipe.scard(self.keys.worker_active(worker_id))
            score, raw, active = pipe.execute()
        if score is None or score < since or not raw:
            raise errors.WorkerNotFound(worker_id)
        return _worker(raw, int(active))

    def pause_worker(self, worker_id: str) -> None:
        """A paused worker finishes what it runs and takes nothing new."""
        self.broker.control("worker", worker_id, "pause")

    def resume_worker(self, worker_id: str) -> None:
        """Let a paused worker take tasks again."""
        self.broker.control("worker", worker_id, "resume")

    def pause_queue(self, priority: int) -> None:
        """Workers take nothing from a paused priority."""
        self.broker.control("queue", int(Priority(priority)), "pause")

    def resume_queue(self, priority: int) -> None:
        """Let workers take tasks of that priority again."""
        self.broker.control("queue", int(Priority(priority)), "resume")

    def purge_target(self, priority: int) -> PurgeTarget:
        """How many tasks of that priority are pending, and the newest one's sequence number."""
        low, high = pending_band(int(Priority(priority)))
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.zcount(self.keys.pending, low, high)
            pipe.zrevrangebyscore(self.keys.pending, high, low, start=0, num=1, withscores=True)
            count, newest = pipe.execute()
        return PurgeTarget(int(priority), int(count),
                           int(newest[0][1]) - low if newest else None)

    def purge(self, priority: int, up_to: int | None = None,
              progress: Progress | None = None) -> int:
        """Cancel the pending tasks of a priority enqueued up to sequence ``up_to`` (default:
        those pending now), in batches of PURGE_BATCH; return how many were cancelled
        (``progress`` is called with the running total after each batch).

        Each batch is atomic; tasks enqueued meanwhile are left alone.
        """
        p = int(Priority(priority))
        if up_to is None:
            up_to = self.purge_target(p).up_to
            if up_to is None:
                return 0
        total = 0
        while True:
            n, _, scanned = self.broker.run_script("purge", self.keys.pending,
                                             [p, PURGE_BATCH, up_to])
            total += int(n)
            if progress is not None:
                progress(total)
            if int(scanned) < PURGE_BATCH:
                return total

    def retry(self, task_id: str) -> Task:
        """Re-queue a failed or dead-lettered task now under its own id and return it;
        raises :class:`TaskNotFound` or :class:`NotRetryable`."""
        self.broker.run_script("retry", self.keys.seq, [task_id])
        return self.broker.get(task_id)

    def dlq_task_id(self, message_id: str) -> str:
        """The task id of a dead-letter entry; raises :class:`NotInDeadLetterQueue`
        (also for a well-formed id past what a stream can hold: no entry has it)."""
        if any(int(part) > STREAM_ID_PART_MAX for part in message_id.split("-")):
            raise errors.NotInDeadLetterQueue(message_id)
        with redis_errors():
            rows = self.client.xrange(self.keys.dlq, min=message_id, max=message_id, count=1)
        if not rows or not rows[0][1].get("task_id"):
            raise errors.NotInDeadLetterQueue(message_id)
        return str(rows[0][1]["task_id"])

    # -- dead-letter queue ---------------------------------------------------

    def dlq_size(self) -> int:
        """Entries in the dead-letter stream."""
        with redis_errors():
            return int(self.client.xlen(self.keys.dlq))

    def dlq_page(self, limit: int = 50, before: str | None = None) -> list[DLQEntry]:
        """Up to ``limit`` entries, newest first, older than message id ``before``."""
        end = f"({before}" if before else "+"
        with redis_errors():
            rows = self.client.xrevrange(self.keys.dlq, max=end, min="-", count=limit)
            pipe = self.client.pipeline(transaction=False)
            for _, fields in rows:
                pipe.hgetall(self.keys.task(fields.get("task_id", "")))
            records = pipe.execute()
        return [_entry(mid, fields, raw) for (mid, fields), raw in zip(rows, records, strict=True)]

    def dlq_entry(self, task_id: str) -> DLQEntry | None:
        """The entry of one dead-lettered task by its id, or None: two reads, no scan."""
        with redis_errors():
            raw = self.client.hgetall(self.keys.task(task_id))
            mid = raw.get("dlq_id")
            if raw.get("state") != "dead_letter" or not mid:
                return None
            rows = self.client.xrange(self.keys.dlq, min=mid, max=mid, count=1)
        return _entry(rows[0][0], rows[0][1], raw) if rows else None

    def dlq_find(self, limit: int = 50, before: str | None = None,
                 match: Callable[[dict[str, str]], bool] | None = None,
                 scan_limit: int = 10_000) -> DLQMatches:
        """Up to ``limit`` entries whose stream fields (``task_id type priority reason error
        attempts``) satisfy ``match``, newest first, older than message id ``before``.

        Without ``match`` this reads ``limit + 1`` stream entries and ``limit`` task records.
        With it, the stream is read in chunks of DLQ_BATCH until the page is full, the stream
        ends or ``scan_limit`` entries were read: the cost grows with the entries scanned.
        """
        chunk = max(limit + 1, DLQ_BATCH) if match else limit + 1
        found: list[tuple[str, dict[str, str]]] = []
        scanned, cursor, more = 0, before, True
        with redis_errors():
            while more and len(found) < limit:
                end = f"({cursor}" if cursor else "+"
                rows = self.client.xrevrange(self.keys.dlq, max=end, min="-", count=chunk)
                for i, (mid, fields) in enumerate(rows):
                    scanned, cursor = scanned + 1, mid
                    if match is None or match(fields):
                        found.append((mid, fields))
                    if len(found) == limit:
                        more = i + 1 < len(rows) or len(rows) == chunk
                        break
                else:
                    more = len(rows) == chunk
                    if scanned >= scan_limit:
                        break
            records = self._task_records([fields.get("task_id", "") for _, fields in found])
        entries = [_entry(m, f, r) for (m, f), r in zip(found, records, strict=True)]
        truncated = more and len(found) < limit
        return DLQMatches(entries, cursor if more else None, scanned, truncated)

    def _task_records(self, task_ids: list[str]) -> list[dict[str, str]]:
        pipe = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hgetall(self.keys.task(task_id))
        return list(pipe.execute())

    def dlq_retry(self, task_id: str) -> None:
        """Re-queue one dead-lettered task; raises :class:`NotInDeadLetterQueue`."""
        n = self.broker.run_script("dlq_retry", self.keys.dlq, ["ids", task_id])[0]
        if int(n) != 1:
            raise errors.NotInDeadLetterQueue(task_id)

    def dlq_retry_many(self, task_ids: list[str]) -> int:
        """Re-queue the given dead-lettered tasks; return how many were."""
        if not task_ids:
            return 0
        n = self.broker.run_script("dlq_retry", self.keys.dlq, ["ids", *task_ids])[0]
        return int(n)

    def dlq_retry_all(self, progress: Progress | None = None) -> int:
        """Re-queue every dead-lettered task, in batches; return how many were."""
        return self._drain("dlq_retry", progress)

    def dlq_delete(self, task_ids: list[str]) -> int:
        """Delete the given entries and their task records; return how many were."""
        if not task_ids:
            return 0
        n = self.broker.run_script("dlq_delete", self.keys.dlq, ["ids", *task_ids])[0]
        return int(n)

    def dlq_clear(self, progress: Progress | None = None) -> int:
        """Delete every entry and its task record, in batches."""
        return self._drain("dlq_delete", progress)

    def _drain(self, script: str, progress: Progress | None = None) -> int:
        """Apply a DLQ script to every entry present now, in batches (entries added
        meanwhile, such as tasks that die again at once, are left for the next call);
        ``progress`` is called with the running total after each batch."""
        with redis_errors():
            newest = self.client.xrevrange(self.keys.dlq, count=1)
        if not newest:
            return 0
        total = 0
        while True:
            n, _, scanned = self.broker.run_script(script, self.keys.dlq,
                                             ["all", DLQ_BATCH, newest[0][0]])
            total += int(n)
            if progress is not None:
                progress(total)
            if int(scanned) < DLQ_BATCH:
                return total


def counter_totals(counters: dict[str, dict[tuple[str, ...], int]]) -> dict[str, int]:
    """The cluster-wide counters summed over their labels."""
    done = counters["completed"]
    return {
        "submitted": sum(counters["submitted"].values()),
        "completed": sum(v for (_, status), v in done.items() if status == "success"),
        "failed": sum(v for (_, status), v in done.items() if status != "success"),
        "retries": sum(counters["retries"].values()),
        "cancelled": sum(counters["cancelled"].values()),
    }


def _worker(raw: dict[str, str], active: int) -> WorkerInfo:
    if raw.get("stopping") == "1":
        state = "stopping"
    elif raw.get("paused") == "1":
        state = "paused"
    else:
        state = "busy" if active else "idle"
    prios = [int(p) for p in raw.get("priorities", "").split(",") if p != ""]
    return WorkerInfo(
        id=raw["id"],
        state=state,
        started_at=int(raw["started_at"]) if raw.get("started_at") else None,
        last_heartbeat=int(raw["last_heartbeat"]) if raw.get("last_heartbeat") else None,
        active_tasks=active,
        concurrency=int(raw.get("concurrency", 0)),
        hostname=raw.get("hostname", ""),
        pid=int(raw["pid"]) if raw.get("pid") else None,
        processed=int(raw.get("processed", 0)),
        failed=int(raw.get("failed", 0)),
        priorities=prios,
    )


def _entry(message_id: str, fields: dict[str, str], raw: dict[str, str]) -> DLQEntry:
    return DLQEntry(
        message_id=message_id,
        task_id=fields.get("task_id", ""),
        reason=fields.get("reason", ""),
        error=fields.get("error", ""),
        added_at=int(message_id.split("-")[0]),
        task=Task.from_hash(raw) if raw else None,
        type=fields.get("type", ""),
        priority=int(fields["priority"]) if fields.get("priority") else None,
        attempts=int(fields["attempts"]) if fields.get("attempts") else None,
    )
