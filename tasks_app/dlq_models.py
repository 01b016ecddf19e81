"""The dead-letter queue as an unmanaged model: its rows live in Redis, never in SQL.

The model exists for the Django admin (a section, a changelist URL) and for its
permissions; ``tasks_app.dlq_admin`` reads and changes the entries through the Inspector.
"""

from __future__ import annotations

from django.db import models


class DeadLetterEntry(models.Model):
    """A dead-lettered task (stored in the ``tq:{ns}:dlq`` stream, not in the database)."""

    task_id = models.CharField(max_length=64, primary_key=True)

    class Meta:
        managed = False
        app_label = "tasks_app"
        verbose_name = "dead-letter entry"
        verbose_name_plural = "dead letter queue"
        default_permissions = ("view", "delete")
        permissions = [("retry_deadletterentry", "Can retry dead-lettered tasks")]

    def __str__(self) -> str:
        return self.task_id
