"""The appendfsync loss window, measured: how long an acknowledged task is not yet on disk.

    .venv/bin/python reliability/fsync_window.py           # 30 s at 200 tasks/s, everysec
                                                           # then always (the control)
    .venv/bin/python reliability/fsync_window.py --quick   # 6 s at 100 tasks/s each (CI)

``redis_restarts.py`` kills the Redis *process*; that cannot lose what Redis already
handed to the kernel, so it cannot show what ``everysec`` risks: the writes not yet
fsynced when the *host* crashes.  This script measures that window instead of causing it.

A private redis-server (``EmbeddedRedis``, AOF) is traced with
``strace -f -ttt -T -y -s 4194304 -P <aof> -e trace=write,fdatasync,fsync -p <pid>``
(every thread: with ``everysec`` the fsync runs in a background thread).  One client
thread submits tasks through the core broker (``Broker.submit``, one task per call) at a
steady rate and records when each call got its reply.  Then, for every acknowledged task:

- *written*: the end of the first ``write(2)`` to the AOF whose data holds the task id;
- *durable*: the end of the first ``fdatasync``/``fsync`` of the AOF that *started* after
  that write ended (an fsync already running when the write landed may not cover it);
- *window* = max(0, durable - reply): how long it stayed acknowledged but not on disk.

Tasks whose closing fsync came after the last submission (the tail, where the load had
stopped) are counted and left out of the window figures.

Reported: the max and p99 of the window; the number of tasks a host crash would lose at
the worst instant (acknowledged, not yet durable, just before the fsync that closes the
widest window; and the most at any instant); and how many tasks were acknowledged before
their AOF write had even happened (those are exposed to a plain process kill as well).

Pass conditions are about the measurement, not about everysec: strace attaches, fsyncs
of the AOF are seen, every acknowledged task is found in an AOF write and in a later
fsync; for the control (``always``) the window is ~0 (every task durable before its
reply).  The everysec figures are reported, not judged.  Exit 2 when strace is missing or
cannot attach.  Note: ptrace slows every traced syscall (strace attached to a running
process cannot use a seccomp filter, so every syscall of Redis stops), which can stretch
the fsyncs and with them the window; the figures are for Redis under strace.
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reliability.common import Run, start_redis, table, verdict  # noqa: E402

STRACE = "/usr/bin/strace"
ALWAYS_LIMIT = 0.005  # s: the control's window must be ~0
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
START = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(write|fdatasync|fsync)\((\d+)<([^>]*)>")
RESUMED = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+<\.\.\. (write|fdatasync|fsync) resumed>")
RESULT = re.compile(r"=\s+(-?\d+)(?:\s+\w+\s+\([^)]*\))?\s+<(\d+\.\d+)>\s*$")


class MeasurementError(RuntimeError):
    """The trace could not be taken (strace missing, or it cannot attach)."""


def find_strace() -> str:
    path = STRACE if os.access(STRACE, os.X_OK) else shutil.which("strace")
    if not path:
        raise MeasurementError("strace is not installed (Debian: apt-get install strace); "
                               "it is needed to see Redis's fsync calls")
    return path


@dataclass
class Trace:
    """AOF writes (end time, task ids in the data) and fsyncs (start, end), from strace."""

    writes: list[tuple[float, set[str]]] = field(default_factory=list)
    fsyncs: list[tuple[float, float]] = field(default_factory=list)
    failed_calls: int = 0
    truncated_writes: int = 0

    @classmethod
    def parse(cls, text: str) -> Trace:
        trace = cls()
        pending: dict[str, tuple[str, float, str]] = {}  # thread -> (call, start, data)

        def done(call: str, start: float, data: str, rest: str) -> None:
            result = RESULT.search(rest)
            if result is None:
                return
            ret, duration = int(result.group(1)), float(result.group(2))
            if ret < 0:
                trace.failed_calls += 1
                return
            if call == "write":
                if '"...' in data:
                    trace.truncated_writes += 1
                trace.writes.append((start + duration, set(UUID.findall(data))))
            else:
                trace.fsyncs.append((start, start + duration))

        for line in text.splitlines():
            m = START.match(line)
            if m:
                thread, at, call, path = m.group(1), float(m.group(2)), m.group(3), m.group(5)
                if "appendonly" not in path:
                    continue
                if line.rstrip().endswith("<unfinished ...>"):
                    pending[thread] = (call, at, line)
                else:
                    done(call, at, line, line)
                continue
            m = RESUMED.match(line)
            if m and m.group(1) in pending:
                call, at, data = pending.pop(m.group(1))
                done(call, at, data, line)
        trace.writes.sort()
        trace.fsyncs.sort()
        return trace


class Strace:
    """strace attached to every thread of a running process, writing to a file."""

    def __init__(self, binary: str, pid: int, aof: Path, out: Path) -> None:
        self.out = out
        self.err = out.with_suffix(".stderr")
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [binary, "-f", "-ttt", "-T", "-y", "-s", "4194304", "-P", str(aof),
                 "-e", "trace=write,fdatasync,fsync", "-o", str(out), "-p", str(pid)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = self.err.read_text(errors="replace")
            if "attached" in text:
                time.sleep(0.3)
                return
            if self.proc.poll() is not None:
                raise MeasurementError(f"strace could not attach to redis-server {pid}: "
                                       f"{text.strip()}")
            time.sleep(0.05)
        self.stop()
        raise MeasurementError(f"strace did not attach within 10 s: "
                               f"{self.err.read_text(errors='replace').strip()}")

    def stop(self) -> str:
        """Detach (SIGINT) and return the trace."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.out.read_text(errors="replace") if self.out.exists() else ""


def submit_load(redis_url: str, rate: float, seconds: float
                ) -> list[tuple[str, float, float]]:
    """Submit one task per call at ``rate`` per second: (task id, sent, replied)."""
    from tasks_app.core.broker import Broker, new_task_id
    from tasks_app.core.config import Config
    from tasks_app.core.task import TaskSpec

    broker = Broker.from_config(Config(redis_url=redis_url, namespace="fsyncwindow"))
    acked: list[tuple[str, float, float]] = []
    try:
        broker.ping()
        start = time.monotonic()
        total = int(rate * seconds)
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            tid = new_task_id()
            sent = time.time()
            broker.submit([TaskSpec(id=tid, type="rel.sleep", payload={"seconds": 0})])
            acked.append((tid, sent, time.time()))
    finally:
        broker.close()
    return acked


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def appended_file(data_dir: Path) -> Path:
    """The file Redis appends to now: ``appendonly.aof`` (Redis 6), or the newest
    ``*.incr.aof`` of the multi-part AOF in ``appendonlydir/`` (Redis 7+, Valkey)."""
    single = data_dir / "appendonly.aof"
    if single.is_file():
        return single
    parts = sorted((data_dir / "appendonlydir").glob("*.incr.aof"),
                   key=lambda p: int(p.name.rsplit(".", 3)[-3]))
    if not parts:
        raise SystemExit(f"no append-only file in {data_dir}")
    return parts[-1]


def scenario(mode: str, rate: float, seconds: float, strace: str
             ) -> tuple[list[tuple[str, object, str]], list[tuple[str, bool]]]:
    run = Run(f"fsync-{mode}")
    server = start_redis(run, appendfsync=mode)
    with server.client() as probe:
        pid = int(probe.info("server")["process_id"])
    aof = appended_file(server.data_dir)
    print(f"\nappendfsync {mode}: {rate:g} tasks/s for {seconds:g} s, redis pid {pid}, "
          f"dir {run.dir}", flush=True)
    result: list[tuple[str, float, float]] = []
    try:
        tracer = Strace(strace, pid, aof, run.dir / "strace.txt")
        try:
            loader = threading.Thread(
                target=lambda: result.extend(submit_load(server.url, rate, seconds)))
            loader.start()
            loader.join()
            time.sleep(2.5)  # let everysec fsync the tail: every task gets a closing fsync
        finally:
            text = tracer.stop()
    finally:
        server.stop()
    trace = Trace.parse(text)
    written: dict[str, float] = {}
    for end, ids in trace.writes:
        for tid in ids:
            written.setdefault(tid, end)
    starts = [s for s, _ in trace.fsyncs]
    first_end = [e for _s, e in trace.fsyncs]  # suffix minimum: first to finish from i on
    for i in range(len(first_end) - 2, -1, -1):
        first_end[i] = min(first_end[i], first_end[i + 1])
    durable: list[tuple[float, float]] = []  # (reply, durable) of tasks fully traced
    unwritten = unsynced = before_write = 0
    before_write_max = 0.0
    for tid, _sent, reply in result:
        if tid not in written:
            unwritten += 1
            continue
        w = written[tid]
        if w > reply:
            before_write += 1
            before_write_max = max(before_write_max, w - reply)
        i = bisect.bisect_left(starts, w)
        if i == len(starts):
            unsynced += 1
            continue
        durable.append((reply, first_end[i]))
    replies = sorted(r for r, _ in durable)
    # Steady state only: a task whose closing fsync came after the last submission sat in
    # the tail, where no later load arrived; its window and the crash counts there would
    # reflect the load stopping, not the policy.
    load_end = replies[-1] if replies else 0.0
    tail = sum(1 for _r, d in durable if d > load_end)
    durable = [(r, d) for r, d in durable if d <= load_end]
    windows = [max(0.0, d - r) for r, d in durable]
    open_r = sorted(r for r, d in durable if d > r)  # tasks with a window > 0
    open_d = sorted(d for r, d in durable if d > r)

    def exposed(t: float) -> int:  # acknowledged before t, durable only at t or later
        return bisect.bisect_left(open_r, t) - bisect.bisect_left(open_d, t)

    worst_at = max(durable, key=lambda rd: rd[1] - rd[0])[1] if durable else 0.0
    at_worst = exposed(worst_at) if durable else 0
    most = max((exposed(end) for _s, end in trace.fsyncs if end <= load_end), default=0)
    span = (replies[-1] - replies[0]) if len(replies) > 1 else 0.0
    gaps = [b[1] - a[1] for a, b in zip(trace.fsyncs, trace.fsyncs[1:], strict=False)]
    fs_dur = [e - s for s, e in trace.fsyncs]
    p = f"[{mode}]"
    rows: list[tuple[str, object, str]] = [
        (f"{p} tasks acknowledged (rate achieved /s)",
         f"{len(result)} ({len(result) / span:.0f})" if span else len(result), ""),
        (f"{p} AOF writes / fsyncs traced", f"{len(trace.writes)} / {len(trace.fsyncs)}", ""),
        (f"{p} fsync duration max / between fsync ends max (s)",
         f"{max(fs_dur, default=0):.4f} / {max(gaps, default=0):.3f}", ""),
        (f"{p} tasks not found in an AOF write / in no later fsync",
         f"{unwritten} / {unsynced}", "0 / 0"),
        (f"{p} tasks in the tail after the load (left out below)", tail, ""),
        (f"{p} ack -> durable window max (s)", f"{max(windows, default=0):.4f}",
         f"<= {ALWAYS_LIMIT:g}" if mode == "always" else "reported"),
        (f"{p} ack -> durable window p99 / p50 (s)",
         f"{percentile(windows, 0.99):.4f} / {percentile(windows, 0.5):.4f}"
         if windows else "-", ""),
        (f"{p} tasks durable before their reply", sum(1 for w in windows if w == 0.0),
         "== acknowledged" if mode == "always" else ""),
        (f"{p} host crash at the worst instant: tasks lost", at_worst,
         "== 0" if mode == "always" else "reported"),
        (f"{p} most tasks acked-not-durable at any instant", most, ""),
        (f"{p} tasks acked before their AOF write (max lead, s)",
         f"{before_write} ({before_write_max:.4f})", "== 0" if mode == "always" else ""),
    ]
    checks = [
        (f"{p} strace saw fsyncs of the AOF", len(trace.fsyncs) > 0),
        (f"{p} tasks were acknowledged", len(result) > 0),
        (f"{p} every acknowledged task found in an AOF write and a later fsync",
         unwritten == 0 and unsynced == 0),
        (f"{p} no failed AOF write/fsync, no truncated write in the trace",
         trace.failed_calls == 0 and trace.truncated_writes == 0),
    ]
    if mode == "always":
        checks.append((f"{p} control: window <= {ALWAYS_LIMIT:g} s for every task",
                       bool(windows) and max(windows) <= ALWAYS_LIMIT))
    return rows, checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CI form")
    parser.add_argument("--rate", type=float, default=None, help="tasks per second")
    parser.add_argument("--seconds", type=float, default=None, help="load per policy")
    args = parser.parse_args()
    rate = args.rate or (100.0 if args.quick else 200.0)
    seconds = args.seconds or (6.0 if args.quick else 30.0)
    try:
        strace = find_strace()
        rows: list[tuple[str, object, str]] = []
        checks: list[tuple[str, bool]] = []
        for mode in ("everysec", "always"):
            r, c = scenario(mode, rate, seconds, strace)
            rows += r
            checks += c
    except MeasurementError as exc:
        print(f"fsync_window: cannot measure: {exc}", file=sys.stderr)
        return 2
    table(f"appendfsync loss window ({'quick' if args.quick else 'full'})", rows)
    return verdict(checks)


if __name__ == "__main__":
    sys.exit(main())
