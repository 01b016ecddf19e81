"""Database models of the Django edge: API keys created in the Django admin, and the
dead-letter queue and workflows as unmanaged models (their rows live in Redis, never in SQL)."""

from __future__ import annotations

from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class APIKey(AbstractAPIKey):
    """A client key for the REST API, stored as a SHA-512 hash (the key is shown once)."""

    is_admin = models.BooleanField(
        default=False, help_text="Admin keys may also call the /admin/ endpoints."
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"


class DeadLetterEntry(models.Model):
    """A dead-lettered task (stored in the ``tq:{ns}:dlq`` stream, not in the database).

    The model exists for the Django admin (a section, a changelist URL) and for its
    permissions; ``tasks_app.admin.dead_letters`` reads and changes the entries through
    the Inspector.
    """

    task_id = models.CharField(max_length=64, primary_key=True)

    class Meta:
        managed = False
        verbose_name = "dead-letter entry"
        verbose_name_plural = "dead letter queue"
        default_permissions = ("view", "delete")
        permissions = [("retry_deadletterentry", "Can retry dead-lettered tasks")]

    def __str__(self) -> str:
        return self.task_id


class Workflow(models.Model):
    """A chain or group of tasks (stored in its queue shard's hash, not in the database).

    The model exists for the Django admin (a section) and for its permissions;
    ``tasks_app.admin.workflows`` reads and cancels workflows through ``producer``.
    """

    id = models.CharField(max_length=64, primary_key=True)

    class Meta:
        managed = False
        default_permissions = ("view",)
        permissions = [("cancel_workflow", "Can cancel workflows")]

    def __str__(self) -> str:
        return self.id
