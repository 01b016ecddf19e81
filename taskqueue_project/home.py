"""The landing page at ``/``: what runs here and where to find it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def home(request: HttpRequest) -> HttpResponse:
    """Links to the dashboard, the API docs, the Django admin and /metrics."""
    return render(request, "taskqueue_project/home.html")
