"""Task handlers for the fault scripts, with a ledger kept outside the queue.

Every attempt appends ``S`` when the handler starts and ``F`` when it returns
(before the worker acks), one line each, to ``$RELIABILITY_LEDGER/<pid>.log``
opened with ``O_APPEND``.  The ledger lives on the local disk, not in Redis, so
a Redis crash or a killed worker cannot rewrite it: losses and re-executions are
counted from it rather than guessed.

Line format: ``S|F <task id> <attempt> <pid> <supervisor pid> <unix time>``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from tasks_app.core.registry import TaskContext, handler

LEDGER_ENV = "RELIABILITY_LEDGER"
_fd: dict[int, int] = {}


def _write(kind: str, ctx: TaskContext) -> None:
    directory = os.environ.get(LEDGER_ENV)
    if not directory:
        return
    pid = os.getpid()
    fd = _fd.get(pid)
    if fd is None:  # one file per process (slots are forked: never share the parent's fd)
        fd = os.open(Path(directory) / f"{pid}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                     0o644)
        _fd.clear()
        _fd[pid] = fd
    line = f"{kind} {ctx.task_id} {ctx.attempt} {pid} {os.getppid()} {time.time():.6f}\n"
    os.write(fd, line.encode())


@handler("rel.sleep")
def rel_sleep(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleep ``payload["seconds"]``, recording start and finish in the ledger."""
    _write("S", ctx)
    time.sleep(float(payload.get("seconds", 0.1)))
    _write("F", ctx)
    return {"ok": True}


@handler("rel.poison")
def rel_poison(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Kill the process running it, every time (a segfault, an OOM kill)."""
    _write("S", ctx)
    os.kill(os.getpid(), signal.SIGKILL)


@handler("rel.poison_exit")
def rel_poison_exit(payload: dict[str, Any], ctx: TaskContext) -> None:
    """End the process running it with exit status 0, every time (a library that calls
    ``sys.exit()``, or ``os._exit(0)``)."""
    _write("S", ctx)
    os._exit(0)


@handler("rel.tick")
def rel_tick(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Do nothing (a periodic schedule's task: reliability/schedules.py counts the tasks)."""
