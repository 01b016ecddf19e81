"""Workers and priority queues as unmanaged models: their state lives in Redis, never in SQL.

They exist for the Django admin (sections, URLs) and for their permissions;
``workers_app.admin`` reads and changes them through the Inspector.
"""

from __future__ import annotations

from django.db import models


class Worker(models.Model):
    """A registered worker (its record lives in Redis)."""

    id = models.CharField(max_length=200, primary_key=True)

    class Meta:
        managed = False
        default_permissions = ("view",)
        permissions = [("pause_worker", "Can pause and resume workers")]

    def __str__(self) -> str:
        return self.id


class Queue(models.Model):
    """One priority's queue (its sets live in Redis)."""

    priority = models.PositiveSmallIntegerField(primary_key=True)

    class Meta:
        managed = False
        default_permissions = ("view",)
        permissions = [("pause_queue", "Can pause and resume queues"),
                       ("purge_queue", "Can purge queues (cancel their pending tasks)")]

    def __str__(self) -> str:
        return str(self.priority)


class Schedule(models.Model):
    """A periodic schedule (its definition and state live in Redis)."""

    name = models.CharField(max_length=128, primary_key=True)

    class Meta:
        managed = False
        default_permissions = ("view", "add", "change", "delete")
        permissions = [("trigger_schedule", "Can run a schedule now")]

    def __str__(self) -> str:
        return self.name
