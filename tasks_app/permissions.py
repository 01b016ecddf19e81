"""Permission names shared by the Django admin, the REST admin API and the dashboard.

The unmanaged models declare them (``models.DeadLetterEntry``, ``models.Workflow``,
``workers_app.models``); everything that checks one reads its name here, so the surfaces
cannot drift apart.
"""

from __future__ import annotations

DLQ_VIEW = "tasks_app.view_deadletterentry"
DLQ_RETRY = "tasks_app.retry_deadletterentry"
DLQ_DELETE = "tasks_app.delete_deadletterentry"
WORKER_VIEW = "workers_app.view_worker"
WORKER_PAUSE = "workers_app.pause_worker"
QUEUE_VIEW = "workers_app.view_queue"
QUEUE_PAUSE = "workers_app.pause_queue"
QUEUE_PURGE = "workers_app.purge_queue"
SCHEDULE_VIEW = "workers_app.view_schedule"
SCHEDULE_ADD = "workers_app.add_schedule"
SCHEDULE_CHANGE = "workers_app.change_schedule"  # also pause and resume
SCHEDULE_DELETE = "workers_app.delete_schedule"
SCHEDULE_TRIGGER = "workers_app.trigger_schedule"
WORKFLOW_VIEW = "tasks_app.view_workflow"  # everyone's workflows (see visibility.py)
WORKFLOW_CANCEL = "tasks_app.cancel_workflow"
WORKFLOW_READ = (WORKFLOW_VIEW,)
WORKFLOW_CANCELLING = (WORKFLOW_VIEW, WORKFLOW_CANCEL)
"""What a staff user needs to reach past its own workflows: the same in the REST API, the
Django admin and the dashboard."""

# The dashboard shows queues, workers and the DLQ's size together: it needs all three.
DASHBOARD = (QUEUE_VIEW, WORKER_VIEW, DLQ_VIEW)


def missing(names: list[str]) -> str:
    """The refusal message for a user without ``names``."""
    noun = "permission" if len(names) == 1 else "permissions"
    return f"missing {noun} {', '.join(names)}"
