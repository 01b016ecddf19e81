"""TASK_VISIBILITY: whose tasks a caller may see (task reads and cancels, /ws task events).

With ``"all"`` every client sees every task.  With ``"owner"`` a client sees only the
tasks it created (the task's ``owner``, named by :func:`principal_id`); admins, and
everyone while auth is off, still see all of them.

Workflows follow the same rule, except that a staff *user* sees and cancels other
clients' workflows only while holding the Django admin's permissions for the same thing
(``permissions.WORKFLOW_VIEW``, ``WORKFLOW_CANCEL``): :func:`workflow_scope`.
"""

from __future__ import annotations

from typing import Any

from tasks_app import permissions
from tasks_app.api.authentication import KeyPrincipal, is_admin_principal, principal_id
from tasks_app.conf import tq_settings

ALL = "all"
OWNER = "owner"


def viewer_scope(user: Any) -> str | None:
    """The owner whose tasks ``user`` may see, or None when it may see every task."""
    if tq_settings.TASK_VISIBILITY == ALL or not tq_settings.AUTH_ENABLED:
        return None
    return None if is_admin_principal(user) else principal_id(user)


def may_see(viewer: str | None, owner: str | None) -> bool:
    """True when a viewer (from :func:`viewer_scope`) may see a task with that owner."""
    return viewer is None or owner == viewer


def workflow_scope(user: Any, needed: tuple[str, ...]) -> str | None:
    """As :func:`viewer_scope`, for workflows: a staff user (not an admin key) lacking one
    of ``needed`` is scoped to its own workflows, as a client is."""
    scope = viewer_scope(user)
    if scope is not None or tq_settings.TASK_VISIBILITY == ALL or not tq_settings.AUTH_ENABLED:
        return scope
    if isinstance(user, KeyPrincipal) or all(user.has_perm(name) for name in needed):
        return None
    return principal_id(user)


def event_scopes(user: Any) -> tuple[str | None, str | None, bool]:
    """The /ws filter's (task owner, workflow owner, schedule events) for ``user``:
    :func:`viewer_scope`; :func:`workflow_scope` for reading (a staff user without the
    workflows' view permission gets only its own workflows' events, as from the REST API);
    schedule events for those who see every task, staff users (with "owner") only with
    the schedules' view permission, as ``GET /admin/schedules``.  Reads the database."""
    owner = viewer_scope(user)
    schedules = owner is None and (
        tq_settings.TASK_VISIBILITY == ALL or not tq_settings.AUTH_ENABLED
        or isinstance(user, KeyPrincipal) or user.has_perm(permissions.SCHEDULE_VIEW))
    return owner, workflow_scope(user, permissions.WORKFLOW_READ), schedules
