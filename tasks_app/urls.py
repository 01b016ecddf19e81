"""Everything taskqueue serves over HTTP, for one ``include()`` under any prefix.

    path("queue/", include("tasks_app.urls"))   # the API, /metrics, the dashboard

Names live in the ``taskqueue`` namespace (``reverse("taskqueue:health")``).
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from tasks_app.metrics.view import metrics

app_name = "taskqueue"

urlpatterns: list[URLPattern | URLResolver] = [
    path("metrics", metrics, name="metrics"),
    path("dashboard/", include("tasks_app.dashboard")),
    path("", include("tasks_app.api.urls")),
]
