"""Static files served by daphne itself (DEBUG or not), paths outside the static dirs a 404."""

from __future__ import annotations

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import SuspiciousFileOperation
from django.http import FileResponse, Http404, HttpRequest, HttpResponse


class StaticFilesHandler(ASGIStaticFilesHandler):
    """Django's handler, but ``/static/%2e%2e/...`` is a missing file, not a 500."""

    def serve(self, request: HttpRequest) -> HttpResponse | FileResponse:
        """Serve the file; a path that escapes every static folder is not found."""
        try:
            return super().serve(request)
        except SuspiciousFileOperation:
            raise Http404("not found") from None
