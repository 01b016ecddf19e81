"""``dashboard/``: the live dashboard for staff (server-rendered state, then ``ws``).

It shows queues, workers and the DLQ's size together, so it needs the three view
permissions (``permissions.DASHBOARD``); staff missing one get a JSON 403 naming it.

Staff who also hold ``permissions.SCHEDULE_VIEW`` see the periodic schedules (next runs,
and the state of each one's last task); the others' snapshots leave them out.
Likewise ``permissions.WORKFLOW_VIEW`` shows the latest workflows (read-only: the admin
has the actions): every client's, as the REST API shows them to staff holding it
(``visibility.workflow_scope``); staff without it see no panel.

The page embeds a snapshot (queue depths, named queues, per-type limits, totals, workers,
DLQ size) and a
short-lived socket token (``ws_auth.SocketToken``: ``ws`` only, bound to the session);
the browser then follows ``ws`` alone.
``dashboard/snapshot`` gives a fresh snapshot and token after a reconnect.
Paths are relative to where the site included ``tasks_app.urls``.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.views.decorators.cache import never_cache

from tasks_app import permissions, producer
from tasks_app.core.errors import BrokerUnavailable
from tasks_app.core.inspect import QueueStats
from tasks_app.core.workflows import Workflow
from tasks_app.live import auth as ws_auth
from tasks_app.routing import websocket_url_path

DLQ_ADMIN_URL_NAME = "admin:tasks_app_deadletterentry_changelist"
QUEUES_ADMIN_URL_NAME = "admin:workers_app_queue_changelist"
SCHEDULES_ADMIN_URL_NAME = "admin:workers_app_schedule_changelist"
WORKFLOWS_ADMIN_URL_NAME = "admin:tasks_app_workflow_changelist"
WORKFLOW_ADMIN_URL_NAME = "admin:tasks_app_workflow_change"
SCHEDULES_SHOWN = 20
"""The schedules panel lists the active schedules whose next run is soonest, then the
paused ones, this many in all."""
FEED_SIZE = 100
WINDOW_SECONDS = 120
WORKFLOWS_SHOWN = 20
"""The workflows panel lists this many of the latest workflows."""


def snapshot(schedules: bool = False, workflows: bool = False) -> dict[str, Any]:
    """Queues, totals and workers (and the schedules and the workflows when asked) as Redis
    has them now (or the error if it is away)."""
    try:
        inspector = producer.inspector()
        queues = inspector.queue_stats()
        totals = inspector.totals()
        workers = inspector.workers()
        named = producer.named_queues(inspector)
        limits = [s.to_dict() for s in producer.type_limits().all()]
        panel = schedule_panel() if schedules else None
        flows = workflow_panel() if workflows else None
    except BrokerUnavailable as exc:
        return {"server_time": _now_ms(), "error": f"Redis is unreachable: {exc}"}
    state = {
        "server_time": _now_ms(),
        "queues": [_queue_row(q) for q in queues],
        "named": [q.to_dict() for q in named],
        "type_limits": limits,
        "totals": totals,
        "dlq_size": totals["dlq_size"],
        "workers": [w.to_dict() for w in workers],
    }
    if panel is not None:
        state["schedules"] = panel
    if flows is not None:
        state["workflows"] = flows
    return state


def workflow_panel() -> list[dict[str, Any]]:
    """The latest ``WORKFLOWS_SHOWN`` workflows, newest first: state, steps done of all,
    where a failed one stopped and its admin page."""
    return [_workflow_row(flow) for flow in producer.workflows().recent(WORKFLOWS_SHOWN)]


def _workflow_row(flow: Workflow) -> dict[str, Any]:
    """One line of the workflows panel."""
    failed = next((s for s in flow.steps if s.task_id == flow.failed_step), None)
    return {"id": flow.id, "state": flow.state, "queue": flow.queue,
            "done": sum(s.state == "completed" for s in flow.steps), "total": len(flow.steps),
            "failed_step": None if failed is None else {
                "index": failed.index, "task_id": failed.task_id, "type": failed.type,
                "state": failed.state},
            "url": _reverse_or_none(WORKFLOW_ADMIN_URL_NAME, flow.id)}


def schedule_panel() -> dict[str, Any]:
    """The soonest ``SCHEDULES_SHOWN`` schedules (the API's shape) with their last task's
    state (``last_state``: a task state, "gone", or None before the first run)."""
    found = producer.schedules().all()
    found.sort(key=lambda s: (s.paused, s.next_run_at or 0, s.name))
    shown = found[:SCHEDULES_SHOWN]
    states = producer.last_task_states(shown)
    return {"count": len(found),
            "items": [{**s.to_dict(), "last_state": states.get(s.name)} for s in shown]}


def _queue_row(stats: QueueStats) -> dict[str, Any]:
    """What the page draws of a queue: the API's queue stats it needs, under the queue's name."""
    data = stats.to_dict()
    return {"name": stats.name, "depth": data["depth"], "scheduled": data["scheduled"],
            "paused": data["paused"]}


def socket_token(request: HttpRequest) -> str:
    """A short-lived token for ``/ws?token=`` and this session only (accepted with auth on
    or off; refused by the REST API)."""
    user = request.user
    key = request.session.session_key
    if not isinstance(user, AbstractBaseUser) or not key:
        raise PermissionDenied("sign in first")
    return ws_auth.socket_token(user, key)


def page_config(request: HttpRequest) -> dict[str, Any]:
    """What the page's script needs besides the snapshot."""
    return {
        "ws_path": websocket_url_path(),
        "token": socket_token(request),
        "snapshot_url": reverse("taskqueue:dashboard-snapshot"),
        "dlq_url": _reverse_or_none(DLQ_ADMIN_URL_NAME),
        "queues_url": _reverse_or_none(QUEUES_ADMIN_URL_NAME),
        "schedules_url": _reverse_or_none(SCHEDULES_ADMIN_URL_NAME),
        "workflows_url": _reverse_or_none(WORKFLOWS_ADMIN_URL_NAME),
        "feed_size": FEED_SIZE,
        "window_seconds": WINDOW_SECONDS,
    }


def _reverse_or_none(name: str, *args: str) -> str | None:
    """The URL named ``name``, or None when the site does not route it (e.g. no admin)."""
    try:
        return reverse(name, args=args or None)
    except NoReverseMatch:
        return None


def login_url() -> str:
    """Where staff sign in: the admin's login page, or ``settings.LOGIN_URL`` without the
    admin's URLs (check taskqueue.W004)."""
    return _reverse_or_none("admin:login") or str(settings.LOGIN_URL)


def permission_refusal(request: HttpRequest) -> JsonResponse | None:
    """A 403 naming the dashboard's view permissions the user lacks, or None."""
    missing = [name for name in permissions.DASHBOARD if not request.user.has_perm(name)]
    if not missing:
        return None
    return JsonResponse({"error": "Forbidden", "message": permissions.missing(missing)},
                        status=403)


def may_see_schedules(request: HttpRequest) -> bool:
    """Whether the page shows the schedules panel (the schedules' view permission)."""
    return request.user.has_perm(permissions.SCHEDULE_VIEW)


def may_see_workflows(request: HttpRequest) -> bool:
    """Whether the page shows the workflows panel (the workflows' view permission)."""
    return request.user.has_perm(permissions.WORKFLOW_VIEW)


@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    """The dashboard page with its initial state embedded (staff with the view permissions;
    other staff get a 403, everyone else is sent to sign in)."""
    user = request.user
    if not (user.is_active and user.is_staff):
        return redirect_to_login(request.get_full_path(), login_url())
    refusal = permission_refusal(request)
    if refusal is not None:
        return refusal
    state = snapshot(may_see_schedules(request), may_see_workflows(request))
    config = page_config(request)
    context = {"config": config, "initial": state, "dlq_url": config["dlq_url"],
               "queues_url": config["queues_url"], "schedules_url": config["schedules_url"],
               "show_schedules": may_see_schedules(request),
               "show_workflows": may_see_workflows(request),
               "workflows_url": config["workflows_url"],
               "login_url": login_url(), "admin_url": _reverse_or_none("admin:index"),
               "error": state.get("error")}
    return render(request, "tasks_app/dashboard.html", context)


@never_cache
def snapshot_view(request: HttpRequest) -> JsonResponse:
    """A fresh snapshot and socket token, for the page to resynchronise after a reconnect."""
    user = request.user
    if not (user.is_active and user.is_staff):
        return JsonResponse({"error": "Forbidden", "message": "staff login required"},
                            status=403)
    refusal = permission_refusal(request)
    if refusal is not None:
        return refusal
    state = snapshot(may_see_schedules(request), may_see_workflows(request))
    status = 503 if "error" in state else 200
    return JsonResponse({"token": socket_token(request), "snapshot": state}, status=status)


def _now_ms() -> int:
    return int(time.time() * 1000)


urlpatterns: list[URLPattern] = [
    path("", dashboard, name="dashboard"),
    path("snapshot", snapshot_view, name="dashboard-snapshot"),
]
