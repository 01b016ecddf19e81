"""tasks_app.routing: the socket and the API follow the prefix of the site's include."""

from __future__ import annotations

from typing import Any

from channels.routing import ProtocolTypeRouter
from django.test import override_settings

from tasks_app.routing import api_prefixes, base_path, websocket_path, with_taskqueue

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
