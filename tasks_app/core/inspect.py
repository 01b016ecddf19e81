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
from .keys import DEFAULT_QUEUE, PRIORITIES, Keys, pending_band
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
    enqueued up to the sequence numbers ``up_to`` (per shard ref; None when nothing is
    pending)."""

    priority: int
    count: int
    up_to: dict[str, int] | None


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


@dataclass(frozen=True)
class NamedQueueStats:
    """One named queue's figures, summed over its shards."""

    name: str
    shards: int
    paused: bool
    depths: dict[str, int]
    scheduled: int
    dlq_size: int

    def to_dict(self) -> dict[str, Any]:
        """The API representation (``/admin/queues`` ``named``)."""
        return {"name": self.name, "shards": self.shards, "paused": self.paused,
                "depth": sum(self.depths.values()), "queue_depths": self.depths,
                "scheduled": self.scheduled, "dlq_size": self.dlq_size}


def _mid(message_id: str) -> tuple[int, int]:
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq or 0)


class Inspector:
    """Read and administer one namespace: every shard of every queue.  Reads fan out over
    the shards in one pipeline (one round trip per Redis node)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.keys = broker.keys
        self.client: Any = broker.client

    def _shards(self) -> list[Keys]:
        return self.broker.all_shards()

    def _fan(self, shards: list[Keys], build: Callable[[Any, Keys], None]) -> list[Any]:
        """Run ``build(pipe, keys)`` for each shard in one pipeline; the replies, in order."""
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for keys in shards:
                build(pipe, keys)
            return list(pipe.execute())

    def queue_stats(self) -> list[QueueStats]:
        """Pending and scheduled counts and paused flags, highest priority first, summed
        over every queue."""
        shards = self._shards()

        def build(pipe: Any, keys: Keys) -> None:
            for p in PRIORITIES:
                count_pending(pipe, keys, p)
                pipe.zcard(keys.delayed(p))

        replies = self._fan(shards, build)
        with redis_errors():
            paused = self.client.smembers(self.keys.paused_queues)
        per = 3 * len(PRIORITIES)
        rows = [[int(n) for n in replies[k * per:(k + 1) * per]] for k in range(len(shards))]
        stats = [QueueStats(p, sum(row[3 * p] + row[3 * p + 1] for row in rows),
                            sum(row[3 * p + 2] for row in rows),
                            str(p) in paused) for p in PRIORITIES]
        return sorted(stats, key=lambda s: -s.priority)

    def named_queues(self) -> list[NamedQueueStats]:
        """Every named queue's depths per priority, scheduled count, DLQ size and paused
        flag (the default queue first, then by name)."""
        queues = self.broker.queues()
        names = sorted(queues, key=lambda q: (q != DEFAULT_QUEUE, q))
        shards = [(name, keys) for name in names for keys in self.broker.queue_shards(name)]

        def build(pipe: Any, keys: Keys) -> None:
            for p in PRIORITIES:
                count_pending(pipe, keys, p)
                pipe.zcard(keys.delayed(p))
            pipe.xlen(keys.dlq)

        replies = self._fan([k for _, k in shards], build)
        with redis_errors():
            paused = self.client.smembers(self.keys.paused_named)
        per = 2 * len(PRIORITIES) + 1
        sums: dict[str, list[int]] = {name: [0] * per for name in names}
        for k, (name, _) in enumerate(shards):
            row = sums[name]
            got = [int(n) for n in replies[k * (per + 4):(k + 1) * (per + 4)]]
            for p in PRIORITIES:  # pending + parked, then delayed
                row[2 * p] += got[3 * p] + got[3 * p + 1]
                row[2 * p + 1] += got[3 * p + 2]
            row[-1] += got[-1]
        out = []
        for name in names:
            row = sums[name]
            depths = {Priority(p).label: row[2 * p] for p in sorted(PRIORITIES, reverse=True)}
            out.append(NamedQueueStats(name, len(self.broker.queue_shards(name)),
                                       name in paused, depths,
                                       sum(row[2 * p + 1] for p in PRIORITIES), row[-1]))
        return out

    def queue_snapshot(self) -> QueueSnapshot:
        """Pending, scheduled, running and paused per priority, the DLQ size and the
        counters: one script per shard, each a consistent snapshot of its shard (costs
        one read per running task)."""
        rows = [[0, 0, 0, False] for _ in PRIORITIES]
        dlq = 0
        raw_counters: dict[str, int] = {}
        for keys in self._shards():
            reply = self.broker.run_script("queue_stats", keys.workers, [])
            *cells, size, raw = reply
            for p in PRIORITIES:
                row = rows[p]
                row[0] += int(cells[4 * p])
                row[1] += int(cells[4 * p + 1])
                row[2] += int(cells[4 * p + 2])
                if keys is self.keys:
                    row[3] = cells[4 * p + 3] == 1
            dlq += int(size)
            for name, value in zip(raw[::2], raw[1::2], strict=True):
                raw_counters[name] = raw_counters.get(name, 0) + int(value)
        stats = [QueueStats(p, int(r[0]), int(r[1]), bool(r[3]), int(r[2]))
                 for p, r in zip(PRIORITIES, rows, strict=True)]
        counters = {k: str(v) for k, v in raw_counters.items()}
        return QueueSnapshot(sorted(stats, key=lambda s: -s.priority), dlq,
                             counter_totals(metrics.parse(counters).counters))

    def queue_depths(self) -> dict[str, int]:
        """Pending tasks per priority name, all four included."""
        return {s.name: s.depth for s in self.queue_stats()}

    def metrics_raw(self) -> dict[str, str]:
        """The metrics hashes of every shard, summed field by field."""
        total: dict[str, int] = {}
        for raw in self._fan(self._shards(), lambda pipe, keys: pipe.hgetall(keys.metrics)):
            for name, value in raw.items():
                total[name] = total.get(name, 0) + int(value)
        return {k: str(v) for k, v in total.items()}

    def metrics_by_queue(self) -> dict[str, dict[str, str]]:
        """Each queue's metrics hash (its shards summed field by field)."""
        shards = self._shards()
        out: dict[str, dict[str, int]] = {}
        for keys, raw in zip(shards, self._fan(shards, lambda p, k: p.hgetall(k.metrics)),
                             strict=True):
            total = out.setdefault(keys.queue, {})
            for name, value in raw.items():
                total[name] = total.get(name, 0) + int(value)
        return {q: {k: str(v) for k, v in m.items()} for q, m in out.items()}

    def totals(self) -> dict[str, int]:
        """Cluster-wide counts since the metrics began, and the live gauges, in one dict."""
        counters = counter_totals(metrics.parse(self.metrics_raw()).counters)
        return {**counters, "running": self.running_count(), "dlq_size": self.dlq_size()}

    def running_count(self) -> int:
        """Tasks currently leased to workers: the registered workers' active sets, and the
        attempts of workers that left the registry whose lease has not run out yet."""
        shards = self._shards()
        ids = self._fan(shards, lambda pipe, keys: pipe.zrange(keys.workers, 0, -1))

        def build(pipe: Any, keys: Keys) -> None:
            for wid in ids[shards.index(keys)]:
                pipe.scard(keys.worker_active(wid))
            pipe.zcard(keys.leases)

        return sum(int(n) for n in self._fan(shards, build))

    def oldest_pending_us(self) -> dict[int, int | None]:
        """When the oldest pending task of each priority became pending (µs since the epoch),
        over every queue; a task parked by a per-type limit is pending too."""
        shards = self._shards()
        lines = 2 * len(PRIORITIES)  # per shard: each priority's head in line, then parked

        def heads(pipe: Any, keys: Keys) -> None:
            for line in (keys.pending, keys.parked_all):
                for p in PRIORITIES:
                    pipe.zrangebyscore(line, *pending_band(p), start=0, num=1)

        found = self._fan(shards, heads)
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            wanted = [(k, i) for k in range(len(shards)) for i in range(lines)
                      if found[k * lines + i]]
            for k, i in wanted:
                pipe.hget(shards[k].task(found[k * lines + i][0]), "enqueued_us")
            got = dict(zip(wanted, pipe.execute(), strict=True)) if wanted else {}
        out: dict[int, int | None] = {}
        for p in PRIORITIES:
            values = [int(v) for k in range(len(shards)) for i in (p, len(PRIORITIES) + p)
                      if (v := got.get((k, i)))]
            out[p] = min(values) if values else None
        return out

    def now_ms(self) -> int:
        """The Redis server's clock, which every timestamp the queue stores comes from (ms)."""
        with redis_errors():
            seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def _live_since_ms(self) -> int:
        """Heartbeats at or after this Redis time (ms) count as live."""
        return self.now_ms() - int(self.broker.config.heartbeat_timeout * 1000)

    def workers(self) -> list[WorkerInfo]:
        """Live workers (heartbeat within the heartbeat timeout), oldest first.  A worker
        serving several queues is registered in each: shown once, its active tasks summed."""
        shards = self._shards()
        since = self._live_since_ms()
        ids = self._fan(shards, lambda pipe, keys: pipe.zrangebyscore(
            keys.workers, since, "+inf", withscores=True))
        wanted = [(keys, wid) for keys, found in zip(shards, ids, strict=True)
                  for wid, _ in found]

        def build(pipe: Any, item: Any) -> None:
            keys, wid = item
            pipe.hgetall(keys.worker(wid))
            pipe.scard(keys.worker_active(wid))

        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for item in wanted:
                build(pipe, item)
            replies = pipe.execute()
        merged: dict[str, tuple[dict[str, str], int]] = {}
        for (_, wid), raw, active in zip(wanted, replies[::2], replies[1::2], strict=True):
            if not raw:
                continue
            if wid in merged:
                first, n = merged[wid]
                merged[wid] = (first, n + int(active))
            else:
                merged[wid] = (raw, int(active))
        workers = [_worker(raw, active) for raw, active in merged.values()]
        return sorted(workers, key=lambda w: (w.started_at or 0, w.id))

    def worker(self, worker_id: str) -> WorkerInfo:
        """One live worker; raises :class:`WorkerNotFound`."""
        since = self._live_since_ms()
        shards = self._shards()

        def build(pipe: Any, keys: Keys) -> None:
            pipe.zscore(keys.workers, worker_id)
            pipe.hgetall(keys.worker(worker_id))
            pipe.scard(keys.worker_active(worker_id))

        replies = self._fan(shards, build)
        found, active = None, 0
        for k in range(len(shards)):
            score, raw, n = replies[3 * k:3 * k + 3]
            if score is not None and score >= since and raw:
                found = found or raw
                active += int(n)
        if found is None:
            raise errors.WorkerNotFound(worker_id)
        return _worker(found, active)

    def pause_worker(self, worker_id: str) -> None:
        """A paused worker finishes what it runs and takes nothing new."""
        self.broker.control("worker", worker_id, "pause")

    def resume_worker(self, worker_id: str) -> None:
        """Let a paused worker take tasks again."""
        self.broker.control("worker", worker_id, "resume")

    def pause_queue(self, priority: int) -> None:
        """Workers take nothing of that priority, in any queue."""
        self.broker.control("queue", int(Priority(priority)), "pause")

    def resume_queue(self, priority: int) -> None:
        """Let workers take tasks of that priority again."""
        self.broker.control("queue", int(Priority(priority)), "resume")

    def known_queue(self, name: str) -> bool:
        """True for a queue the namespace knows (configured or used)."""
        return name in self.broker.queues(fresh=True)

    def pause_named_queue(self, name: str) -> None:
        """Workers take nothing from that queue (any priority) until it is resumed."""
        self._require_queue(name)
        self.broker.control("named", name, "pause")

    def resume_named_queue(self, name: str) -> None:
        """Let workers take from that queue again."""
        self._require_queue(name)
        self.broker.control("named", name, "resume")

    def _require_queue(self, name: str) -> None:
        if not self.known_queue(name):
            raise errors.QueueNotFound(name)

    def purge_target(self, priority: int) -> PurgeTarget:
        """How many tasks of that priority are pending, and, per shard, the newest one's
        sequence number."""
        low, high = pending_band(int(Priority(priority)))
        shards = self._shards()

        def build(pipe: Any, keys: Keys) -> None:
            for key in (keys.pending, keys.parked_all):  # parked tasks are pending too
                pipe.zcount(key, low, high)
                pipe.zrevrangebyscore(key, high, low, start=0, num=1, withscores=True)

        replies = self._fan(shards, build)
        count, marks = 0, {}
        for k, keys in enumerate(shards):
            got = replies[4 * k:4 * k + 4]
            count += int(got[0]) + int(got[2])
            newest = [int(found[0][1]) for found in (got[1], got[3]) if found]
            if newest:
                marks[keys.ref] = max(newest) - low
        return PurgeTarget(int(priority), count, marks or None)

    def purge(self, priority: int, up_to: dict[str, int] | None = None,
              progress: Progress | None = None) -> int:
        """Cancel the pending tasks of a priority enqueued up to the per-shard sequence
        numbers ``up_to`` (default: those pending now), in batches of PURGE_BATCH; return
        how many were cancelled (``progress`` is called with the running total after each
        batch).

        Each batch is atomic; tasks enqueued meanwhile are left alone.
        """
        p = int(Priority(priority))
        if up_to is None:
            up_to = self.purge_target(p).up_to
            if up_to is None:
                return 0
        total = 0
        for ref, mark in up_to.items():
            keys = self.broker.shard(ref)
            while True:
                n, _, scanned = self.broker.run_script("purge", keys.pending,
                                                       [p, PURGE_BATCH, mark])
                total += int(n)
                if progress is not None:
                    progress(total)
                if int(scanned) < PURGE_BATCH:
                    break
        return total

    def retry(self, task_id: str) -> Task:
        """Re-queue a failed or dead-lettered task now under its own id and return it;
        raises :class:`TaskNotFound` or :class:`NotRetryable`."""
        keys = self.broker.locate(task_id)
        if keys is None:
            raise errors.TaskNotFound(task_id)
        self.broker.run_script("retry", keys.seq, [task_id])
        return self.broker.get(task_id)

    def dlq_task_id(self, message_id: str) -> str:
        """The task id of a dead-letter entry; raises :class:`NotInDeadLetterQueue`
        (also for a well-formed id past what a stream can hold: no entry has it)."""
        if any(int(part) > STREAM_ID_PART_MAX for part in message_id.split("-")):
            raise errors.NotInDeadLetterQueue(message_id)
        found = self._fan(self._shards(), lambda pipe, keys: pipe.xrange(
            keys.dlq, min=message_id, max=message_id, count=1))
        for rows in found:
            if rows and rows[0][1].get("task_id"):
                return str(rows[0][1]["task_id"])
        raise errors.NotInDeadLetterQueue(message_id)

    # -- dead-letter queue ---------------------------------------------------

    def dlq_size(self) -> int:
        """Entries in the dead-letter streams of every queue."""
        return sum(int(n) for n in self._fan(self._shards(),
                                             lambda pipe, keys: pipe.xlen(keys.dlq)))

    def _dlq_rows(self, before: str | None, count: int
                  ) -> list[tuple[str, dict[str, str], Keys]]:
        """Up to ``count`` entries older than ``before``, newest first, merged over every
        shard's stream (ordered by message id, which is the time of death)."""
        end = f"({before}" if before else "+"
        shards = self._shards()
        found = self._fan(shards, lambda pipe, keys: pipe.xrevrange(keys.dlq, max=end, min="-",
                                                                     count=count))
        rows = [(mid, fields, keys) for keys, part in zip(shards, found, strict=True)
                for mid, fields in part]
        if len(shards) > 1:
            rows.sort(key=lambda row: _mid(row[0]), reverse=True)
        return rows[:count]

    def dlq_page(self, limit: int = 50, before: str | None = None) -> list[DLQEntry]:
        """Up to ``limit`` entries, newest first, older than message id ``before``."""
        rows = self._dlq_rows(before, limit)
        records = self._task_records([(f.get("task_id", ""), k) for _, f, k in rows])
        return [_entry(mid, fields, raw, keys.queue)
                for (mid, fields, keys), raw in zip(rows, records, strict=True)]

    def dlq_entry(self, task_id: str) -> DLQEntry | None:
        """The entry of one dead-lettered task by its id, or None: two reads, no scan."""
        keys = self.broker.locate(task_id)
        if keys is None:
            return None
        with redis_errors():
            raw = self.client.hgetall(keys.task(task_id))
            mid = raw.get("dlq_id")
            if raw.get("state") != "dead_letter" or not mid:
                return None
            rows = self.client.xrange(keys.dlq, min=mid, max=mid, count=1)
        return _entry(rows[0][0], rows[0][1], raw, keys.queue) if rows else None

    def dlq_find(self, limit: int = 50, before: str | None = None,
                 match: Callable[[dict[str, str]], bool] | None = None,
                 scan_limit: int = 10_000) -> DLQMatches:
        """Up to ``limit`` entries whose stream fields (``task_id type priority reason error
        attempts``) satisfy ``match``, newest first, older than message id ``before``.

        Without ``match`` this reads ``limit + 1`` stream entries (per shard) and ``limit``
        task records.  With it, the streams are read in chunks of DLQ_BATCH until the page
        is full, they end or ``scan_limit`` entries were read: the cost grows with the
        entries scanned.
        """
        chunk = max(limit + 1, DLQ_BATCH) if match else limit + 1
        found: list[tuple[str, dict[str, str], Keys]] = []
        scanned, cursor, more = 0, before, True
        while more and len(found) < limit:
            rows = self._dlq_rows(cursor, chunk)
            for i, (mid, fields, keys) in enumerate(rows):
                scanned, cursor = scanned + 1, mid
                if match is None or match(fields):
                    found.append((mid, fields, keys))
                if len(found) == limit:
                    more = i + 1 < len(rows) or len(rows) == chunk
                    break
            else:
                more = len(rows) == chunk
                if scanned >= scan_limit:
                    break
        records = self._task_records([(f.get("task_id", ""), k) for _, f, k in found])
        entries = [_entry(m, f, r, k.queue) for (m, f, k), r in zip(found, records, strict=True)]
        truncated = more and len(found) < limit
        return DLQMatches(entries, cursor if more else None, scanned, truncated)

    def _task_records(self, wanted: list[tuple[str, Keys]]) -> list[dict[str, str]]:
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for task_id, keys in wanted:
                pipe.hgetall(keys.task(task_id))
            return list(pipe.execute())

    def _by_shard(self, task_ids: list[str]) -> dict[str, list[str]]:
        """The given task ids grouped by the shard holding them (unknown ids: the home
        shard, whose scripts report them as not found), in one round trip."""
        shards = self._shards()
        if len(shards) == 1:
            return {"": list(task_ids)}
        def build(pipe: Any, keys: Keys) -> None:
            for task_id in task_ids:
                pipe.exists(keys.task(task_id))

        found = self._fan(shards, build)
        out: dict[str, list[str]] = {}
        for i, task_id in enumerate(task_ids):
            hits = [k for k, keys in enumerate(shards) if found[k * len(task_ids) + i]]
            keys = shards[hits[0]] if hits else self.keys
            out.setdefault(keys.ref, []).append(task_id)
        return out

    def dlq_retry(self, task_id: str) -> None:
        """Re-queue one dead-lettered task; raises :class:`NotInDeadLetterQueue`."""
        keys = self.broker.locate(task_id) or self.keys
        n = self.broker.run_script("dlq_retry", keys.dlq, ["ids", task_id])[0]
        if int(n) != 1:
            raise errors.NotInDeadLetterQueue(task_id)

    def dlq_retry_many(self, task_ids: list[str]) -> int:
        """Re-queue the given dead-lettered tasks; return how many were."""
        return self._per_shard("dlq_retry", task_ids)

    def dlq_retry_all(self, progress: Progress | None = None) -> int:
        """Re-queue every dead-lettered task, in batches; return how many were."""
        return self._drain("dlq_retry", progress)

    def dlq_delete(self, task_ids: list[str]) -> int:
        """Delete the given entries and their task records; return how many were."""
        return self._per_shard("dlq_delete", task_ids)

    def _per_shard(self, script: str, task_ids: list[str]) -> int:
        if not task_ids:
            return 0
        total = 0
        for ref, ids in self._by_shard(task_ids).items():
            total += int(self.broker.run_script(script, self.broker.shard(ref).dlq,
                                                ["ids", *ids])[0])
        return total

    def dlq_clear(self, progress: Progress | None = None) -> int:
        """Delete every entry and its task record, in batches."""
        return self._drain("dlq_delete", progress)

    def _drain(self, script: str, progress: Progress | None = None) -> int:
        """Apply a DLQ script to every entry present now, in batches, shard by shard
        (entries added meanwhile, such as tasks that die again at once, are left for the
        next call); ``progress`` is called with the running total after each batch."""
        total = 0
        for keys in self._shards():
            with redis_errors():
                newest = self.client.xrevrange(keys.dlq, count=1)
            if not newest:
                continue
            while True:
                n, _, scanned = self.broker.run_script(script, keys.dlq,
                                                       ["all", DLQ_BATCH, newest[0][0]])
                total += int(n)
                if progress is not None:
                    progress(total)
                if int(scanned) < DLQ_BATCH:
                    break
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


def _entry(message_id: str, fields: dict[str, str], raw: dict[str, str],
           queue: str = DEFAULT_QUEUE) -> DLQEntry:
    return DLQEntry(
        message_id=message_id,
        task_id=fields.get("task_id", ""),
        reason=fields.get("reason", ""),
        error=fields.get("error", ""),
        added_at=int(message_id.split("-")[0]),
        task=Task.from_hash(raw, queue) if raw else None,
        type=fields.get("type", ""),
        priority=int(fields["priority"]) if fields.get("priority") else None,
        attempts=int(fields["attempts"]) if fields.get("attempts") else None,
    )


def count_pending(pipe: Any, keys: Keys, priority: int) -> None:
    """Queue the two counts whose sum is a shard's pending depth of a priority: its pending
    set and its parked tasks (pending too, set aside by a per-type limit: see limits.py)."""
    band = pending_band(priority)
    pipe.zcount(keys.pending, *band)
    pipe.zcount(keys.parked_all, *band)
