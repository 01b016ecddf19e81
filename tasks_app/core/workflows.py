"""Workflows: chains and groups of tasks, advanced inside the scripts that end their steps.

A workflow is a tree: ``{"chain": [step, ...]}`` runs its steps one after another;
``{"group": [step, ...], "then": step}`` runs its members at once and, with ``then``, one
more step once every member has completed.  A step is a task body (as for a create) or a
nested chain or group.

:func:`compile_plan` turns the tree into numbered task steps, each knowing which steps it
waits on.  ``workflow_create.lua`` writes the plan into one hash in the workflow's queue
shard and creates the tasks of the steps that wait on nothing; from then on every
transition script that ends a step (lib.lua's workflow section) advances the workflow in
the same atomic call: a completed step's result is recorded and the steps whose last
predecessor it was are created, pending; a step that ends ``failed`` or ``dead_letter``
fails the workflow and cancels its unstarted steps; a retry of that step resumes it; a
cancelled step cancels it.

A step receives its parents' results as ``ctx.parent_results``: the previous step's result
after a task or chain, a list of the members' results (in member order) after a group,
recursively (a group of groups gives a list of lists).  Its payload is never rewritten.

Every step runs in the workflow's queue (one queue shard: a Redis Cluster runs a script
on one slot), so a step may not name its own ``queue``, nor a ``scheduled_at``, ``delay``
or unique key (it is created when its turn comes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .broker import Broker, idempotency_ttl_ms, is_uuid, new_task_id, redis_errors
from .keys import Keys, queue_charge, scoped
from .task import TaskSpec, ms_to_iso

MAX_STEPS = 10_000
"""The most task steps one workflow may have."""
READ_CHUNK = 10_000
"""Reads sent in one round trip when workflows are shown."""
MAX_NESTING = 32
"""How deep chains and groups may nest."""
MAX_LINKS = 100_000
"""The most links (a step waiting on another) one workflow may have: a group after a group
links every member of the second to every member of the first, so a small body could
otherwise ask for 10,000 x 10,000 of them (each stored, and counted by the script)."""
STEP_REFUSED = ("queue", "scheduled_at", "delay", "unique_for", "unique_key")
"""Task fields a step may not have (it runs in its workflow's queue, when its turn comes)."""
STATES = ("pending", "running", "completed", "failed", "cancelled")

Shape = int | list["Shape"]
"""What a node hands the step after it: a step number (its result), or a list of shapes
(a group's members, in order)."""


@dataclass
class Step:
    """One task of a workflow: its spec, what it waits on and who waits on it."""

    index: int
    spec: TaskSpec
    after: Shape | None
    successors: list[int] = field(default_factory=list)

    @property
    def waits_on(self) -> list[int]:
        """The step numbers it waits on, in the order of its parent results."""
        return _leaves(self.after) if self.after is not None else []


@dataclass
class Plan:
    """A validated workflow: its numbered steps and its structure (the request's shape
    with each task body replaced by its step number)."""

    id: str
    queue: str
    steps: list[Step]
    structure: Any


def _leaves(shape: Shape) -> list[int]:
    if isinstance(shape, int):
        return [shape]
    return [leaf for part in shape for leaf in _leaves(part)]


def compile_plan(tree: Any, make_spec: Callable[[Mapping[str, Any], str], TaskSpec],
                 queue: str, workflow_id: str | None = None) -> Plan:
    """Validate a workflow tree and number its steps; raise :class:`~.errors.ValidationError`
    naming the step and field (``chain[2].group[0]: timeout must be ...``).

    ``make_spec(fields, label)`` validates one task body (the caller's rules and defaults);
    every step runs in ``queue``.  Nothing is written."""
    builder = _Builder(make_spec, queue)
    if not isinstance(tree, Mapping) or not ("chain" in tree or "group" in tree):
        raise errors.ValidationError("a workflow must be a JSON object with 'chain' (a list "
                                     "of steps) or 'group' (and an optional 'then')", "chain")
    structure = builder.node(tree, "", None, 0)[1]
    return Plan(workflow_id or new_task_id(), queue, builder.steps, structure)


class _Builder:
    def __init__(self, make_spec: Callable[[Mapping[str, Any], str], TaskSpec],
                 queue: str) -> None:
        self.make_spec = make_spec
        self.queue = queue
        self.steps: list[Step] = []
        self.links = 0

    def node(self, node: Any, path: str, after: Shape | None, depth: int) -> tuple[Shape, Any]:
        """Add one node's steps after ``after``; return (its output shape, its structure)."""
        if depth > MAX_NESTING:
            raise errors.ValidationError(
                f"{path or 'workflow'}: chains and groups nest at most {MAX_NESTING} deep",
                "chain")
        if not isinstance(node, Mapping):
            raise errors.ValidationError(f"{path}: a step must be a JSON object", path)
        if "chain" in node or "group" in node:
            return self.flow(node, path, after, depth)
        return self.task(node, path, after)

    def flow(self, node: Mapping[str, Any], path: str, after: Shape | None,
             depth: int) -> tuple[Shape, Any]:
        kind = "chain" if "chain" in node else "group"
        allowed = {"chain"} if kind == "chain" else {"group", "then"}
        if not path:
            allowed.add("queue")
        unknown = sorted(set(node) - allowed)
        if unknown:
            where = f"{path}: " if path else ""
            raise errors.ValidationError(f"{where}unknown field '{unknown[0]}' in a {kind}",
                                         unknown[0])
        members = node[kind]
        here = f"{path}.{kind}" if path else kind
        if not isinstance(members, list) or not members:
            raise errors.ValidationError(f"{here} must be a non-empty list of steps", kind)
        if kind == "chain":
            shapes = []
            out = after
            for i, member in enumerate(members):
                out, sub = self.node(member, f"{here}[{i}]", out, depth + 1)
                shapes.append(sub)
            assert out is not None
            return out, {"chain": shapes}
        outs: list[Shape] = []
        subs = []
        for i, member in enumerate(members):
            out, sub = self.node(member, f"{here}[{i}]", after, depth + 1)
            outs.append(out)
            subs.append(sub)
        if "then" not in node:
            return outs, {"group": subs}
        then_path = f"{path}.then" if path else "then"
        out, then = self.node(node["then"], then_path, outs, depth + 1)
        return out, {"group": subs, "then": then}

    def task(self, body: Mapping[str, Any], path: str, after: Shape | None
             ) -> tuple[Shape, Any]:
        refused = [name for name in STEP_REFUSED if name in body]
        if refused:
            raise errors.ValidationError(
                f"{path}: a workflow step may not set '{refused[0]}' (steps run in the "
                "workflow's queue, when their turn comes)", refused[0])
        if len(self.steps) >= MAX_STEPS:
            raise errors.ValidationError(f"a workflow has at most {MAX_STEPS} steps", path)
        try:
            spec = self.make_spec(body, path)
        except errors.ValidationError as exc:
            raise errors.ValidationError(f"{path}: {exc}", exc.field) from None
        index = len(self.steps)
        step = Step(index, TaskSpec(**{**spec.__dict__, "queue": self.queue}), after)
        waits_on = step.waits_on
        self.links += len(waits_on)
        if self.links > MAX_LINKS:
            raise errors.ValidationError(
                f"{path}: a workflow has at most {MAX_LINKS} links between steps (each step "
                "of a group or chain after a group waits on every member of that group)", path)
        for parent in waits_on:
            self.steps[parent].successors.append(index)
        self.steps.append(step)
        return index, index


def script_args(plan: Plan, owner: str, idem: str = "", idem_ttl_ms: int = 0) -> list[Any]:
    """The ARGV of ``workflow_create.lua`` (``idem``: the scoped idempotency key, or "")."""
    args: list[Any] = [plan.id, owner, json.dumps(plan.structure, separators=(",", ":")),
                       len(plan.steps), idem, idem_ttl_ms]
    for step in plan.steps:
        spec = step.spec
        body = [spec.type, _json(spec.payload), str(spec.priority), str(spec.max_retries),
                str(spec.timeout), _json(spec.metadata)]
        args += [spec.id, _json(body), len(step.waits_on),
                 ",".join(map(str, step.successors)),
                 "" if step.after is None else json.dumps(step.after, separators=(",", ":"))]
    return args


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# -- reading -----------------------------------------------------------------------------

@dataclass(frozen=True)
class StepState:
    """One step as a reader sees it."""

    index: int
    task_id: str
    type: str
    state: str
    after: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "task_id": self.task_id, "type": self.type,
                "state": self.state, "after": self.after}


@dataclass(frozen=True)
class Workflow:
    """A workflow as the API shows it.

    ``state``: ``pending`` (no step started yet), ``running``, ``completed``, ``failed``
    (a step ended failed or dead-lettered; its retry resumes the workflow) or
    ``cancelled``.  A step whose task does not exist yet is ``waiting`` while the workflow
    is active, ``cancelled`` once it ended otherwise than completed."""

    id: str
    state: str
    queue: str
    owner: str
    created_at: int
    updated_at: int
    ended_at: int | None
    failed_step: str | None
    structure: Any
    steps: list[StepState]

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.state] = counts.get(step.state, 0) + 1
        return {
            "id": self.id, "state": self.state, "queue": self.queue,
            "created_at": ms_to_iso(self.created_at), "updated_at": ms_to_iso(self.updated_at),
            "ended_at": ms_to_iso(self.ended_at),
            "failed_step": self.failed_step, "step_count": len(self.steps),
            "step_states": counts, "structure": self.structure,
            "steps": [step.to_dict() for step in self.steps],
        }


@dataclass(frozen=True)
class SubmittedWorkflow:
    """What a create made, or found when its idempotency key was seen before."""

    id: str
    workflow: Workflow | None
    """None when the workflow a repeated key names no longer exists (expired, or purged)."""
    duplicate: bool


class Workflows:
    """Create, read and cancel the workflows of one namespace."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def create(self, plan: Plan, owner: str = "") -> Workflow:
        """Write the plan and create its first steps' tasks (one script, all or nothing)."""
        created = self.submit(plan, owner).workflow
        assert created is not None
        return created

    def submit(self, plan: Plan, owner: str = "", idempotency_key: str | None = None,
               idempotency_ttl: float = 86400.0) -> SubmittedWorkflow:
        """Like :meth:`create`; with an idempotency key, a repeat by the same ``owner``
        within ``idempotency_ttl`` seconds creates nothing and returns the first call's
        workflow (the key is checked and recorded in the script that creates it)."""
        broker = self.broker
        broker.check_fits(sum(1 for step in plan.steps if not step.waits_on), "first steps")
        broker.register_queue(plan.queue, queue_charge(owner))
        idem = scoped(owner, idempotency_key) if idempotency_key else ""
        keys = broker.producer_shard(plan.queue, idem)
        args = script_args(plan, owner, idem, idempotency_ttl_ms(idempotency_ttl))
        reply = broker.run_script("workflow_create", keys.seq, args)
        if reply[0] != "duplicate":
            return SubmittedWorkflow(plan.id, self.get(plan.id), duplicate=False)
        try:
            return SubmittedWorkflow(reply[1], self.get(reply[1]), duplicate=True)
        except errors.WorkflowNotFound:
            return SubmittedWorkflow(reply[1], None, duplicate=True)

    META = ("id", "state", "queue", "owner", "created_at", "updated_at", "ended_at",
            "failed_step", "structure", "n")
    """The fields of a workflow's hash that describe it as a whole."""

    def _locate(self, workflow_id: str) -> tuple[Keys, dict[str, str]] | None:
        shards = self.broker.all_shards()
        with redis_errors():
            pipe = self.broker.client.pipeline(transaction=False)
            for keys in shards:
                pipe.hmget(keys.workflow(workflow_id), self.META)
            found = pipe.execute()
        for keys, values in zip(shards, found, strict=True):
            if values[0] is not None:
                return keys, dict(zip(self.META, values, strict=True))
        return None

    def get(self, workflow_id: str) -> Workflow:
        """The workflow and the state of each step; raises
        :class:`~.errors.WorkflowNotFound`."""
        if not is_uuid(workflow_id):
            raise errors.WorkflowNotFound(workflow_id)
        located = self._locate(workflow_id)
        if located is None:
            raise errors.WorkflowNotFound(workflow_id)
        keys, meta = located
        return self._read([(keys, workflow_id, meta)])[0]

    def _read(self, found: list[tuple[Keys, str, dict[str, str]]]) -> list[Workflow]:
        """Workflows whose hashes were found, with the state of each step: pipelined, two
        round trips for any number of small workflows (the steps' fields, then their
        tasks' states, READ_CHUNK reads per round trip)."""
        client = self.broker.client
        with redis_errors():
            fields: list[list[Any]] = []
            for batch in _batches(found, lambda item: int(item[2]["n"])):
                pipe = client.pipeline(transaction=False)
                for keys, workflow_id, meta in batch:
                    pipe.hmget(keys.workflow(workflow_id),
                               [f"{kind}:{i}" for i in range(int(meta["n"]))
                                for kind in ("id", "s", "a", "d")])
                fields.extend(pipe.execute())
            steps = [keys.task(task_id) for (keys, _, _), values in zip(found, fields, strict=True)
                     for task_id in values[::4]]
            states: list[str | None] = []
            for keys_batch in _batches(steps, lambda key: 1):
                pipe = client.pipeline(transaction=False)
                for key in keys_batch:
                    pipe.hget(key, "state")
                states.extend(pipe.execute())
        each = iter(states)
        return [_workflow(workflow_id, meta, values, [next(each) for _ in values[::4]])
                for (_, workflow_id, meta), values in zip(found, fields, strict=True)]

    def has_step(self, task_id: str) -> bool:
        """Whether the task is a step of a workflow (cancelling it cancels the workflow)."""
        keys = self.broker.locate(task_id)
        with redis_errors():
            return keys is not None and bool(self.broker.client.hexists(keys.task(task_id),
                                                                        "wf"))

    def cancel(self, workflow_id: str) -> Workflow:
        """Cancel a workflow that has not completed (its unstarted steps with it); raises
        :class:`~.errors.WorkflowNotFound` or :class:`~.errors.WorkflowNotCancellable`."""
        if not is_uuid(workflow_id):
            raise errors.WorkflowNotFound(workflow_id)
        located = self._locate(workflow_id)
        if located is None:
            raise errors.WorkflowNotFound(workflow_id)
        keys = located[0]
        (before,) = self.broker.run_script("workflow_cancel", keys.seq, [workflow_id])
        if before == "":
            raise errors.WorkflowNotFound(workflow_id)
        if before == "completed":
            raise errors.WorkflowNotCancellable("workflow cannot be cancelled in current state",
                                                "completed")
        return self.get(workflow_id)

    def recent(self, limit: int = 20) -> list[Workflow]:
        """The latest workflows of every queue shard (newest first) that still exist."""
        shards = self.broker.all_shards()
        with redis_errors():
            pipe = self.broker.client.pipeline(transaction=False)
            for keys in shards:
                pipe.zrevrange(keys.workflows, 0, limit - 1, withscores=True)
            listed = pipe.execute()
        newest = sorted(((score, wid, keys) for keys, rows in zip(shards, listed, strict=True)
                         for wid, score in rows), key=lambda row: row[:2], reverse=True)
        with redis_errors():
            pipe = self.broker.client.pipeline(transaction=False)
            for _, wid, keys in newest:
                pipe.exists(keys.workflow(wid))
            # an index entry whose workflow has expired since is skipped
            shown = [(wid, keys) for (_, wid, keys), there in
                     zip(newest, pipe.execute() if newest else [], strict=True) if there][:limit]
            pipe = self.broker.client.pipeline(transaction=False)
            for wid, keys in shown:
                pipe.hmget(keys.workflow(wid), self.META)
            metas = pipe.execute() if shown else []
        return self._read([(keys, wid, dict(zip(self.META, values, strict=True)))
                           for (wid, keys), values in zip(shown, metas, strict=True)
                           if values[0] is not None])


def _batches(items: list[Any], size: Callable[[Any], int]) -> list[list[Any]]:
    """Consecutive runs of items whose sizes add up to at most READ_CHUNK (an item larger
    than that alone)."""
    out: list[list[Any]] = []
    total = 0
    for item in items:
        n = size(item)
        if not out or total + n > READ_CHUNK:
            out.append([])
            total = 0
        out[-1].append(item)
        total += n
    return out


def _workflow(workflow_id: str, meta: dict[str, str], values: list[Any],
              states: list[str | None]) -> Workflow:
    """A workflow from its hash's fields (``meta``; per step, id, body, after and done in
    ``values``) and its steps' task states (None: the record is gone)."""
    active = meta["state"] == "active"
    steps = []
    for i, found in enumerate(states):
        task_id, body, after, done = values[4 * i: 4 * i + 4]
        # a step's record may have expired (RESULT_TTL) while its workflow runs on
        gone = "completed" if done else "waiting" if active else "cancelled"
        steps.append(StepState(i, task_id, json.loads(body)[0], found or gone,
                               _leaves(json.loads(after)) if after else []))
    state = meta["state"]
    if state == "active":  # pending until a step's task left the line
        started = any(step.state not in ("waiting", "pending") for step in steps)
        state = "running" if started else "pending"
    return Workflow(
        id=workflow_id, state=state, queue=meta["queue"], owner=meta["owner"] or "",
        created_at=int(meta["created_at"]), updated_at=int(meta["updated_at"]),
        ended_at=int(meta["ended_at"]) if meta["ended_at"] else None,
        failed_step=meta["failed_step"], structure=json.loads(meta["structure"]),
        steps=steps)
