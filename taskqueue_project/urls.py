"""Root URLconf; /admin/ is reserved for the REST admin API, Django's admin lives elsewhere."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from tasks_app.metrics_view import metrics

urlpatterns: list[URLPattern | URLResolver] = [
    path("django-admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("dashboard/", include("tasks_app.dashboard")),
    path("", include("tasks_app.api.urls")),
]
