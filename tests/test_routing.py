"""tasks_app.routing: the socket and the API follow the prefix of the site's include."""

from __future__ import annotations

from typing import Any

import pytest
from channels.routing import ProtocolTypeRouter
from django.test import override_settings

from tasks_app.conf import tq_settings
from tasks_app.routing import api_prefixes, base_path, websocket_path, with_taskqueue
from tasks_app.server import body_limits

PREFIXED = "tests.urls_without_admin"  # tasks_app.urls under queue/


def test_this_project_includes_taskqueue_at_the_root() -> None:
    assert (base_path(), websocket_path(), api_prefixes()) == ("/", "/ws", ("/api/", "/admin/"))


@override_settings(ROOT_URLCONF=PREFIXED)
def test_everything_moves_under_the_include_prefix() -> None:
    assert base_path() == "/queue/"
    assert websocket_path() == "/queue/ws"
    assert api_prefixes() == ("/queue/api/", "/queue/admin/")


@override_settings(ROOT_URLCONF=PREFIXED, FORCE_SCRIPT_NAME="/site/")
def test_the_script_name_is_not_part_of_the_routed_path() -> None:
    from django.urls import set_script_prefix

    set_script_prefix("/site/")
    try:
        assert websocket_path() == "/queue/ws"
    finally:
        set_script_prefix("/")


async def site_app(scope: Any, receive: Any, send: Any) -> None:
    """Stands in for a site's own HTTP app."""


def test_the_wrapper_routes_http_to_the_site_unless_threaded() -> None:
    plain = with_taskqueue(site_app, threaded_api=False)
    assert isinstance(plain, ProtocolTypeRouter)
    assert plain.application_mapping["http"] is site_app
    threaded = with_taskqueue(site_app)
    assert threaded.application_mapping["http"] is not site_app
    assert set(threaded.application_mapping) == {"http", "websocket"}


@pytest.mark.parametrize("threaded", [True, False])
def test_body_limits_follow_the_include_prefix_threaded_or_not(
        monkeypatch: pytest.MonkeyPatch, threaded: bool) -> None:
    """Under ``queue/`` the API's body limit is for /queue/api/ and /queue/admin/; the site's
    own /admin/ (Django's admin) is a page: its file uploads are not cut at the API's limit."""
    monkeypatch.setattr(body_limits, "API_PREFIXES", [b"/api/", b"/admin/"])
    with override_settings(ROOT_URLCONF=PREFIXED):
        with_taskqueue(site_app, threaded_api=threaded)
    assert body_limits.API_PREFIXES == [b"/queue/api/", b"/queue/admin/"]
    api_limit = int(tq_settings.API_MAX_BODY_BYTES)
    assert body_limits.limit_for(b"/queue/api/v1/tasks") == api_limit
    upload = b"multipart/form-data; boundary=x"
    assert body_limits.limit_for(b"/admin/app/model/add/", upload) is None
