"""Server hardening: patches to daphne (Twisted) that a site turns on with one call.

:func:`harden_daphne` bounds what a client can make daphne hold: request bodies refused
before they are read (``body_limits``), a deadline for request headers (``header_timeout``)
and the unsent bytes of a WebSocket client that does not read (``backpressure``); it also
raises the open files limit.  ``tasks_app.routing.with_taskqueue()`` calls it when
``TASKQUEUE["HARDEN_SERVER"]`` is True (this repository's site turns it on); a host site
may instead call it itself.  Under another ASGI server it changes nothing but the limit.
"""

from __future__ import annotations

import resource

from tasks_app.server import backpressure, body_limits, header_timeout


def harden_daphne(api_prefixes: tuple[str, ...] | None = None) -> None:
    """Install every daphne patch once per process.

    ``api_prefixes`` are the REST API's path prefixes where the site mounts it
    (``tasks_app.routing.api_prefixes()``), which get ``API_MAX_BODY_BYTES`` as their limit.
    """
    raise_open_files_limit()  # each client is a descriptor
    body_limits.install(api_prefixes)  # refuse oversized bodies before daphne reads them
    header_timeout.install()  # close connections whose headers do not arrive in time
    backpressure.install()  # bound what daphne queues for a client that does not read


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (each client is a descriptor)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, hard
        return target, hard
    return soft, hard
