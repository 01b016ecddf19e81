"""What every system's no-op handler does: append (enqueued at, started at, finished at),
all from time.time() on this machine, to the file named by BENCH_RECORDS.

One fixed-width line per task (RECORD_SIZE bytes), written with one O_APPEND write, so
threads and processes can share the file and its size says how many tasks have run.
"""

from __future__ import annotations

import os
import time

RECORD_SIZE = 54
_fds: dict[int, int] = {}


def record(enqueued_at: float) -> None:
    """Record one task run; call it as the handler's first line."""
    started = time.time()
    line = f"{enqueued_at:17.6f} {started:17.6f} {time.time():17.6f}\n"
    os.write(_fd(), line.encode())


def _fd() -> int:
    pid = os.getpid()
    fd = _fds.get(pid)
    if fd is None:
        fd = os.open(os.environ["BENCH_RECORDS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        _fds[pid] = fd
    return fd


def read_records(path: str) -> list[tuple[float, float, float]]:
    """All records written so far."""
    with open(path) as handle:
        return [(float(a), float(b), float(c)) for a, b, c in map(str.split, handle)]


def count_records(path: str) -> int:
    """How many tasks have run (from the file size alone)."""
    try:
        return os.path.getsize(path) // RECORD_SIZE
    except FileNotFoundError:
        return 0
