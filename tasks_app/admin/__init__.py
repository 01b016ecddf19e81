"""Django admin for taskqueue: API keys (in SQL) and the dead-letter queue (in Redis).

``django.contrib.admin``'s autodiscovery imports this package; importing its modules
registers their ``ModelAdmin``s.
"""

from tasks_app.admin import api_keys, dead_letters  # noqa: F401  (registers them)
