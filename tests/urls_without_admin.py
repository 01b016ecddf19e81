"""A URLconf with taskqueue under a prefix but without the Django admin (test_checks)."""

from django.urls import URLResolver, include, path

urlpatterns: list[URLResolver] = [path("queue/", include("tasks_app.urls"))]
