"""The one exception hierarchy of the queue core."""

from __future__ import annotations


class TaskQueueError(Exception):
    """Base class of every error the queue raises."""


class TaskNotFound(TaskQueueError):
    """No task with that id exists."""


class InvalidTransition(TaskQueueError):
    """The task's current state does not allow the requested change."""

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class NotCancellable(InvalidTransition):
    """Only pending, scheduled and retrying tasks can be cancelled."""


class NotRetryable(InvalidTransition):
    """Only failed and dead-lettered tasks can be retried."""


class StaleLease(TaskQueueError):
    """A worker reported on an attempt whose lease was taken over (fencing)."""


class QueueFull(TaskQueueError):
    """Enqueue refused: the pending backlog is at its configured limit."""


class UnknownTaskType(TaskQueueError):
    """No handler is registered for the task type."""


class ValidationError(TaskQueueError):
    """A task's fields are invalid; the message names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class QueueNotFound(TaskQueueError):
    """No queue of that name is configured or was ever used."""


class WorkerNotFound(TaskQueueError):
    """No live worker with that id is registered."""


class NotInDeadLetterQueue(TaskQueueError):
    """The task is not in the dead-letter queue."""


class BrokerUnavailable(TaskQueueError):
    """Redis cannot be reached."""


class NonRetryableError(Exception):
    """Raise from a handler to fail the task for good, without retries."""


class ReplicaTimeout(BrokerUnavailable):
    """DURABILITY "replica": no replica confirmed a write within REPLICA_TIMEOUT.  The
    write happened on the master and may or may not survive a failover."""



class ScheduleNotFound(TaskQueueError):
    """No periodic schedule of that name exists."""


class TypeLimitNotFound(TaskQueueError):
    """The task type has no limits."""


class ScheduleExists(TaskQueueError):
    """A periodic schedule of that name exists already."""


class ScheduleChanged(TaskQueueError):
    """The schedule changed since it was read (another writer got there first)."""


class WorkflowNotFound(TaskQueueError):
    """No workflow with that id exists (or the caller may not see it)."""


class WorkflowNotCancellable(InvalidTransition):
    """The workflow has completed: there is nothing left to cancel."""
