"""Django admin for taskqueue: API keys (in SQL), the dead-letter queue and workflows (in
Redis).

``django.contrib.admin``'s autodiscovery imports this package; importing its modules
registers their ``ModelAdmin``s.
"""

from tasks_app.admin import api_keys, dead_letters, workflows  # noqa: F401  (registers them)
