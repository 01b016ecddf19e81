"""The REST admin API asks a user's JWT for the same model permissions as the Django admin.

Real users in the test database, real tokens (from ``/api/v1/auth/token`` or signed the
same way), real Redis; each route is tried with no permission, with exactly its own, and
with one of its own missing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver

from tasks_app import permissions as perms
from tasks_app.api.tokens import access_for
from tasks_app.api.views.admin import AdminView
from tasks_app.conf import tq_settings
from tasks_app.core.limits import TypeLimit, TypeLimits
from tasks_app.core.schedules import Schedules, ScheduleSpec
from tasks_app.models import APIKey
from tests.api_support import Reply, broker, call, error, redis_snapshot
from tests.factories import dead_letter, register

pytestmark = pytest.mark.django_db

ADMIN_KEY = f"admin-{uuid.uuid4().hex}"
CLIENT_KEY = f"client-{uuid.uuid4().hex}"
WORKER = "worker-perm"
PASSWORD = "perm-test-pass-41c9"


@dataclass(frozen=True)
class Route:
    """One admin endpoint and the permissions a user needs for it (all of them)."""

    method: str
    path: str
    needs: tuple[str, ...]
    body: Any = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("GET", "/admin/dlq", (perms.DLQ_VIEW,)),
    Route("DELETE", "/admin/dlq", (perms.DLQ_VIEW, perms.DLQ_DELETE)),
    Route("POST", "/admin/dlq/retry", (perms.DLQ_VIEW, perms.DLQ_RETRY), {"retry_all": True}),
    Route("GET", "/admin/workers", (perms.WORKER_VIEW,)),
    Route("GET", f"/admin/workers/{WORKER}", (perms.WORKER_VIEW,)),
    Route("POST", f"/admin/workers/{WORKER}/pause", (perms.WORKER_VIEW, perms.WORKER_PAUSE)),
    Route("POST", f"/admin/workers/{WORKER}/resume", (perms.WORKER_VIEW, perms.WORKER_PAUSE)),
    Route("GET", "/admin/queues", (perms.QUEUE_VIEW,)),
    Route("POST", "/admin/queues/high/pause", (perms.QUEUE_VIEW, perms.QUEUE_PAUSE)),
    Route("POST", "/admin/queues/high/resume", (perms.QUEUE_VIEW, perms.QUEUE_PAUSE)),
    Route("GET", "/admin/schedules", (perms.SCHEDULE_VIEW,)),
    Route("GET", "/admin/schedules/perm-sched", (perms.SCHEDULE_VIEW,)),
    Route("PATCH", "/admin/schedules/perm-sched", (perms.SCHEDULE_VIEW, perms.SCHEDULE_CHANGE),
          {"every": 60}),
    Route("PUT", "/admin/schedules/perm-sched", (perms.SCHEDULE_VIEW, perms.SCHEDULE_CHANGE),
          {"type": "echo", "every": 30}),
    Route("POST", "/admin/schedules/perm-sched/pause",
          (perms.SCHEDULE_VIEW, perms.SCHEDULE_CHANGE)),
    Route("POST", "/admin/schedules/perm-sched/resume",
          (perms.SCHEDULE_VIEW, perms.SCHEDULE_CHANGE)),
    Route("POST", "/admin/schedules/perm-sched/trigger",
          (perms.SCHEDULE_VIEW, perms.SCHEDULE_TRIGGER)),
    Route("DELETE", "/admin/schedules/perm-sched", (perms.SCHEDULE_VIEW, perms.SCHEDULE_DELETE)),
    Route("GET", "/admin/named-queues", (perms.QUEUE_VIEW,)),
    Route("POST", "/admin/named-queues/default/pause", (perms.QUEUE_VIEW, perms.QUEUE_PAUSE)),
    Route("POST", "/admin/named-queues/default/resume", (perms.QUEUE_VIEW, perms.QUEUE_PAUSE)),
    Route("GET", "/admin/types", (perms.QUEUE_VIEW,)),
    Route("GET", "/admin/types/perm-type/limits", (perms.QUEUE_VIEW,)),
    Route("PUT", "/admin/types/perm-type/limits", (perms.QUEUE_VIEW, perms.QUEUE_PAUSE),
          {"concurrency": 3}),
    Route("DELETE", "/admin/types/perm-type/limits", (perms.QUEUE_VIEW, perms.QUEUE_PAUSE)),
    Route("DELETE", "/admin/types/perm-other/limits", (perms.QUEUE_VIEW, perms.QUEUE_PAUSE)),
]
ALL = sorted({name for route in ROUTES for name in route.needs})
IDS = [str(r) for r in ROUTES]


def auth_on() -> Any:
    return override_settings(TASKQUEUE={"REDIS_URL": tq_settings.REDIS_URL, "AUTH_ENABLED": True,
                                        "API_KEYS": [CLIENT_KEY], "ADMIN_API_KEYS": [ADMIN_KEY]})


@pytest.fixture(autouse=True)
def seeded() -> None:
    """A live worker and two dead-lettered tasks, so that every route has something to act on."""
    dead_letter(broker(), 2)
    register(broker(), WORKER)
    Schedules(broker()).create(ScheduleSpec("perm-sched", "echo", every=10))
    TypeLimits(broker()).set("perm-type", TypeLimit(concurrency=2))
    TypeLimits(broker()).set("perm-other", TypeLimit(rate="5/s"))


def user_with(*names: str, staff: bool = True, superuser: bool = False) -> User:
    """A new user holding exactly the permissions ``names`` ("app_label.codename")."""
    user = User.objects.create_user(f"u-{uuid.uuid4().hex[:8]}", password=PASSWORD,
                                    is_staff=staff, is_superuser=superuser)
    user.user_permissions.add(*(permission(name) for name in names))
    return user


def permission(name: str) -> Permission:
    app_label, codename = name.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def bearer(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_for(user)}"}


def signed_in(user: User) -> dict[str, str]:
    """Headers with an access token from ``POST /api/v1/auth/token`` (the user's password)."""
    reply = call("POST", "/api/v1/auth/token", {"username": user.username, "password": PASSWORD})
    assert reply.status == 200, reply.body
    return {"Authorization": f"Bearer {reply.body['access']}"}


def send(route: Route, headers: dict[str, str]) -> Reply:
    with auth_on():
        return call(route.method, route.path, route.body, **headers)


def refused_for_missing(reply: Reply, missing: list[str]) -> bool:
    noun = "permission" if len(missing) == 1 else "permissions"
    return error(reply) == (403, "Forbidden", f"missing {noun} {', '.join(missing)}")


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_staff_without_permissions_get_403_and_nothing_changes(route: Route) -> None:
    with auth_on():
        headers = signed_in(user_with())
    before = redis_snapshot()
    reply = send(route, headers)
    assert refused_for_missing(reply, list(route.needs)), reply.body
    assert redis_snapshot() == before


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_exactly_the_routes_permissions_open_it_and_nothing_else(route: Route) -> None:
    headers = bearer(user_with(*route.needs))
    assert send(route, headers).status == 200
    for other in ROUTES:
        if not set(other.needs) <= set(route.needs):
            missing = [name for name in other.needs if name not in route.needs]
            assert refused_for_missing(send(other, headers), missing), other


@pytest.mark.parametrize("route", [r for r in ROUTES if len(r.needs) > 1],
                         ids=[str(r) for r in ROUTES if len(r.needs) > 1])
def test_each_of_a_routes_permissions_is_required(route: Route) -> None:
    """As in the Django admin, acting needs the view permission too."""
    for lacking in route.needs:
        held = [name for name in route.needs if name != lacking]
        before = redis_snapshot()
        reply = send(route, bearer(user_with(*held)))
        assert refused_for_missing(reply, [lacking]), (route, lacking)
        assert redis_snapshot() == before


def test_permissions_from_a_group_count() -> None:
    group = Group.objects.create(name="dlq readers")
    group.permissions.add(permission(perms.DLQ_VIEW))
    user = user_with()
    user.groups.add(group)
    reply = send(ROUTES[0], bearer(User.objects.get(pk=user.pk)))
    assert reply.status == 200 and reply.body["size"] == 2


def test_superusers_may_do_everything() -> None:
    with auth_on():
        headers = signed_in(user_with(superuser=True))
    for route in ROUTES:
        assert send(route, headers).status == 200, route


@pytest.mark.parametrize("key", ["settings", "database"])
def test_admin_keys_may_do_everything(key: str) -> None:
    if key == "settings":
        headers = {"X-API-Key": ADMIN_KEY}
    else:
        headers = {"X-API-Key": APIKey.objects.create_key(name="ops", is_admin=True)[1]}
    for route in ROUTES:
        assert send(route, headers).status == 200, route


def test_non_staff_users_are_refused_even_with_every_permission() -> None:
    headers = bearer(user_with(*ALL, staff=False))
    before = redis_snapshot()
    for route in [*ROUTES, Route("GET", "/admin/health", ())]:
        assert error(send(route, headers)) == (403, "Forbidden",
                                               "admin credentials required"), route
    assert redis_snapshot() == before


def test_client_keys_are_refused() -> None:
    for route in ROUTES:
        assert error(send(route, {"X-API-Key": CLIENT_KEY}))[:2] == (403, "Forbidden"), route


def test_health_needs_a_staff_user_and_no_model_permission() -> None:
    health = Route("GET", "/admin/health", ())
    reply = send(health, bearer(user_with()))
    assert (reply.status, reply.body["status"]) == (200, "healthy")


DLQ_PAGE = "/django-admin/tasks_app/deadletterentry/"


def route_of(method: str, path: str) -> Route:
    """The route in ROUTES (looked up, so that adding routes moves nothing)."""
    [found] = [r for r in ROUTES if (r.method, r.path) == (method, path)]
    return found


# (Django admin request, the REST route that does the same)
SAME_THING = [
    (("GET", DLQ_PAGE, None), route_of("GET", "/admin/dlq")),
    (("POST", DLQ_PAGE, {"action": "clear_dlq", "post": "yes"}), route_of("DELETE", "/admin/dlq")),
    (("POST", DLQ_PAGE, {"action": "retry_all", "post": "yes"}),
     route_of("POST", "/admin/dlq/retry")),
    (("GET", "/django-admin/workers_app/worker/", None), route_of("GET", "/admin/workers")),
    (("POST", f"/django-admin/workers_app/worker/{WORKER}/pause/", None),
     route_of("POST", f"/admin/workers/{WORKER}/pause")),
    (("GET", "/django-admin/workers_app/queue/", None), route_of("GET", "/admin/queues")),
    (("POST", "/django-admin/workers_app/queue/high/pause/", None),
     route_of("POST", "/admin/queues/high/pause")),
    (("POST", "/django-admin/workers_app/queue/named/default/pause/", None),
     route_of("POST", "/admin/named-queues/default/pause")),
    (("POST", "/django-admin/workers_app/queue/named/default/resume/", None),
     route_of("POST", "/admin/named-queues/default/resume")),
    (("POST", "/django-admin/workers_app/queue/type-limits/",
      {"action": "set", "type": "perm-type", "concurrency": "3"}),
     route_of("PUT", "/admin/types/perm-type/limits")),
    (("POST", "/django-admin/workers_app/queue/type-limits/",
      {"action": "clear", "type": "perm-type"}),
     route_of("DELETE", "/admin/types/perm-other/limits")),
    (("GET", "/django-admin/workers_app/schedule/", None), route_of("GET", "/admin/schedules")),
    (("POST", "/django-admin/workers_app/schedule/perm-sched/pause/", None),
     route_of("POST", "/admin/schedules/perm-sched/pause")),
    (("POST", "/django-admin/workers_app/schedule/perm-sched/trigger/", None),
     route_of("POST", "/admin/schedules/perm-sched/trigger")),
]
"""(The schedules' pages and actions, delete and edit included, are compared one by one, on
a fresh schedule each, in tests/test_admin_schedules.py.)"""


@pytest.mark.parametrize("held", [(), *((name,) for name in ALL),
                                  *sorted({r.needs for r in ROUTES if len(r.needs) > 1})],
                         ids=lambda held: "+".join(n.split(".")[1] for n in held) or "none")
def test_the_django_admin_and_the_api_agree(held: tuple[str, ...]) -> None:
    """Whatever a staff user holds, an admin page or action is allowed exactly when the REST
    route doing the same thing is."""
    user = user_with(*held)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    for (method, page, form), route in SAME_THING:
        by_admin = getattr(client, method.lower())(page, form or {}).status_code
        by_api = send(route, bearer(user)).status
        assert by_admin in (200, 302, 403) and by_api in (200, 403), (page, by_admin, by_api)
        assert (by_admin != 403) == (by_api == 200), (held, page, route)


def admin_routes(patterns: list[URLPattern | URLResolver]) -> list[Any]:
    """The view class of every route the URLconf sends to an admin API view."""
    found = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += admin_routes(pattern.url_patterns)
        else:
            view = getattr(pattern.callback, "view_class", None)
            if view is not None and issubclass(view, AdminView):
                found.append(view)
    return found


def test_every_admin_view_declares_what_each_of_its_methods_needs() -> None:
    views = admin_routes(get_resolver().url_patterns)
    assert len(views) >= 9
    for view in views:
        handled = {m.upper() for m in view.http_method_names
                   if m not in ("options", "head") and hasattr(view, m)}
        assert handled <= set(view.required_permissions), view
        for names in view.required_permissions.values():
            for name in names:
                assert permission(name), name


def test_every_shared_permission_name_is_one_the_models_declare() -> None:
    names = [v for k, v in vars(perms).items() if k.isupper() and isinstance(v, str)]
    assert len(names) >= 7  # more come with new admin operations
    for name in names:
        permission(name)  # DoesNotExist otherwise


def test_a_method_a_view_forgets_to_declare_is_refused_to_users() -> None:
    """Fail closed: a staff user (even a superuser) gets 403; an admin key still works."""
    from django.urls import path
    from rest_framework.request import Request
    from rest_framework.response import Response

    class Undeclared(AdminView):
        def get(self, request: Request) -> Response:
            return Response({"ok": True})

    urlconf = type("urls", (), {"urlpatterns": [path("admin/undeclared", Undeclared.as_view())]})
    route = Route("GET", "/admin/undeclared", ())
    with override_settings(ROOT_URLCONF=urlconf):
        reply = send(route, bearer(user_with(superuser=True)))
        assert error(reply) == (403, "Forbidden", "no permission is declared for GET")
        assert send(route, {"X-API-Key": ADMIN_KEY}).status == 200


def test_with_auth_off_everything_is_allowed() -> None:
    assert tq_settings.AUTH_ENABLED is False
    for route in ROUTES:
        assert call(route.method, route.path, route.body).status == 200, route
