"""Shapes of the API's requests and responses, for the OpenAPI schema.

Validation itself is the queue core's (``tasks_app.core.validation``), shared with the
Python producer API; these serializers describe the wire format and are never used to
parse a request.  ``tasks_app.api.schema`` adds what serializers cannot say
(registered task types, "not both", one-of bodies).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tasks_app.core.keys import QUEUE_NAME
from tasks_app.core.schedules import MAX_EVERY
from tasks_app.core.states import Priority, TaskState
from tasks_app.core.unique import MAX_UNIQUE_FOR, MAX_UNIQUE_KEY, UNIQUE_KEY_PATTERN
from tasks_app.core.validation import MAX_DELAY_SECONDS, MAX_RETRIES_RANGE, TIMEOUT_RANGE

PRIORITY_NAMES = [p.label for p in sorted(Priority, reverse=True)]
STATES = [s.value for s in TaskState]
WORKER_STATES = ["busy", "idle", "paused", "stopping"]

PRIORITY_INPUT: dict[str, Any] = {
    "oneOf": [
        {"type": "integer", "minimum": 0, "maximum": 3},
        {"type": "string", "enum": PRIORITY_NAMES},
    ],
    "nullable": True,
    "description": "0=low, 1=normal, 2=high, 3=critical, or the name (default: 0)",
}
QUEUE_NAME_PATTERN = f"^{QUEUE_NAME.pattern}$"
ANY_JSON: dict[str, Any] = {"nullable": True, "description": "Any JSON value"}


class EnumField(serializers.ChoiceField):
    """A choice of strings that the OpenAPI schema names ``enum_name`` in any site."""

    def __init__(self, choices: list[str], enum_name: str, **kwargs: Any) -> None:
        self.enum_name = enum_name
        super().__init__(choices=choices, **kwargs)


@extend_schema_field(PRIORITY_INPUT)
class PriorityInputField(serializers.Field):
    """A priority as a client may send it."""


@extend_schema_field(ANY_JSON)
class AnyJSONField(serializers.Field):
    """Any JSON value (a handler's result)."""


class Error(serializers.Serializer):
    """Every error: the HTTP reason phrase and what went wrong."""

    error = serializers.CharField(help_text="HTTP reason phrase, e.g. 'Not Found'")
    message = serializers.CharField(help_text="What went wrong, naming the field if one")


class TaskCreate(serializers.Serializer):
    """A task to create."""

    type = serializers.CharField(help_text="Task type; must match a registered handler")
    payload = serializers.DictField(required=False, allow_null=True,
                                    help_text="Data passed to the handler")
    priority = PriorityInputField(required=False)
    max_retries = serializers.IntegerField(
        required=False, allow_null=True, min_value=MAX_RETRIES_RANGE[0],
        max_value=MAX_RETRIES_RANGE[1], help_text="Retries after the first attempt (default 3)")
    timeout = serializers.IntegerField(
        required=False, allow_null=True, min_value=TIMEOUT_RANGE[0], max_value=TIMEOUT_RANGE[1],
        help_text="Execution timeout in seconds (default 300)")
    metadata = serializers.DictField(required=False, allow_null=True,
                                     help_text="Arbitrary key-value metadata")
    scheduled_at = serializers.DateTimeField(
        required=False, allow_null=True,
        help_text="Run at this time (state 'scheduled'); not with delay")
    delay = serializers.FloatField(
        required=False, allow_null=True, min_value=0, max_value=MAX_DELAY_SECONDS,
        help_text="Run this many seconds from now (state 'scheduled'); not with scheduled_at")
    queue = serializers.RegexField(
        QUEUE_NAME_PATTERN, required=False, allow_null=True, max_length=64,
        help_text="The named queue (default 'default'); every task of a batch in the same one")
    unique_for = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_UNIQUE_FOR,
        help_text="Seconds during which a create with the same unique key returns this task "
                  "(200) instead of creating one, unless it ended failed, dead_letter or "
                  "cancelled")
    unique_key = serializers.RegexField(
        UNIQUE_KEY_PATTERN.pattern, required=False, allow_null=True, max_length=MAX_UNIQUE_KEY,
        help_text="The unique key, scoped to the caller (default with unique_for: a hash of "
                  "queue, type and payload); alone, it holds until its task ends in any state")


class Progress(serializers.Serializer):
    """The latest attempt's last progress report."""

    done = serializers.FloatField(min_value=0)
    total = serializers.FloatField(min_value=0, allow_null=True)
    message = serializers.CharField(allow_blank=True, max_length=200)
    updated_at = serializers.DateTimeField()


class Task(serializers.Serializer):
    """A task as stored; optional fields appear once they apply."""

    id = serializers.UUIDField()
    type = serializers.CharField()
    payload = serializers.DictField()
    priority = EnumField(PRIORITY_NAMES, "PriorityNameEnum")
    queue = serializers.CharField(help_text="The named queue holding the task")
    state = EnumField(STATES, "TaskStateEnum")
    attempts = serializers.IntegerField(min_value=0)
    max_retries = serializers.IntegerField()
    timeout = serializers.IntegerField()
    metadata = serializers.DictField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    result = AnyJSONField(required=False)
    error = serializers.CharField(required=False)
    worker_id = serializers.CharField(required=False)
    started_at = serializers.DateTimeField(required=False)
    completed_at = serializers.DateTimeField(required=False)
    scheduled_at = serializers.DateTimeField(required=False)
    next_retry_at = serializers.DateTimeField(required=False)
    progress = Progress(required=False, help_text="Set once a running attempt reports progress")


class TaskBatchCreate(serializers.Serializer):
    """Up to 1,000 tasks, created all or none."""

    tasks = TaskCreate(many=True, min_length=1, max_length=1000)


class TaskBatch(serializers.Serializer):
    """The tasks a batch created (or, for a repeated Idempotency-Key, first created)."""

    tasks = Task(many=True)
    count = serializers.IntegerField(min_value=0)
    existing = serializers.ListField(
        child=serializers.IntegerField(min_value=0), required=False,
        help_text="Indexes of tasks not created: in their place is the existing task their "
                  "unique key names")


class PriorityCounts(serializers.Serializer):
    """A count for each of the four priorities."""

    critical = serializers.IntegerField(min_value=0)
    high = serializers.IntegerField(min_value=0)
    normal = serializers.IntegerField(min_value=0)
    low = serializers.IntegerField(min_value=0)


class QueueStat(serializers.Serializer):
    """One priority's queue."""

    depth = serializers.IntegerField(min_value=0, help_text="Pending tasks")
    priority = serializers.IntegerField(min_value=0, max_value=3)
    scheduled = serializers.IntegerField(min_value=0, help_text="Scheduled and retrying tasks")
    paused = serializers.BooleanField()
    queued = serializers.IntegerField(min_value=0, help_text="Pending tasks (same as depth)")
    pending_unacked = serializers.IntegerField(
        min_value=0, help_text="Tasks of this priority running now (leased to a worker)")


class QueueStats(serializers.Serializer):
    """Every priority's queue."""

    critical = QueueStat()
    high = QueueStat()
    normal = QueueStat()
    low = QueueStat()


class QueueTotals(serializers.Serializer):
    """Sums over the priorities and the cluster-wide counters, read with the queues."""

    queued = serializers.IntegerField(min_value=0, help_text="Pending tasks")
    pending_unacked = serializers.IntegerField(min_value=0, help_text="Running tasks")
    scheduled = serializers.IntegerField(min_value=0, help_text="Scheduled and retrying tasks")
    dlq_size = serializers.IntegerField(min_value=0, help_text="Dead-letter entries")
    submitted = serializers.IntegerField(min_value=0, help_text="Tasks created, ever")
    completed = serializers.IntegerField(min_value=0, help_text="Tasks that succeeded, ever")
    failed = serializers.IntegerField(
        min_value=0, help_text="Tasks that ended failed or dead-lettered, ever")
    retries = serializers.IntegerField(min_value=0, help_text="Attempts retried, ever")
    cancelled = serializers.IntegerField(min_value=0, help_text="Tasks cancelled, ever")


class NamedQueue(serializers.Serializer):
    """One named queue, summed over its shards."""

    name = serializers.CharField()
    shards = serializers.IntegerField(min_value=1)
    paused = serializers.BooleanField()
    depth = serializers.IntegerField(min_value=0, help_text="Pending tasks, all priorities")
    queue_depths = PriorityCounts(help_text="Pending tasks per priority")
    scheduled = serializers.IntegerField(min_value=0, help_text="Scheduled and retrying tasks")
    dlq_size = serializers.IntegerField(min_value=0, help_text="Its dead-letter entries")


class NamedQueueList(serializers.Serializer):
    """Every named queue (default first)."""

    named = NamedQueue(many=True)
    count = serializers.IntegerField(min_value=0)


class NamedQueueControl(NamedQueue):
    """A named queue after pause or resume."""

    message = EnumField(["queue paused", "queue resumed"], "QueuePauseMessageEnum")


class QueueSnapshot(serializers.Serializer):
    """The statistics clients of the original server read, from one consistent read."""

    queues = QueueStats()
    scheduled_count = serializers.IntegerField(min_value=0)
    dlq_size = serializers.IntegerField(min_value=0)
    totals = QueueTotals()
    named = NamedQueue(many=True, help_text="Each named queue (the figures above sum them)")


class QueueDepths(QueueSnapshot):
    """Pending tasks per priority, and the queue statistics."""

    queue_depths = PriorityCounts()
    total_pending = serializers.IntegerField(min_value=0)


class Healthy(serializers.Serializer):
    """Redis answers."""

    status = serializers.ChoiceField(choices=["healthy"])
    redis = serializers.ChoiceField(choices=["connected"])
    redis_maxmemory_policy = serializers.CharField(
        required=False, help_text="Only when Redis may evict keys, e.g. 'allkeys-lru'")
    warnings = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="Only when there is something to fix, e.g. an evicting maxmemory-policy")


class Unhealthy(serializers.Serializer):
    """Redis does not answer."""

    status = serializers.ChoiceField(choices=["unhealthy"])
    redis = serializers.ChoiceField(choices=["disconnected"])
    error = serializers.CharField(
        required=False, help_text="Why, e.g. 'connection refused' (admins only under "
        "PUBLIC_HEALTH)")
    message = serializers.CharField()


class Worker(serializers.Serializer):
    """A live worker (heartbeat within the heartbeat timeout)."""

    id = serializers.CharField()
    state = EnumField(WORKER_STATES, "WorkerStateEnum")
    started_at = serializers.DateTimeField(allow_null=True)
    last_heartbeat = serializers.DateTimeField(allow_null=True)
    active_tasks = serializers.IntegerField(min_value=0)
    concurrency = serializers.IntegerField(min_value=0)
    hostname = serializers.CharField(allow_blank=True)
    pid = serializers.IntegerField(allow_null=True)
    processed = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)
    priorities = serializers.ListField(child=EnumField(PRIORITY_NAMES, "PriorityNameEnum"))


class WorkerControl(Worker):
    """A worker after pause or resume."""

    message = serializers.ChoiceField(choices=["worker paused", "worker resumed"])
    worker_id = serializers.CharField(help_text="Same as id")


class WorkerList(serializers.Serializer):
    """Every live worker."""

    workers = Worker(many=True)
    count = serializers.IntegerField(min_value=0)


class Queues(QueueSnapshot):
    """Queue statistics."""

    total_depth = serializers.IntegerField(min_value=0)
    running = serializers.IntegerField(min_value=0, help_text="Tasks leased to workers")


class QueueControl(serializers.Serializer):
    """A queue after pause or resume."""

    queue = EnumField(PRIORITY_NAMES, "PriorityNameEnum")
    priority = serializers.IntegerField(min_value=0, max_value=3)
    paused = serializers.BooleanField()
    message = EnumField(["queue paused", "queue resumed"], "QueuePauseMessageEnum")


class QueuePurged(serializers.Serializer):
    """How many pending tasks a purge cancelled."""

    message = serializers.ChoiceField(choices=["queue purged"])
    queue = EnumField(PRIORITY_NAMES, "PriorityNameEnum")
    priority = serializers.IntegerField(min_value=0, max_value=3)
    purged_count = serializers.IntegerField(min_value=0)


class DLQTask(Task):
    """The dead task (only id and state when its record is gone)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            field.required = name in ("id", "state")


class DLQEntry(serializers.Serializer):
    """One dead-letter entry."""

    task = DLQTask()
    reason = serializers.CharField(allow_blank=True)
    added_at = serializers.DateTimeField()
    message_id = serializers.CharField()
    task_id = serializers.CharField(help_text="Same as task.id")
    task_type = serializers.CharField(allow_blank=True, help_text="The task's type")


class DLQPage(serializers.Serializer):
    """A page of the dead-letter queue, newest first."""

    entries = DLQEntry(many=True)
    size = serializers.IntegerField(min_value=0, help_text="All entries in the DLQ")
    next_cursor = serializers.CharField(allow_null=True,
                                        help_text="Pass as ?cursor= for the next page")


class DLQRetry(serializers.Serializer):
    """Retry one task (task_id, or the entry's message_id) or every task (retry_all: true)."""

    task_id = serializers.CharField(required=False)
    message_id = serializers.CharField(required=False)
    retry_all = serializers.BooleanField(required=False)


class DLQRetried(serializers.Serializer):
    """What was re-queued."""

    message = serializers.ChoiceField(choices=["task re-queued", "tasks re-queued"])
    task_id = serializers.CharField(required=False)
    retried_count = serializers.IntegerField(required=False, min_value=0)


class TaskRetried(serializers.Serializer):
    """The task, back in its queue under its own id."""

    message = serializers.ChoiceField(choices=["task re-queued"])
    task_id = serializers.CharField()
    task = Task()


class DLQCleared(serializers.Serializer):
    """The DLQ is empty; the dead tasks' records are gone."""

    message = serializers.ChoiceField(choices=["DLQ cleared"])
    cleared_count = serializers.IntegerField(min_value=0)


class Credentials(serializers.Serializer):
    """A user's credentials."""

    username = serializers.CharField()
    password = serializers.CharField()


class TokenPair(serializers.Serializer):
    """A JWT access token (Authorization: Bearer) and the refresh token that renews it."""

    access = serializers.CharField()
    refresh = serializers.CharField()


class Refresh(serializers.Serializer):
    """A refresh token."""

    refresh = serializers.CharField()


class AccessToken(serializers.Serializer):
    """A fresh access token."""

    access = serializers.CharField()


class Revoke(serializers.Serializer):
    """A refresh token to revoke; ``everywhere`` also revokes its user's other refresh tokens."""

    refresh = serializers.CharField()
    everywhere = serializers.BooleanField(required=False, default=False)


class Revoked(serializers.Serializer):
    """How many refresh tokens are now revoked."""

    revoked = serializers.IntegerField()


# -- periodic schedules ------------------------------------------------------------------


class ScheduleWrite(serializers.Serializer):
    """A schedule's definition (POST, PUT; PATCH sends any of the fields)."""

    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", required=False,
                                  allow_null=True,
                                  help_text="The path names it for PUT and PATCH (if given, "
                                            "the same)")
    type = serializers.CharField(required=False, help_text="Task type (or give task)")
    task = serializers.CharField(required=False,
                                 help_text="A Django task's path, instead of type")
    payload = serializers.DictField(required=False, allow_null=True,
                                    help_text="The tasks' payload (with type)")
    args = serializers.ListField(required=False, allow_null=True,
                                 help_text="The Django task's positional arguments")
    kwargs = serializers.DictField(required=False, allow_null=True,
                                   help_text="The Django task's keyword arguments")
    cron = serializers.CharField(required=False, allow_null=True,
                                 help_text="5-field cron expression (exactly one of cron, every)")
    every = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                     max_value=MAX_EVERY,
                                     help_text="Interval in seconds (exactly one of cron, every)")
    timezone = serializers.CharField(required=False, allow_null=True,
                                     help_text="IANA time zone of cron (default UTC)")
    priority = PriorityInputField(required=False)
    queue = serializers.CharField(required=False, allow_null=True,
                                  help_text="Queue of the tasks (default 'default')")
    max_retries = serializers.IntegerField(
        required=False, allow_null=True, min_value=MAX_RETRIES_RANGE[0],
        max_value=MAX_RETRIES_RANGE[1])
    timeout = serializers.IntegerField(
        required=False, allow_null=True, min_value=TIMEOUT_RANGE[0], max_value=TIMEOUT_RANGE[1])
    catchup = serializers.ChoiceField(choices=["latest", "all", "none"], required=False,
                                      allow_null=True,
                                      help_text="Ticks missed while no worker ran: one task "
                                                "for the newest (latest), one each, at most "
                                                "100 (all), or none")
    enabled = serializers.BooleanField(required=False, allow_null=True,
                                       help_text="False: created paused")


class ScheduleCreate(ScheduleWrite):
    """A new schedule's definition (POST): its name is required."""

    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
                                  help_text="Unique in the namespace")


class Schedule(serializers.Serializer):
    """A schedule: its definition and state."""

    name = serializers.CharField()
    type = serializers.CharField(required=False, help_text="Set unless task is")
    task = serializers.CharField(required=False, help_text="A Django task's path")
    payload = serializers.DictField(required=False)
    args = serializers.ListField(required=False)
    kwargs = serializers.DictField(required=False)
    cron = serializers.CharField(allow_null=True)
    every = serializers.IntegerField(allow_null=True)
    timezone = serializers.CharField()
    priority = EnumField(PRIORITY_NAMES, "PriorityNameEnum")
    queue = serializers.CharField()
    max_retries = serializers.IntegerField()
    timeout = serializers.IntegerField()
    catchup = serializers.ChoiceField(choices=["latest", "all", "none"])
    enabled = serializers.BooleanField()
    paused = serializers.BooleanField(help_text="True while disabled")
    next_run_at = serializers.DateTimeField(allow_null=True,
                                            help_text="Next tick (null while paused)")
    last_run_at = serializers.DateTimeField(allow_null=True,
                                            help_text="When its last task was created")
    last_task_id = serializers.UUIDField(allow_null=True)
    last_scheduled_for = serializers.DateTimeField(allow_null=True,
                                                   help_text="The tick of its last task")
    error = serializers.CharField(allow_null=True,
                                  help_text="A worker's report, e.g. no handler for the type")
    origin = serializers.ChoiceField(choices=["api", "settings"])
    version = serializers.IntegerField(help_text="Changes with every change of the definition")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ScheduleList(serializers.Serializer):
    """Every schedule, by name."""

    schedules = Schedule(many=True)
    count = serializers.IntegerField(min_value=0)


class ScheduleDeleted(serializers.Serializer):
    """The schedule is gone (the tasks it created stay)."""

    message = serializers.ChoiceField(choices=["schedule deleted"])
    name = serializers.CharField()


class ScheduleTriggered(serializers.Serializer):
    """One run now: its task."""

    message = serializers.ChoiceField(choices=["schedule triggered"])
    name = serializers.CharField()
    task_id = serializers.UUIDField()


class WorkflowCreate(serializers.Serializer):
    """A chain (``chain``: steps) or a group (``group``: steps, optional ``then``: a step);
    a step is a task body (without queue, scheduled_at, delay, unique_for, unique_key) or a
    nested chain or group.  The schema is written out in schema.py (it is recursive)."""

    chain = serializers.ListField(child=serializers.DictField(), required=False)
    group = serializers.ListField(child=serializers.DictField(), required=False)
    then = serializers.DictField(required=False)
    queue = serializers.RegexField(QUEUE_NAME_PATTERN, required=False, max_length=64)


class WorkflowStep(serializers.Serializer):
    """One task of a workflow."""

    index = serializers.IntegerField(min_value=0)
    task_id = serializers.UUIDField()
    type = serializers.CharField()
    state = serializers.ChoiceField(choices=["waiting", "pending", "scheduled", "running",
                                             "retrying", "completed", "failed", "dead_letter",
                                             "cancelled"],
                                    help_text="'waiting': its task is created when the steps "
                                              "it waits on have completed")
    after = serializers.ListField(child=serializers.IntegerField(min_value=0),
                                  help_text="The steps it waits on, in the order of its "
                                            "parent_results")


class Workflow(serializers.Serializer):
    """A workflow and each step's task."""

    id = serializers.UUIDField()
    state = serializers.ChoiceField(choices=["pending", "running", "completed", "failed",
                                             "cancelled"])
    queue = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    failed_step = serializers.UUIDField(allow_null=True,
                                        help_text="The task whose failure failed the workflow")
    step_count = serializers.IntegerField(min_value=1)
    step_states = serializers.DictField(child=serializers.IntegerField(min_value=0))
    structure = serializers.JSONField(help_text="The request's shape, each task body "
                                                "replaced by its step index")
    steps = WorkflowStep(many=True)
class TypeLimitWrite(serializers.Serializer):
    """A type's limits: concurrency, rate or both (no other field)."""

    concurrency = serializers.IntegerField(
        required=False, min_value=1, max_value=1_000_000,
        help_text="At most this many attempts of the type running at once")
    rate = serializers.RegexField(
        r"^[1-9][0-9]{0,8}/[smh]$", required=False,
        help_text='At most N starts per second, minute or hour ("100/s"): a token bucket of '
                  "N tokens refilled at N per window")


class TypeLimitState(serializers.Serializer):
    """A limited type: its limits (null: none) and its attempts running and tasks parked."""

    type = serializers.CharField()
    concurrency = serializers.IntegerField(min_value=1, allow_null=True)
    rate = serializers.CharField(allow_null=True)
    running = serializers.IntegerField(min_value=0,
                                       help_text="Attempts of the type running (counted)")
    parked = serializers.IntegerField(
        min_value=0, help_text="Its pending tasks waiting for the limit (in the depths)")


class TypeLimitList(serializers.Serializer):
    """Every limited type, by name."""

    types = TypeLimitState(many=True)
    count = serializers.IntegerField(min_value=0)
