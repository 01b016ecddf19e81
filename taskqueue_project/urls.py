"""Root URLconf; /admin/ is reserved for the REST admin API, Django's admin lives elsewhere."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from taskqueue_project.home import home

urlpatterns: list[URLPattern | URLResolver] = [
    path("", home, name="home"),  # links to everything below
    path("django-admin/", admin.site.urls),
    # The REST API, /metrics and /dashboard/: the one include any site uses.
    path("", include("tasks_app.urls")),
]
