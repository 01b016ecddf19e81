"""The backend's first public path, kept for sites configured with it:
``"BACKEND": "tasks_app.backends.TaskQueueBackend"`` works as the newer
``"tasks_app.tasks_framework.TaskQueueBackend"`` does."""

from tasks_app.tasks_framework.backend import TaskQueueBackend

__all__ = ["TaskQueueBackend"]
