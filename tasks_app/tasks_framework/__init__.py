"""Django's Tasks framework on taskqueue: ``@task`` functions run by taskqueue's workers.

    TASKS = {"default": {"BACKEND": "tasks_app.tasks_framework.TaskQueueBackend"}}

``backend`` is the enqueue side (``Task.enqueue``, ``get_result``), ``runner`` the worker
side (the handler that calls the function and sends Django's signals), ``results`` maps
task records onto ``TaskResult``, ``compat`` imports the framework from ``django.tasks``
(Django 6) or the ``django-tasks`` backport (Django 5.2).
"""

from tasks_app.tasks_framework.backend import TaskQueueBackend

__all__ = ["TaskQueueBackend"]
