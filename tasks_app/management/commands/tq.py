"""``python manage.py tq``: enqueue, inspect and administer tasks from a shell."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks_app import producer
from tasks_app.core.errors import TaskQueueError
from tasks_app.core.states import TERMINAL, TaskState

WAITABLE = TERMINAL | {TaskState.DEAD_LETTER}


class Command(BaseCommand):
    help = "Enqueue, show, cancel tasks; show queues and workers; retry or clear the DLQ."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        enqueue = sub.add_parser("enqueue", help="create a task and print it")
        enqueue.add_argument("type")
        enqueue.add_argument("payload", nargs="?", default="{}", help="JSON object")
        enqueue.add_argument("--priority", default=None)
        enqueue.add_argument("--max-retries", type=int, default=None)
        enqueue.add_argument("--timeout", type=int, default=None)
        enqueue.add_argument("--delay", type=float, default=None)
        enqueue.add_argument("--wait", action="store_true",
                             help="wait until the task finishes and print it again")
        for name in ("get", "cancel"):
            sub.add_parser(name, help=f"{name} a task").add_argument("id")
        sub.add_parser("stats", help="queue depths and workers")
        sub.add_parser("dlq", help="list the dead-letter queue")
        sub.add_parser("dlq-retry", help="re-queue every dead-lettered task")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            getattr(self, "do_" + opts["action"].replace("-", "_"))(opts)
        except TaskQueueError as exc:
            raise CommandError(f"{exc.__class__.__name__}: {exc}") from None

    def emit(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2))

    def do_enqueue(self, opts: dict[str, Any]) -> None:
        try:
            payload = json.loads(opts["payload"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"payload is not JSON: {exc}") from None
        options = {k: opts[k] for k in ("priority", "max_retries", "timeout", "delay")
                   if opts[k] is not None}
        if "priority" in options and str(options["priority"]).isdigit():
            options["priority"] = int(options["priority"])
        task = producer.enqueue(opts["type"], payload, **options)
        self.emit(task.to_dict())
        if opts["wait"]:
            while task.state not in WAITABLE:
                time.sleep(0.05)
                task = producer.get(task.id)
            self.emit(task.to_dict())

    def do_get(self, opts: dict[str, Any]) -> None:
        self.emit(producer.get(opts["id"]).to_dict())

    def do_cancel(self, opts: dict[str, Any]) -> None:
        self.emit(producer.cancel(opts["id"]).to_dict())

    def do_stats(self, opts: dict[str, Any]) -> None:
        inspector = producer.inspector()
        queues = {s.name: {"depth": s.depth, "scheduled": s.scheduled, "paused": s.paused}
                  for s in inspector.queue_stats()}
        workers = [w.to_dict() for w in inspector.workers()]
        self.emit({"queues": queues, "running": inspector.running_count(),
                   "dlq_size": inspector.dlq_size(), "workers": workers})

    def do_dlq(self, opts: dict[str, Any]) -> None:
        entries = producer.inspector().dlq_page(limit=100)
        self.emit([{"message_id": e.message_id, "task_id": e.task_id, "reason": e.reason,
                    "error": e.error} for e in entries])

    def do_dlq_retry(self, opts: dict[str, Any]) -> None:
        self.emit({"retried_count": producer.inspector().dlq_retry_all()})
