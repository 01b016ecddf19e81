"""``python manage.py runworker_tq``: run a taskqueue worker."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    SystemCheckError,
)
from django.db import connections

from tasks_app.conf import tq_settings
from tasks_app.core.broker import Broker, Outcome
from tasks_app.core.errors import BrokerUnavailable
from tasks_app.core.queues import Serving
from tasks_app.core.registry import registry
from tasks_app.core.states import Priority, TaskState
from tasks_app.core.task import Job
from tasks_app.discovery import django_tasks_configured
from workers_app.events import EventsHook
from workers_app.logging import configure
from workers_app.runtime.executor import Report
from workers_app.runtime.hooks import Hook
from workers_app.runtime.worker import Worker, WorkerOptions


class CloseDatabaseConnections(Hook):
    """A forked slot must not share the supervisor's database connections."""

    def slot_started(self, worker_id: str, index: int) -> None:
        for conn in connections.all(initialized_only=True):
            conn.inc_thread_sharing()
            conn.close()
            conn.dec_thread_sharing()


class DjangoTaskSignals(Hook):
    """Django's task_finished for an attempt that ended the task without the function
    returning or raising: stopped at its time limit (in the slot), or a dead slot or
    vanished worker (in a supervisor).  The function's own return or exception is
    announced by the Django task runner itself (tasks_app.tasks_framework.runner).  Task
    records are read through the worker's own broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def task_finished(self, worker_id: str, job: Job, report: Report, outcome: Outcome) -> None:
        if report.interrupted:
            self._announce(job.id, job.type, outcome)

    def attempt_lost(self, task_id: str, error: str, outcome: Outcome) -> None:
        self._announce(task_id, outcome.type, outcome)

    def _announce(self, task_id: str, type_name: str, outcome: Outcome) -> None:
        if outcome.state in (TaskState.FAILED, TaskState.DEAD_LETTER):
            from tasks_app.tasks_framework.runner import announce_lost_attempt

            announce_lost_attempt(self.broker, task_id, type_name)


def _check_in_child(run: Any, write_fd: int, streams: tuple[Any, ...]) -> None:
    """The forked checker: run the checks, report 'ok', 'error' and its message, or
    'raised' on the pipe, and end without running any exit handler."""
    try:
        run()
        reply = "ok\n"
    except SystemCheckError as exc:
        reply = f"error\n{exc}"
    except BaseException:  # noqa: BLE001  (the parent reruns them to show it)
        reply = "raised\n"
    try:
        for stream in (*streams, sys.stdout, sys.stderr):
            stream.flush()
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(reply.encode(errors="replace"))
    finally:
        os._exit(0)


def parse_priorities(text: str) -> list[int]:
    """'high,critical' or '2,3' -> [2, 3]."""
    try:
        items = [Priority.parse(int(p) if p.strip().isdigit() else p.strip())
                 for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise CommandError(f"--priorities: {exc}") from None
    if not items:
        raise CommandError("--priorities: give at least one priority")
    return sorted({int(p) for p in items})


def parse_queues(text: str, broker: Broker) -> Serving:
    """``--queues``, every name known: configured in TASKQUEUE["QUEUES"] or used before."""
    try:
        serving = Serving.parse(text)
    except ValueError as exc:
        raise CommandError(f"--queues: {exc}") from None
    try:
        known = broker.queues(fresh=True)
    except BrokerUnavailable:
        return serving  # the worker waits for Redis as usual; names are checked by use
    unknown = [name for name in serving.names if name not in known]
    if unknown:
        raise CommandError(
            f"--queues: unknown queue {unknown[0]!r} (known: {', '.join(sorted(known))}); "
            'declare it in TASKQUEUE["QUEUES"] or enqueue a task to it first')
    return serving


class Command(BaseCommand):
    help = "Run a taskqueue worker: slot processes that take and run tasks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--concurrency", "-c", type=int, default=None,
                            help="slot processes (default: TASKQUEUE CONCURRENCY or CPU count)")
        parser.add_argument("--priorities", default="low,normal,high,critical",
                            help="comma-separated priorities to serve (names or 0-3)")
        parser.add_argument("--queues", "-Q", default=None,
                            help="queues to serve: 'emails,default' (strict order) or "
                                 "'emails:3,default:1' (weights); default: every queue")
        parser.add_argument("--worker-id", default=None, help="id in the registry")
        parser.add_argument("--burst", action="store_true",
                            help="exit once no pending task is left")
        parser.add_argument("--max-tasks", type=int, default=None,
                            help="exit after running this many tasks")
        parser.add_argument("--grace", type=float, default=None,
                            help="seconds running tasks get to finish on shutdown")
        parser.add_argument("--log-level", default="info",
                            choices=["debug", "info", "warning", "error"])
        parser.add_argument("--log-format", default="text", choices=["text", "json"])

    def check(self, *args: Any, **kwargs: Any) -> None:
        """Run the system checks in a short-lived forked process: they import the URL conf,
        the admin and the REST stack, which would otherwise stay in the worker's memory and
        in every slot's.  Same messages and the same refusal to start as in-process."""
        if not hasattr(os, "fork"):
            super().check(*args, **kwargs)
            return
        for stream in (self.stdout, self.stderr, sys.stdout, sys.stderr):
            stream.flush()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _check_in_child(lambda: super(Command, self).check(*args, **kwargs), write_fd,
                            (self.stdout, self.stderr))
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            reply = pipe.read().decode(errors="replace")
        os.waitpid(pid, 0)
        verdict, _, message = reply.partition("\n")
        if verdict == "error":
            raise SystemCheckError(message)
        if verdict != "ok":  # the checks themselves raised: let it surface here, as before
            super().check(*args, **kwargs)

    def handle(self, *args: Any, **opts: Any) -> None:
        for name in ("concurrency", "max_tasks"):
            if opts[name] is not None and opts[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        configure(opts["log_level"], opts["log_format"])
        if not registry.names() and not django_tasks_configured():
            self.stderr.write("warning: no task handlers are registered")
        options = WorkerOptions(
            concurrency=opts["concurrency"],
            priorities=parse_priorities(opts["priorities"]),
            worker_id=opts["worker_id"],
            burst=opts["burst"],
            max_tasks=opts["max_tasks"],
            shutdown_grace=opts["grace"],
        )
        config = tq_settings.core_config()
        broker = Broker.from_config(config)
        if opts["queues"] is not None:
            options.queues = parse_queues(opts["queues"], broker)
        hooks: list[Hook] = [CloseDatabaseConnections()]
        if tq_settings.EVENTS_ENABLED:
            hooks.append(EventsHook())
        if django_tasks_configured():
            hooks.append(DjangoTaskSignals(broker))
        worker = Worker(config, options, registry, hooks=hooks, broker=broker)
        code = worker.run()
        sys.stdout.flush()
        if code:
            sys.exit(code)
