"""Helpers shared by the fault scripts: private Redis, worker and web processes, the ledger,
the completion events, and the figures table."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RUN = ROOT / "reliability" / "run.py"


def fast_env(lease: float, heartbeat: float, recovery: float, grace: float = 5.0
             ) -> dict[str, str]:
    """Worker settings: short leases so recovery happens within the run."""
    return {
        "TASKQUEUE_LEASE_SECONDS": str(lease),
        "TASKQUEUE_HEARTBEAT_INTERVAL": str(heartbeat),
        "TASKQUEUE_HEARTBEAT_TIMEOUT": str(max(lease, 3 * heartbeat)),
        "TASKQUEUE_RECOVERY_INTERVAL": str(recovery),
        "TASKQUEUE_RETRY_BACKOFF_BASE": "0.05",
        "TASKQUEUE_RETRY_BACKOFF_MAX": "0.5",
        "TASKQUEUE_SHUTDOWN_GRACE": str(grace),
        "TASKQUEUE_DEMO_HANDLERS": "1",
        "DJANGO_SETTINGS_MODULE": "taskqueue_project.settings",
        "PYTHONUNBUFFERED": "1",
    }


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc), sorted."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return sorted(found)


class Run:
    """A scratch directory with the Redis data, the ledger and every process's log."""

    def __init__(self, name: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"tq-{name}-"))
        self.ledger = self.dir / "ledger"
        self.ledger.mkdir()
        self.logs = self.dir / "logs"
        self.logs.mkdir()


def start_redis(run: Run, appendfsync: str = "everysec", port: int | None = None) -> Any:
    """A private redis-server with AOF; sets REDIS_URL for this process and its children
    (Django reads it once, so a second server in one process must reuse the port)."""
    from tasks_app.devserver.redis import EmbeddedRedis

    server = EmbeddedRedis(run.dir / "redis", port=port, persistence=True,
                           appendfsync=appendfsync)
    server.start()
    os.environ["REDIS_URL"] = server.url
    return server


def setup_django(env: dict[str, str]) -> None:
    """Django in this process, with the same TASKQUEUE settings as the workers."""
    os.environ.update(env)
    import django

    import reliability.handlers  # noqa: F401

    django.setup()


class Proc:
    """A worker (``runworker_tq``) or web (daphne) process in its own session."""

    def __init__(self, run: Run, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.worker_id = name
        self.log_path = run.logs / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(RUN), *args], cwd=ROOT,
                env={**os.environ, **env, "RELIABILITY_LEDGER": str(run.ledger)},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.started = time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def slot_pids(self) -> list[int]:
        """Live child processes (the slots of a worker)."""
        return children_of(self.pid)

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def kill_all(self) -> None:
        """SIGKILL the whole session (supervisor and any slot left behind) and reap."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then kill what is left; the exit code."""
        self.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        self.kill_all()
        return self.proc.returncode


def start_worker(run: Run, env: dict[str, str], concurrency: int, name: str,
                 worker_id: str | None = None) -> Proc:
    """``runworker_tq`` with the reliability handlers; a fresh worker id unless given one."""
    worker_id = worker_id or f"{name}-{uuid.uuid4().hex[:6]}"
    proc = Proc(run, f"{worker_id}-{time.time():.3f}",
                ["manage", "runworker_tq", "--worker-id", worker_id,
                 "--concurrency", str(concurrency), "--log-level", "warning"], env)
    proc.worker_id = worker_id
    return proc


def wait_slots(worker: Proc, concurrency: int, timeout: float = 30.0) -> None:
    """Wait until a worker has forked all its slots."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.alive:
            raise RuntimeError(f"worker exited: {worker.log_path.read_text()[-2000:]}")
        if len(worker.slot_pids()) >= concurrency:
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker did not start its slots: {worker.log_path.read_text()[-2000:]}")


# -- the ledger ----------------------------------------------------------------------


@dataclass
class Attempt:
    """One execution of a handler as the ledger saw it."""

    task_id: str
    attempt: int
    pid: int
    ppid: int
    started: float
    finished: float | None = None


@dataclass
class Ledger:
    """Every attempt, by task."""

    attempts: dict[str, list[Attempt]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def read(cls, directory: Path) -> Ledger:
        ledger = cls()
        open_: dict[tuple[str, int, int], Attempt] = {}
        for path in sorted(directory.glob("*.log")):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) != 6:
                    continue  # a line cut by SIGKILL mid-write (none seen so far)
                kind, tid, attempt, pid, ppid, at = parts
                key = (tid, int(attempt), int(pid))
                if kind == "S":
                    rec = Attempt(tid, int(attempt), int(pid), int(ppid), float(at))
                    ledger.attempts[tid].append(rec)
                    open_[key] = rec
                elif kind == "F" and key in open_:
                    open_[key].finished = float(at)
        for records in ledger.attempts.values():
            records.sort(key=lambda a: a.started)
        return ledger

    def finishes(self, task_id: str) -> int:
        return sum(1 for a in self.attempts.get(task_id, []) if a.finished is not None)


# -- completion events -----------------------------------------------------------------


class CompletionEvents:
    """Counts ``task.completed`` events per task: one is published by ``ack`` in the same
    atomic step as each accepted completion, so two events for a task = completed twice."""

    def __init__(self, redis_url: str) -> None:
        import redis

        from tasks_app.live.groups import group_channel

        self.completed: Counter[str] = Counter()
        self.dead: Counter[str] = Counter()
        self.first_completion_after: list[float] = []
        self.last_completion = 0.0
        self._client = redis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(group_channel())
        self._stop = threading.Event()
        self.disconnected = 0
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.2)
            except Exception:  # noqa: BLE001  (Redis away: resubscribe when it is back)
                self.disconnected += 1
                time.sleep(0.2)
                continue
            if not message:
                continue
            data = message["data"]
            text = data.decode() if isinstance(data, bytes) else str(data)
            try:
                body = json.loads(text[text.index("{"):])
            except ValueError:
                continue
            # The scripts publish compact rows ("events.compact"), worker supervisors
            # full events ("events.batch"): the web process's own decoding reads both.
            from tasks_app.core.events import expand

            batch = expand(body) if body.get("type") == "events.compact" else body.get(
                "events", [body])
            for ev in batch:
                kind = ev.get("type")
                if kind == "task.completed":
                    self.completed[ev["data"]["task_id"]] += 1
                    self.last_completion = time.time()
                elif kind == "task.dead_lettered":
                    self.dead[ev["data"]["task_id"]] += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(Exception):
            self._pubsub.close()


# -- queue state -------------------------------------------------------------------------


def task_fields(ids: list[str], *names: str, queues: Mapping[str, str] | None = None
                ) -> dict[str, list[Any]]:
    """Selected fields of many task hashes (None for a task that does not exist); with
    ``queues`` (task id -> queue name) each is read in its queue's keys."""
    from tasks_app.connection import get_broker

    broker = get_broker()
    out: dict[str, list[Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        pipe = broker.client.pipeline(transaction=False)
        for tid in chunk:
            keys = broker.keys.of(queues[tid]) if queues else broker.keys
            pipe.hmget(keys.task(tid), *names)
        for tid, values in zip(chunk, pipe.execute(), strict=True):
            out[tid] = [v.decode() if isinstance(v, bytes) else v for v in values]
    return out


def state_counts(ids: list[str]) -> Counter[str]:
    return Counter(str(v[0]) for v in task_fields(ids, "state").values())


def completed_success_counter() -> int:
    """The cluster-wide completion counter (status success) from the metrics hash."""
    from tasks_app.connection import get_broker
    from tasks_app.core import metrics

    broker = get_broker()
    snap = metrics.parse(broker.client.hgetall(broker.keys.metrics))
    return sum(v for (_t, status), v in snap.counters["completed"].items() if status == "success")


def wait_until(predicate: Any, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# -- output --------------------------------------------------------------------------------


def table(title: str, rows: list[tuple[str, Any, str]]) -> None:
    """Print figures as a table: (figure, value, pass condition or '')."""
    print(f"\n{title}")
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(str(r[1])) for r in rows)
    print(f"| {'figure':<{w1}} | {'value':>{w2}} | condition")
    print(f"|{'-' * (w1 + 2)}|{'-' * (w2 + 2)}|----------")
    for name, value, cond in rows:
        print(f"| {name:<{w1}} | {value!s:>{w2}} | {cond}")


def verdict(checks: list[tuple[str, bool]]) -> int:
    """Print each pass condition; 0 when all hold."""
    print()
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    failed = [n for n, ok in checks if not ok]
    print("\nRESULT:", "PASS" if not failed else f"FAIL ({len(failed)} condition(s))")
    return 0 if not failed else 1
