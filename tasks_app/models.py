"""Database models of the Django edge: API keys created in the Django admin."""

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
from tasks_app.dlq_models import DeadLetterEntry  # noqa: E402,F401
