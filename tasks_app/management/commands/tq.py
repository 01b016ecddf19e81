"""``python manage.py tq``: the operator CLI.

Exit codes: 0 success, 1 operation error (unknown id, Redis unavailable, ...), 2 usage
error, 3 not confirmed (answered no, or no terminal to ask and no ``--yes``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks_app import cli, producer
from tasks_app.conf import tq_settings
from tasks_app.core import errors
from tasks_app.core.inspect import Inspector, Progress
from tasks_app.core.keys import valid_queue_name
from tasks_app.core.limits import check_type, parse_limit
from tasks_app.core.nesting import BODY_ENVELOPE_DEPTH, text_depth, too_deep_message
from tasks_app.core.states import TERMINAL, Priority, TaskState

WAITABLE = TERMINAL | {TaskState.DEAD_LETTER}
MESSAGE_ID = re.compile(r"\d+(-\d+)?")


def priority_arg(value: str) -> int:
    """argparse type: 0..3 or low/normal/high/critical."""
    try:
        return int(Priority.parse(int(value) if value.isdigit() else value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def queue_arg(value: str) -> str:
    """argparse type: a queue name."""
    if not valid_queue_name(value):
        raise argparse.ArgumentTypeError(
            f"invalid queue name {value!r} (1-64 of A-Z a-z 0-9 _ . -, starting with a letter "
            "or digit)")
    return value


class Aborted(Exception):
    """The operator did not confirm; nothing was changed."""


class Command(BaseCommand):
    help = ("Operate the queue: status; named queues; the dead-letter queue; pause, resume and "
            "purge; enqueue, get and cancel tasks. Exit codes: 0 ok, 1 error, 2 usage, "
            "3 not confirmed.")
    stealth_options = ("stdin",)
    # An operator's tool: it must work (and print only its own output) on a site whose
    # checks complain, e.g. about the channel layer; `manage.py check` reports those.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")
        self.add_status(sub)
        self.add_queues(sub)
        self.add_dlq(sub)
        self.add_control(sub)
        self.add_purge(sub)
        self.add_tasks(sub)
        self.add_schedules(sub)
        self.add_workflows(sub)
        self.add_limits(sub)

    @staticmethod
    def json_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true",
                            help="print one JSON document on stdout instead of text")

    @staticmethod
    def yes_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--yes", "-y", "--no-input", "--noinput", dest="yes",
                            action="store_true", help="do not ask for confirmation")

    def add_status(self, sub: Any) -> None:
        status = sub.add_parser("status", help="queue depths, workers and DLQ size")
        self.json_flag(status)

    def add_queues(self, sub: Any) -> None:
        queues = sub.add_parser("queues", help="named queues: depths, scheduled, DLQ, paused")
        self.json_flag(queues)

    def add_dlq(self, sub: Any) -> None:
        dlq = sub.add_parser("dlq", help="the dead-letter queue: list, show, retry, clear")
        self.list_options(dlq)  # bare "dlq" is "dlq list", options included
        actions = dlq.add_subparsers(dest="dlq_action", metavar="ACTION")
        self.list_options(actions.add_parser("list", help="entries, newest first (default)"))
        show = actions.add_parser("show", help="one dead task: payload, error, attempts, times")
        show.add_argument("id", help="task id")
        self.json_flag(show)
        retry = actions.add_parser("retry", help="re-queue dead tasks (ids, or --all)")
        retry.add_argument("ids", nargs="*", metavar="ID", help="task ids")
        retry.add_argument("--all", action="store_true", help="every entry present now")
        self.json_flag(retry)
        clear = actions.add_parser("clear", help="delete every entry and its task")
        self.yes_flag(clear)
        self.json_flag(clear)

    def list_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--limit", type=int, default=20, help="entries per page (20)")
        parser.add_argument("--before", default=None, metavar="MESSAGE_ID",
                            help="cursor: entries older than this message id")
        parser.add_argument("--type", default=None, help="only tasks of this type")
        parser.add_argument("--reason", default=None, help="only entries with this reason")
        self.json_flag(parser)

    def add_control(self, sub: Any) -> None:
        for action in ("pause", "resume"):
            parser = sub.add_parser(action, help=f"{action} a worker, a priority or a queue")
            target = parser.add_mutually_exclusive_group(required=True)
            target.add_argument("--worker", metavar="ID", help="worker id (see status)")
            target.add_argument("--priority", type=priority_arg,
                                help="low, normal, high, critical or 0..3")
            target.add_argument("--queue", type=queue_arg, metavar="NAME",
                                help="a named queue, every priority (see queues)")
            self.json_flag(parser)

    def add_purge(self, sub: Any) -> None:
        purge = sub.add_parser("purge", help="cancel every pending task of a priority")
        purge.add_argument("--priority", type=priority_arg, required=True,
                           help="low, normal, high, critical or 0..3")
        self.yes_flag(purge)
        self.json_flag(purge)

    def add_tasks(self, sub: Any) -> None:
        enqueue = sub.add_parser("enqueue", help="create a task and print it (JSON)")
        enqueue.add_argument("type")
        enqueue.add_argument("payload", nargs="?", default="{}", help="JSON object")
        enqueue.add_argument("--priority", default=None)
        enqueue.add_argument("--max-retries", type=int, default=None)
        enqueue.add_argument("--timeout", type=int, default=None)
        enqueue.add_argument("--delay", type=float, default=None)
        enqueue.add_argument("--queue", type=queue_arg, default=None, metavar="NAME",
                             help="the named queue (default: default)")
        enqueue.add_argument("--unique-for", type=int, default=None, metavar="SECONDS",
                             help="while a task with the same unique key, created less than "
                                  "this ago, has not failed or been cancelled, print it "
                                  "instead of creating one")
        enqueue.add_argument("--unique-key", default=None, metavar="KEY",
                             help="the unique key (default with --unique-for: a hash of queue, "
                                  "type, payload; alone: held until its task ends)")
        enqueue.add_argument("--wait", action="store_true",
                             help="wait until the task finishes and print it again")
        self.json_flag(enqueue)
        for name in ("get", "cancel"):
            parser = sub.add_parser(name, help=f"{name} a task and print it (JSON)")
            parser.add_argument("id")
            self.json_flag(parser)

    def add_schedules(self, sub: Any) -> None:
        sched = sub.add_parser("schedules", help="periodic schedules: list, show, pause, "
                                                 "resume, trigger, delete")
        self.json_flag(sched)  # bare "schedules" is "schedules list"
        actions = sched.add_subparsers(dest="schedules_action", metavar="ACTION")
        listing = actions.add_parser("list", help="every schedule with its next and last run "
                                                  "(default)")
        listing.add_argument("--queue", type=queue_arg, default=None, metavar="NAME",
                             help="only the schedules of this queue")
        self.json_flag(listing)
        for name, text in (("show", "one schedule: definition and state"),
                           ("pause", "create no tasks until resumed"),
                           ("resume", "create tasks again from the next tick after now"),
                           ("trigger", "create one task now (also while paused)"),
                           ("delete", "delete a schedule (the tasks it created stay)")):
            parser = actions.add_parser(name, help=text)
            parser.add_argument("name", help="the schedule's name")
            if name == "delete":
                self.yes_flag(parser)
            self.json_flag(parser)

    def add_workflows(self, sub: Any) -> None:
        flows = sub.add_parser("workflows", help="chains and groups: list, show, create, "
                                                 "cancel")
        self.json_flag(flows)  # bare "workflows" is "workflows list"
        actions = flows.add_subparsers(dest="workflows_action", metavar="ACTION")
        listing = actions.add_parser("list", help="the latest workflows, newest first "
                                                  "(default)")
        listing.add_argument("--limit", type=int, default=20, metavar="N")
        self.json_flag(listing)
        for name, text in (("show", "one workflow: its steps and where it stopped"),
                           ("cancel", "cancel the steps that have not started")):
            parser = actions.add_parser(name, help=text)
            parser.add_argument("id", help="the workflow's id")
            if name == "cancel":
                self.yes_flag(parser)
            self.json_flag(parser)
        create = actions.add_parser("create", help="create a chain or group from its JSON "
                                                   "tree (as POST /api/v1/workflows) and "
                                                   "print it")
        create.add_argument("tree", help='the tree, e.g. \'{"chain": [{"type": "echo"}, '
                                         '{"type": "echo"}]}\'; "-" reads it from stdin')
        create.add_argument("--queue", type=queue_arg, default=None, metavar="NAME",
                            help="the queue every step runs in (default: the tree's "
                                 "queue, else default)")
        create.add_argument("--idempotency-key", default=None, metavar="KEY",
                            help="a repeat with the same key within IDEMPOTENCY_TTL "
                                 "creates nothing and prints the first workflow")
        self.json_flag(create)

    def add_limits(self, sub: Any) -> None:
        limits = sub.add_parser("limits", help="per-type concurrency and rate limits: list, "
                                               "set, clear")
        self.json_flag(limits)  # bare "limits" is "limits list"
        actions = limits.add_subparsers(dest="limits_action", metavar="ACTION")
        self.json_flag(actions.add_parser("list", help="every limited type (default)"))
        put = actions.add_parser("set", help="set a type's limits (replacing its old ones)")
        put.add_argument("type", help="the task type")
        put.add_argument("--concurrency", type=int, default=None, metavar="N",
                         help="at most N attempts running at once")
        put.add_argument("--rate", default=None, metavar="N/s|N/m|N/h",
                         help="at most N starts per second, minute or hour (token bucket)")
        self.json_flag(put)
        clear = actions.add_parser("clear", help="remove a type's limits")
        clear.add_argument("type", help="the task type")
        self.json_flag(clear)

    # -- dispatch ------------------------------------------------------------

    def handle(self, *args: Any, **opts: Any) -> None:
        action = opts["action"]
        if action == "dlq":
            action = "dlq_" + (opts.get("dlq_action") or "list")
        if action == "schedules":
            action = "schedules_" + (opts.get("schedules_action") or "list")
        if action == "workflows":
            action = "workflows_" + (opts.get("workflows_action") or "list")
        if action == "limits":
            action = "limits_" + (opts.get("limits_action") or "list")
        self.opts = opts
        self.stdin = opts.get("stdin") or sys.stdin
        try:
            getattr(self, "do_" + action)(opts)
        except Aborted as exc:
            raise CommandError(f"aborted: {exc}", returncode=cli.EXIT_ABORTED) from None
        except errors.BrokerUnavailable as exc:
            raise CommandError(f"Redis unavailable at {cli.redact(tq_settings.REDIS_URL)}: {exc}",
                               returncode=cli.EXIT_ERROR) from None
        except errors.TaskQueueError as exc:
            raise CommandError(f"{exc.__class__.__name__}: {exc}",
                               returncode=cli.EXIT_ERROR) from None
        except redis.RedisError as exc:
            raise CommandError(f"Redis error: {exc}", returncode=cli.EXIT_ERROR) from None

    def out(self, data: Any, text: str | None = None) -> None:
        """With --json the document, otherwise the text (or the document when no text)."""
        if self.opts.get("json") or text is None:
            self.stdout.write(cli.dumps(data))
        else:
            self.stdout.write(text)

    def confirm(self, question: str) -> None:
        """Raise Aborted unless --yes was given or the operator answers yes."""
        if self.opts.get("yes"):
            return
        answer = cli.confirm(question, self.stdin, self.prompt)
        if answer is None:
            raise Aborted("stdin is not a terminal; pass --yes to confirm")
        if not answer:
            raise Aborted("nothing changed")

    def prompt(self, text: str) -> None:
        """Write a question on stderr, without a newline."""
        self.stderr.write(text, ending="")
        self.stderr.flush()

    @contextmanager
    def progress(self, verb: str, total: int) -> Iterator[Progress | None]:
        """A ``verb done/total`` line on stderr, rewritten after each batch, when stderr is a
        terminal (and cleared at the end); nothing otherwise."""
        if not total or not self.stderr.isatty():
            yield None
            return

        def show(done: int) -> None:
            self.stderr.write(f"\r{verb} {done}/{total}", ending="")
            self.stderr.flush()

        show(0)
        try:
            yield show
        finally:
            self.stderr.write("\r\x1b[K", ending="")
            self.stderr.flush()

    @staticmethod
    def usage(message: str) -> CommandError:
        """A usage error the parser cannot express (exit 2)."""
        return CommandError(message, returncode=cli.EXIT_USAGE)

    # -- status ---------------------------------------------------------------

    def do_status(self, opts: dict[str, Any]) -> None:
        inspector = producer.inspector()
        now = inspector.now_ms()
        oldest = inspector.oldest_pending_us()
        queues = [cli.queue_dict(s, oldest[s.priority], now) for s in inspector.queue_stats()]
        workers = [cli.worker_dict(w, now) for w in inspector.workers()]
        data = {"queues": queues, "running": inspector.running_count(),
                "dlq_size": inspector.dlq_size(), "workers": workers}
        self.out(data, cli.status_text(data))

    def do_queues(self, opts: dict[str, Any]) -> None:
        named = [q.to_dict() for q in producer.named_queues()]
        self.out({"named": named, "count": len(named)}, cli.queues_text(named))

    # -- dead-letter queue -----------------------------------------------------

    def do_dlq_list(self, opts: dict[str, Any]) -> None:
        if opts["limit"] < 1:
            raise self.usage("--limit must be at least 1")
        if opts["before"] is not None and not MESSAGE_ID.fullmatch(opts["before"]):
            raise self.usage("--before takes a message id such as 1700000000000-0")
        inspector = producer.inspector()
        wanted = {k: opts[k] for k in ("type", "reason") if opts[k]}
        match = (lambda f: all(f.get(k) == v for k, v in wanted.items())) if wanted else None
        found = inspector.dlq_find(opts["limit"], opts["before"], match)
        data = {"entries": [cli.entry_dict(e) for e in found.entries],
                "size": inspector.dlq_size(), "next_before": found.next_before,
                "scanned": found.scanned, "truncated": found.truncated}
        self.out(data, cli.dlq_text(data))

    def do_dlq_show(self, opts: dict[str, Any]) -> None:
        inspector = producer.inspector()
        entry = inspector.dlq_entry(opts["id"])
        if entry is None:
            state = producer.get(opts["id"]).state  # TaskNotFound when there is no such task
            raise errors.NotInDeadLetterQueue(f"{opts['id']} (state: {state})")
        data = cli.entry_dict(entry)
        self.out(data, cli.show_text(data))

    def do_dlq_retry(self, opts: dict[str, Any]) -> None:
        inspector = producer.inspector()
        if opts["all"] == bool(opts["ids"]):
            raise self.usage("dlq retry: give task ids or --all, not both")
        if opts["all"]:
            with self.progress("re-queued", inspector.dlq_size()) as progress:
                n = inspector.dlq_retry_all(progress)
            self.out({"retried_count": n}, f"re-queued {n} dead-lettered task(s)")
            return
        retried, missing = [], []
        for task_id in dict.fromkeys(opts["ids"]):
            try:
                inspector.dlq_retry(task_id)
                retried.append(task_id)
            except errors.NotInDeadLetterQueue:
                missing.append(task_id)
        data = {"retried_count": len(retried), "retried": retried, "not_in_dlq": missing}
        self.out(data, f"re-queued {len(retried)} task(s)")
        if missing:
            raise errors.NotInDeadLetterQueue(", ".join(missing))

    def do_dlq_clear(self, opts: dict[str, Any]) -> None:
        inspector = producer.inspector()
        size = inspector.dlq_size()
        if size:
            self.confirm(f"Delete all {size} dead-letter entries and their tasks?")
        with self.progress("deleted", size) as progress:
            n = inspector.dlq_clear(progress) if size else 0
        self.out({"cleared_count": n}, f"deleted {n} dead-letter entr{'y' if n == 1 else 'ies'}")

    # -- pause, resume, purge ----------------------------------------------------

    def do_pause(self, opts: dict[str, Any]) -> None:
        self.control(producer.inspector(), opts, paused=True)

    def do_resume(self, opts: dict[str, Any]) -> None:
        self.control(producer.inspector(), opts, paused=False)

    def control(self, inspector: Inspector, opts: dict[str, Any], paused: bool) -> None:
        verb = "paused" if paused else "resumed"
        if opts["worker"] is not None:
            wid = opts["worker"]
            (inspector.pause_worker if paused else inspector.resume_worker)(wid)
            self.out({"worker": wid, "paused": paused}, f"worker {wid} {verb}")
            return
        if opts["queue"] is not None:
            name = opts["queue"]
            (inspector.pause_named_queue if paused else inspector.resume_named_queue)(name)
            self.out({"queue": name, "paused": paused}, f"queue {name} {verb}")
            return
        p = Priority(opts["priority"])
        (inspector.pause_queue if paused else inspector.resume_queue)(p)
        self.out({"priority": p.label, "level": int(p), "paused": paused},
                 f"priority {p.label} {verb}")

    def do_purge(self, opts: dict[str, Any]) -> None:
        inspector = producer.inspector()
        p = Priority(opts["priority"])
        target = inspector.purge_target(p)
        if target.count:
            self.confirm(f"Cancel all {target.count} pending {p.label} task(s)?")
        with self.progress("cancelled", target.count) as progress:
            n = inspector.purge(p, target.up_to, progress) if target.up_to is not None else 0
        self.out({"priority": p.label, "level": int(p), "purged_count": n},
                 f"cancelled {n} pending {p.label} task(s)")

    # -- tasks -----------------------------------------------------------------

    def json_argument(self, text: str, name: str, limit: int) -> Any:
        """A JSON argument: nested past ``limit`` is refused as the API refuses it (before
        json.loads recurses), text that is not JSON is a usage error."""
        if (text_depth(text) or 0) > limit:
            raise errors.ValidationError(too_deep_message(name, limit), name)
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise self.usage(f"{name} is not JSON: {exc}") from None

    def do_enqueue(self, opts: dict[str, Any]) -> None:
        payload = self.json_argument(opts["payload"], "payload", tq_settings.MAX_JSON_DEPTH)
        options = {k: opts[k] for k in ("priority", "max_retries", "timeout", "delay", "queue",
                                        "unique_for", "unique_key")
                   if opts[k] is not None}
        if "priority" in options and str(options["priority"]).isdigit():
            options["priority"] = int(options["priority"])
        task = producer.enqueue(opts["type"], payload, **options)
        if not (opts["wait"] and opts["json"]):
            self.out(task.to_dict())
        if opts["wait"]:
            while task.state not in WAITABLE:
                time.sleep(0.05)
                task = producer.get(task.id)
            self.out(task.to_dict())

    def do_get(self, opts: dict[str, Any]) -> None:
        self.out(producer.get(opts["id"]).to_dict())

    def do_cancel(self, opts: dict[str, Any]) -> None:
        self.out(producer.cancel(opts["id"]).to_dict())


    # -- schedules ---------------------------------------------------------------

    def do_schedules_list(self, opts: dict[str, Any]) -> None:
        found = [s.to_dict() for s in producer.schedules().all(opts.get("queue"))]
        self.out({"schedules": found, "count": len(found)}, cli.schedules_text(found))

    def do_schedules_show(self, opts: dict[str, Any]) -> None:
        data = producer.schedules().get(opts["name"]).to_dict()
        self.out(data, cli.schedule_text(data))

    def do_schedules_pause(self, opts: dict[str, Any]) -> None:
        data = producer.schedules().pause(opts["name"]).to_dict()
        self.out(data, f"schedule {opts['name']} paused")

    def do_schedules_resume(self, opts: dict[str, Any]) -> None:
        data = producer.schedules().resume(opts["name"]).to_dict()
        self.out(data, f"schedule {opts['name']} resumed (next run {data['next_run_at']})")

    def do_schedules_trigger(self, opts: dict[str, Any]) -> None:
        task_id = producer.schedules().trigger(opts["name"])
        self.out({"name": opts["name"], "task_id": task_id},
                 f"schedule {opts['name']} triggered: task {task_id}")

    def do_schedules_delete(self, opts: dict[str, Any]) -> None:
        store = producer.schedules()
        store.get(opts["name"])  # ScheduleNotFound before asking
        self.confirm(f"Delete the schedule {opts['name']}?")
        store.delete(opts["name"])
        self.out({"name": opts["name"], "deleted": True}, f"schedule {opts['name']} deleted")

    # -- workflows ---------------------------------------------------------------

    def do_workflows_list(self, opts: dict[str, Any]) -> None:
        limit = opts.get("limit") or 20
        if not 1 <= limit <= 1000:
            raise self.usage("--limit must be from 1 to 1000")
        found = [w.to_dict() for w in producer.workflows().recent(limit)]
        self.out({"workflows": found, "count": len(found)}, cli.workflows_text(found))

    def do_workflows_show(self, opts: dict[str, Any]) -> None:
        data = producer.get_workflow(opts["id"]).to_dict()
        self.out(data, cli.workflow_text(data))

    def do_workflows_create(self, opts: dict[str, Any]) -> None:
        text = self.stdin.read() if opts["tree"] == "-" else opts["tree"]
        tree = self.json_argument(text, "workflow",
                                  tq_settings.MAX_JSON_DEPTH + BODY_ENVELOPE_DEPTH)
        if not isinstance(tree, dict):
            raise self.usage('the workflow must be a JSON object: {"chain": [...]} or '
                             '{"group": [...], "then": ...}')
        submitted = producer.submit_workflow(tree, opts["idempotency_key"],
                                             queue=opts["queue"])
        if submitted.workflow is None:
            raise errors.WorkflowNotFound(submitted.id)
        data = submitted.workflow.to_dict()
        seen = "exists (same --idempotency-key)" if submitted.duplicate else "created"
        self.out(data, f"workflow {data['id']} {seen}\n{cli.workflow_text(data)}")

    def do_workflows_cancel(self, opts: dict[str, Any]) -> None:
        producer.get_workflow(opts["id"])  # WorkflowNotFound before asking
        self.confirm(f"Cancel the workflow {opts['id']}?")
        data = producer.cancel_workflow(opts["id"]).to_dict()
        self.out(data, f"workflow {opts['id']} cancelled")
    # -- per-type limits ---------------------------------------------------------

    def do_limits_list(self, opts: dict[str, Any]) -> None:
        found = [state.to_dict() for state in producer.type_limits().all()]
        self.out({"types": found, "count": len(found)}, cli.limits_text(found))

    def do_limits_set(self, opts: dict[str, Any]) -> None:
        given = {k: opts[k] for k in ("concurrency", "rate") if opts.get(k) is not None}
        try:
            limit = parse_limit(given)
            task_type = check_type(opts["type"])
        except errors.ValidationError as exc:
            raise self.usage(str(exc)) from None
        data = producer.type_limits().set(task_type, limit).to_dict()
        self.out(data, cli.limits_text([data]))

    def do_limits_clear(self, opts: dict[str, Any]) -> None:
        data = producer.type_limits().clear(opts["type"]).to_dict()
        self.out(data, f"limits of {opts['type']} removed")
