"""The Python API for producers: enqueue, enqueue_on_commit, enqueue_many, get, cancel,
and workflows (chain, group).

    from tasks_app import producer
    task = producer.enqueue("email", {"to": "a@example.com", "subject": "Hi"}, priority="high")
    task = producer.enqueue("email", {"to": "b@example.com"}, queue="emails")
    flow = producer.chain(producer.step("fetch", {"url": u}), producer.step("parse"))
    flow = producer.group(*[producer.step("resize", {"n": i}) for i in range(9)],
                          then=producer.step("zip"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from django.db import transaction

from tasks_app.conf import tq_settings
from tasks_app.connection import get_broker
from tasks_app.core import tracing
from tasks_app.core.broker import Submitted, is_uuid, new_task_id, redis_errors
from tasks_app.core.errors import ValidationError, WorkflowNotFound
from tasks_app.core.inspect import Inspector, NamedQueueStats
from tasks_app.core.keys import CODE_SCOPE
from tasks_app.core.limits import TypeLimits
from tasks_app.core.registry import registry
from tasks_app.core.schedules import Schedule, Schedules, ScheduleSpec, parse_schedule
from tasks_app.core.task import Task, TaskSpec
from tasks_app.core.validation import build_spec, check_queue
from tasks_app.core.workflows import Plan, SubmittedWorkflow, Workflow, Workflows, compile_plan

PRODUCER_SCOPE = CODE_SCOPE
"""The caller Python code enqueues as unless it passes ``scope`` (e.g.
``authentication.principal_id(request.user)`` to act for a user): idempotency keys are
remembered per scope, and the scope is recorded as the tasks' owner (TASK_VISIBILITY)."""

FIELDS = ("type", "payload", "priority", "max_retries", "timeout", "metadata", "scheduled_at",
          "delay", "queue", "unique_for", "unique_key")
KNOWN_FIELDS = frozenset(FIELDS)


def spec(fields: Mapping[str, Any], task_id: str | None = None,
         defaults: tuple[int, int, int] | None = None, clamp_time: bool = False) -> TaskSpec:
    """Validate one task's fields against the registry and the settings' defaults
    (``defaults``: priority, max_retries, timeout, when the caller has read them;
    ``clamp_time``: the REST API's rule for a ``scheduled_at`` out of range)."""
    if task_id is not None and not is_uuid(task_id):
        raise ValidationError("task id must be a UUID", "id")
    if not KNOWN_FIELDS.issuperset(fields):
        unknown = sorted(set(fields) - KNOWN_FIELDS)[0]
        raise ValidationError(f"unknown field '{unknown}'", unknown)
    built = build_spec(registry, task_id or new_task_id(), defaults=defaults or task_defaults(),
                       accept_unknown=tq_settings.ACCEPT_UNKNOWN_TYPES,
                       max_depth=tq_settings.MAX_JSON_DEPTH, clamp_time=clamp_time, **fields)
    if tracing.ENABLED:  # the caller's trace continues in the worker's span
        traced = tracing.with_trace_context(built.metadata)
        if traced is not built.metadata:  # only inside an active span
            built = replace(built, metadata=traced)
    return built


def task_defaults() -> tuple[int, int, int]:
    """The settings' DEFAULT_PRIORITY, DEFAULT_MAX_RETRIES and DEFAULT_TIMEOUT."""
    return (tq_settings.DEFAULT_PRIORITY, tq_settings.DEFAULT_MAX_RETRIES,
            tq_settings.DEFAULT_TIMEOUT)


def enqueue(type: str, payload: dict[str, Any] | None = None, *, task_id: str | None = None,
            scope: str = PRODUCER_SCOPE, **options: Any) -> Task:
    """Create one task; options are priority, max_retries, timeout, metadata, delay,
    scheduled_at, queue (a queue name; default "default"), unique_for (seconds) and
    unique_key (see core/unique.py: within unique_for, the existing task is returned).
    ``task_id`` (a UUID) is generated unless given."""
    task_spec = spec({"type": type, "payload": payload, **options}, task_id)
    return get_broker().submit([task_spec], scope=scope).tasks[0]


def enqueue_on_commit(type: str, payload: dict[str, Any] | None = None, *,
                      task_id: str | None = None, using: str | None = None,
                      scope: str = PRODUCER_SCOPE, **options: Any) -> str:
    """Validate a task now and create it when the transaction on database ``using`` commits
    (at once outside a transaction; never if it rolls back); return its id.

    A ``delay`` counts from the commit.  If Redis refuses at commit time the error is
    raised from the commit (the database transaction is already committed).
    """
    task_spec = spec({"type": type, "payload": payload, **options}, task_id)
    submit_on_commit(task_spec, using, scope=scope)
    return task_spec.id


def submit_on_commit(task_spec: TaskSpec, using: str | None = None,
                     then: Callable[[Task], None] | None = None,
                     scope: str = PRODUCER_SCOPE) -> None:
    """Create a validated task when the transaction on ``using`` commits, then call
    ``then`` with it."""
    transaction.on_commit(partial(_submit_spec, task_spec, then, scope), using=using)


def _submit_spec(task_spec: TaskSpec, then: Callable[[Task], None] | None = None,
                 scope: str = PRODUCER_SCOPE) -> None:
    created = get_broker().submit([task_spec], scope=scope).tasks[0]
    if then is not None:
        then(created)


def enqueue_many(tasks: Iterable[Mapping[str, Any]], scope: str = PRODUCER_SCOPE
                 ) -> list[Task]:
    """Create many tasks in one round trip, all or nothing (each a dict of FIELDS; every
    task in the same queue)."""
    return submit(tasks, scope=scope).tasks


def submit(tasks: Iterable[Mapping[str, Any]], idempotency_key: str | None = None,
           idempotency_ttl: float = 86400.0, scope: str = PRODUCER_SCOPE, *,
           label: str = "", clamp_time: bool = False) -> Submitted:
    """Like enqueue_many; a repeated idempotency key from the same ``scope`` returns the
    first call's tasks.

    Items are validated in order.  With a ``label``, an item's error names it
    (``tasks[3]: ...``); ``clamp_time`` is passed to :func:`spec`.  One call creates its
    tasks atomically in one queue: an item in another queue than the first is refused.
    """
    defaults = task_defaults()
    specs = [_labelled(fields, label, i, defaults, clamp_time) for i, fields in enumerate(tasks)]
    _one_queue(specs, label)
    return get_broker().submit(specs, idempotency_key, idempotency_ttl, scope=scope)


def _labelled(fields: Mapping[str, Any], label: str, index: int,
              defaults: tuple[int, int, int], clamp_time: bool) -> TaskSpec:
    try:
        return spec(fields, defaults=defaults, clamp_time=clamp_time)
    except ValidationError as exc:
        if not label:
            raise
        raise ValidationError(f"{label}[{index}]: {exc}", exc.field) from None


def _one_queue(specs: list[TaskSpec], label: str) -> None:
    for i, item in enumerate(specs):
        if item.queue != specs[0].queue:
            where = f"{label}[{i}]: " if label else ""
            raise ValidationError(
                f"{where}queue must be the same for every task of one call ('{specs[0].queue}'"
                f" here, not '{item.queue}'): a call is created atomically, in one queue",
                "queue")


def get(task_id: str) -> Task:
    """The task with that id (raises TaskNotFound)."""
    return get_broker().get(task_id)


def cancel(task_id: str) -> Task:
    """Cancel a pending, scheduled or retrying task (raises NotCancellable otherwise)."""
    return get_broker().cancel(task_id)


def inspector() -> Inspector:
    """Admin operations: queues, workers, the dead-letter queue, pause and resume."""
    return Inspector(get_broker())


def named_queues(admin: Inspector | None = None) -> list[NamedQueueStats]:
    """Every named queue's figures, the queue registry read afresh (so a queue another
    process created a moment ago is listed; one HGETALL more)."""
    admin = admin or inspector()
    admin.broker.queues(fresh=True)
    return admin.named_queues()


def type_limits() -> TypeLimits:
    """The per-type limits of the shared broker."""
    return TypeLimits(get_broker())


def schedules() -> Schedules:
    """Periodic schedules: list, read, pause, resume, trigger, delete (the REST API, the CLI,
    the Django admin and the dashboard share it)."""
    return Schedules(get_broker())


def schedule_spec(body: Any, name: str | None = None) -> ScheduleSpec:
    """A schedule definition validated as the REST API validates it (ValidationError naming
    the field); ``name`` is the schedule's when it exists."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object", None)
    return parse_schedule(body, registry, name=name,
                          accept_unknown=tq_settings.ACCEPT_UNKNOWN_TYPES,
                          max_depth=tq_settings.MAX_JSON_DEPTH, defaults=task_defaults())


def last_task_states(found: list[Schedule]) -> dict[str, str]:
    """The state of each schedule's last task, by schedule name ("gone" once its record
    expired; schedules that never ran are left out); one pipelined read (not atomic)."""
    with_task = [s for s in found if s.last_task_id]
    if not with_task:
        return {}
    broker = get_broker()
    with redis_errors():
        pipe = broker.client.pipeline(transaction=False)
        for s in with_task:
            pipe.hget(broker.keys.task(s.last_task_id or ""), "state")
        states = pipe.execute()
    return {s.name: str(state or "gone") for s, state in zip(with_task, states, strict=True)}


# -- workflows: chains and groups (core/workflows.py) --------------------------------------

def step(type: str, payload: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """A task step of a workflow: the body a create takes (priority, max_retries, timeout,
    metadata; not queue, scheduled_at, delay or unique keys)."""
    return {"type": type, "payload": payload, **options}


def chain(*steps: Mapping[str, Any], queue: str | None = None,
          scope: str = PRODUCER_SCOPE, idempotency_key: str | None = None) -> Workflow:
    """Create a workflow running ``steps`` one after another (each a :func:`step` or a
    nested ``{"chain": [...]}`` / ``{"group": [...], "then": ...}``); each step's handler
    gets the previous step's result as ``ctx.parent_results``."""
    return workflow({"chain": list(steps)}, queue=queue, scope=scope,
                    idempotency_key=idempotency_key)


def group(*steps: Mapping[str, Any], then: Mapping[str, Any] | None = None,
          queue: str | None = None, scope: str = PRODUCER_SCOPE,
          idempotency_key: str | None = None) -> Workflow:
    """Create a workflow running ``steps`` at once; ``then`` runs once every one of them
    has completed, with their results in order as ``ctx.parent_results``."""
    tree: dict[str, Any] = {"group": list(steps)}
    if then is not None:
        tree["then"] = then
    return workflow(tree, queue=queue, scope=scope, idempotency_key=idempotency_key)


def workflow_plan(tree: Any, queue: str | None = None, label: str = "") -> Plan:
    """Validate a workflow tree (ValidationError naming the step and field) without
    creating anything.  ``queue`` (or the tree's own ``queue``) is where every step runs."""
    if isinstance(tree, Mapping) and "queue" in tree:
        if tree["queue"] is None or (queue is not None and tree["queue"] != queue):
            raise ValidationError("queue must name a queue (once)", "queue")
        queue = tree["queue"]
    name = check_queue(queue)
    defaults = task_defaults()
    return compile_plan(tree, lambda fields, _: spec(fields, defaults=defaults), name)


def workflow(tree: Any, *, queue: str | None = None, scope: str = PRODUCER_SCOPE,
             idempotency_key: str | None = None) -> Workflow:
    """Create a workflow from its tree (``{"chain": [...]}`` or ``{"group": [...],
    "then": ...}``, nested at will) and return it with every step's task id.  A repeated
    ``idempotency_key`` from the same ``scope`` within IDEMPOTENCY_TTL creates nothing and
    returns the first call's workflow (WorkflowNotFound once that one no longer exists)."""
    submitted = submit_workflow(tree, idempotency_key, queue=queue, scope=scope)
    if submitted.workflow is None:
        raise WorkflowNotFound(submitted.id)
    return submitted.workflow


def submit_workflow(tree: Any, idempotency_key: str | None = None,
                    idempotency_ttl: float | None = None, *, queue: str | None = None,
                    scope: str = PRODUCER_SCOPE) -> SubmittedWorkflow:
    """Like :func:`workflow`, saying whether the key was seen before (``duplicate``);
    ``idempotency_ttl`` defaults to IDEMPOTENCY_TTL."""
    ttl = tq_settings.IDEMPOTENCY_TTL if idempotency_ttl is None else idempotency_ttl
    return Workflows(get_broker()).submit(workflow_plan(tree, queue), scope, idempotency_key,
                                          ttl)


def get_workflow(workflow_id: str) -> Workflow:
    """A workflow and its steps' states (raises WorkflowNotFound)."""
    return Workflows(get_broker()).get(workflow_id)


def cancel_workflow(workflow_id: str) -> Workflow:
    """Cancel a workflow's steps that have not started (raises WorkflowNotFound, or
    WorkflowNotCancellable once it has completed)."""
    return Workflows(get_broker()).cancel(workflow_id)


def workflows() -> Workflows:
    """Workflows: create, read, cancel and list the latest (the admin and dashboard)."""
    return Workflows(get_broker())
