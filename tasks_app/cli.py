"""Terminal output for ``manage.py tq``: tables and texts, ages, JSON shapes, confirmation."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from tasks_app.core.inspect import DLQEntry, QueueStats, WorkerInfo
from tasks_app.core.states import Priority
from tasks_app.display import pretty, shown

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_ABORTED = 3
DLQ_ERROR_WIDTH = 60

Row = Sequence[object]


def table(headers: Sequence[str], rows: Sequence[Row]) -> str:
    """Rows under headers, columns padded to their widest cell; numbers right-aligned."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) and not isinstance(r[i], bool)
                                  for r in rows)
               for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if num else v.ljust(w)
                  for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(padded).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


def cell(value: object) -> str:
    """A table cell: "-" for None or empty, yes/no for booleans."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def age(seconds: float | None) -> str:
    """A short human age: ``0.4s``, ``12s``, ``5m3s``, ``2h10m``, ``3d4h``."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                      ("m", 60, "s", 1)):
        if whole >= size:
            return f"{whole // size}{unit}{whole % size // sub_size}{sub}"
    return f"{whole}s"


def clip(text: str, width: int) -> str:
    """One line of at most ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def seconds_since(now_ms: int, then_ms: int | None) -> float | None:
    """Seconds from ``then_ms`` to ``now_ms``, or None."""
    return None if then_ms is None else round(max(now_ms - then_ms, 0) / 1000, 3)


def queue_dict(stats: QueueStats, oldest_us: int | None, now_ms: int) -> dict[str, Any]:
    """One priority's row for ``status --json``."""
    oldest_ms = oldest_us // 1000 if oldest_us is not None else None
    data = stats.to_dict()
    return {"priority": stats.name, "level": data["priority"], "pending": data["depth"],
            "delayed": data["scheduled"], "paused": data["paused"],
            "oldest_pending_seconds": seconds_since(now_ms, oldest_ms)}


def worker_dict(worker: WorkerInfo, now_ms: int) -> dict[str, Any]:
    """One worker's row for ``status --json``."""
    return {**worker.to_dict(), "paused": worker.state == "paused",
            "last_seen_seconds": seconds_since(now_ms, worker.last_heartbeat)}


def entry_dict(entry: DLQEntry) -> dict[str, Any]:
    """One dead-letter entry for ``dlq list/show --json`` (the API's entry, flattened)."""
    data = entry.to_dict()
    priority = entry.task_priority
    return {
        "message_id": data["message_id"],
        "task_id": data["task_id"],
        "type": data["task_type"],
        "priority": Priority(priority).label if priority is not None else None,
        "reason": data["reason"],
        "error": entry.error,
        "attempts": entry.attempts,
        "added_at": data["added_at"],
        "task": data["task"] if entry.task else None,
    }


def dumps(data: Any) -> str:
    """The one JSON document a ``--json`` run prints."""
    return json.dumps(data, indent=2, sort_keys=False)


def confirm(question: str, stdin: TextIO, prompt: Callable[[str], None]) -> bool | None:
    """Ask ``question [y/N]`` through ``prompt``; True for yes, False for anything else,
    None when stdin is not a terminal (nobody to ask)."""
    if not stdin.isatty():
        return None
    prompt(f"{question} [y/N] ")
    try:
        answer = stdin.readline()
    except KeyboardInterrupt:
        prompt("\n")
        return False
    return answer.strip().lower() in ("y", "yes")


def redact(url: str) -> str:
    """A Redis URL fit to print: any password replaced by ``***`` (also in the host lists
    of redis+sentinel:// and redis+cluster:// URLs)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, after = rest.rpartition("@")  # the last @: a password may hold / or @
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{after}"


def status_text(data: dict[str, Any]) -> str:
    """``tq status`` for a terminal."""
    queues = table(
        ["PRIORITY", "PENDING", "DELAYED", "OLDEST", "PAUSED"],
        [[q["priority"], q["pending"], q["delayed"], age(q["oldest_pending_seconds"]),
          q["paused"]] for q in data["queues"]])
    workers = table(
        ["WORKER", "HOST", "PID", "STATE", "ACTIVE", "DONE", "FAILED", "LAST SEEN"],
        [[w["id"], w["hostname"], w["pid"], w["state"],
          f"{w['active_tasks']}/{w['concurrency']}", w["processed"], w["failed"],
          age(w["last_seen_seconds"]) + " ago"] for w in data["workers"]])
    return "\n".join([
        queues,
        "(DELAYED: scheduled or retrying, waiting for their time)",
        "",
        f"running: {data['running']}    dead-letter queue: {data['dlq_size']}",
        "",
        workers if data["workers"] else "no live workers",
    ])


def queues_text(named: list[dict[str, Any]]) -> str:
    """``tq queues`` for a terminal."""
    return table(
        ["QUEUE", "SHARDS", "PENDING", "CRITICAL", "HIGH", "NORMAL", "LOW", "DELAYED", "DLQ",
         "PAUSED"],
        [[q["name"], q["shards"], q["depth"], *q["queue_depths"].values(), q["scheduled"],
          q["dlq_size"], q["paused"]] for q in named])


def dlq_text(data: dict[str, Any]) -> str:
    """``tq dlq list`` for a terminal."""
    entries = data["entries"]
    lines = [table(
        ["MESSAGE ID", "TASK ID", "TYPE", "PRIORITY", "ATTEMPTS", "ADDED", "ERROR"],
        [[e["message_id"], e["task_id"], e["type"], e["priority"], e["attempts"],
          e["added_at"], clip(e["error"], DLQ_ERROR_WIDTH)] for e in entries],
    )] if entries else ["no entries"]
    lines.append(f"{len(entries)} shown, {data['size']} in the dead-letter queue")
    if data["truncated"]:
        lines.append(f"stopped after scanning {data['scanned']} entries")
    if data["next_before"]:
        lines.append(f"next page: --before {data['next_before']}")
    return "\n".join(lines)


def show_text(data: dict[str, Any]) -> str:
    """``tq dlq show`` for a terminal."""
    task = data["task"] or {}
    rows = [
        ("task", data["task_id"]), ("type", data["type"]), ("priority", data["priority"]),
        ("state", task.get("state")), ("attempts", data["attempts"]),
        ("max retries", task.get("max_retries")), ("reason", data["reason"]),
        ("message id", data["message_id"]), ("created", task.get("created_at")),
        ("last started", task.get("started_at")), ("dead since", data["added_at"]),
        ("worker", task.get("worker_id")),
    ]
    width = max(len(k) for k, _ in rows) + 1
    lines = [f"{(k + ':').ljust(width)} {cell(v)}" for k, v in rows]
    lines += ["", "error:", shown(data["error"]), "", "payload:",
              pretty(task.get("payload", {}))]
    if task.get("metadata"):
        lines += ["", "metadata:", pretty(task["metadata"])]
    return "\n".join(lines)


def timing(data: dict[str, Any]) -> str:
    """A schedule's timing: ``every 30s`` or ``cron 0 3 * * * (Europe/Paris)``."""
    if data.get("every") is not None:
        return f"every {data['every']}s"
    return f"cron {data['cron']} ({data['timezone']})"


def schedules_text(found: list[dict[str, Any]]) -> str:
    """``tq schedules list`` for a terminal."""
    if not found:
        return "no schedules"
    rows = [[s["name"], s["queue"], s.get("task") or s.get("type"), timing(s),
             s["next_run_at"], s["last_run_at"], s["last_task_id"], s["paused"],
             clip(s["error"] or "", DLQ_ERROR_WIDTH)] for s in found]
    return "\n".join([table(["NAME", "QUEUE", "TYPE", "WHEN", "NEXT RUN", "LAST RUN",
                             "LAST TASK", "PAUSED", "ERROR"], rows),
                      f"{len(found)} schedule{'' if len(found) == 1 else 's'}"])


def limits_text(found: list[dict[str, Any]]) -> str:
    """``tq limits`` for a terminal."""
    if not found:
        return "no type limits"
    rows = [[t["type"], t["concurrency"], t["rate"], t["running"], t["parked"]] for t in found]
    return "\n".join([table(["TYPE", "CONCURRENCY", "RATE", "RUNNING", "PARKED"], rows),
                      f"{len(found)} limited type{'' if len(found) == 1 else 's'}"])


def schedule_text(data: dict[str, Any]) -> str:
    """``tq schedules show`` for a terminal."""
    what = ("task", data["task"]) if data.get("task") else ("type", data["type"])
    rows = [("name", data["name"]), what, ("queue", data["queue"]), ("when", timing(data)),
            ("catchup", data["catchup"]), ("priority", data["priority"]),
            ("max retries", data["max_retries"]), ("timeout", data["timeout"]),
            ("paused", data["paused"]), ("next run", data["next_run_at"]),
            ("last run", data["last_run_at"]), ("last tick", data["last_scheduled_for"]),
            ("last task", data["last_task_id"]), ("origin", data["origin"]),
            ("version", data["version"]), ("error", data["error"])]
    width = max(len(k) for k, _ in rows) + 1
    lines = [f"{(k + ':').ljust(width)} {cell(v)}" for k, v in rows]
    if data.get("task"):
        lines += ["", "args:", pretty(data["args"]), "", "kwargs:", pretty(data["kwargs"])]
    else:
        lines += ["", "payload:", pretty(data["payload"])]
    return "\n".join(lines)


def workflows_text(found: list[dict[str, Any]]) -> str:
    """``tq workflows list`` for a terminal."""
    if not found:
        return "no workflows"
    rows = [[w["id"], w["state"], w["queue"], w["step_count"], _step_counts(w),
             w["created_at"], w["failed_step"]] for w in found]
    return "\n".join([table(["ID", "STATE", "QUEUE", "STEPS", "STEP STATES", "CREATED",
                             "FAILED STEP"], rows),
                      f"{len(found)} workflow{'' if len(found) == 1 else 's'}"])


def _step_counts(data: dict[str, Any]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(data["step_states"].items()))


def workflow_text(data: dict[str, Any]) -> str:
    """``tq workflows show`` for a terminal: the workflow, then one row per step."""
    head = [("id", data["id"]), ("state", data["state"]), ("queue", data["queue"]),
            ("created", data["created_at"]), ("ended", data["ended_at"]),
            ("failed step", data["failed_step"]), ("steps", _step_counts(data))]
    width = max(len(k) for k, _ in head) + 1
    lines = [f"{(k + ':').ljust(width)} {cell(v)}" for k, v in head]
    rows = [[s["index"], s["task_id"], s["type"], s["state"],
             ",".join(map(str, s["after"])) or "-"] for s in data["steps"]]
    return "\n".join([*lines, "", table(["STEP", "TASK", "TYPE", "STATE", "AFTER"], rows)])
