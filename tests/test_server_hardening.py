"""daphne is patched (body limits, header deadline, WebSocket backpressure) only when the
site asks for it: ``TASKQUEUE["HARDEN_SERVER"]``, which this repository's site turns on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BUILD_APP = """
import json, os
import django
django.setup()
from django.core.asgi import get_asgi_application
from tasks_app.routing import with_taskqueue
with_taskqueue(get_asgi_application())
from daphne import http_protocol, ws_protocol
print(json.dumps({
    "body_limits": bool(getattr(http_protocol.WebRequest, "body_limited", False)),
    "header_timeout": bool(getattr(http_protocol.HTTPFactory, "header_deadline", False)),
    "backpressure": bool(getattr(ws_protocol.WebSocketProtocol, "send_bounded", False)),
}))
"""


def patches_after_with_taskqueue(settings_module: str, **env: str) -> dict[str, bool]:
    """Which daphne patches a fresh process has after building its ASGI app."""
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module, **env}
    result = subprocess.run([sys.executable, "-c", BUILD_APP], cwd=ROOT, env=environ,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, bool] = json.loads(result.stdout.splitlines()[-1])
    return found


def test_a_host_site_that_does_not_ask_keeps_its_daphne_as_it_is() -> None:
    found = patches_after_with_taskqueue("tests.settings_host_site", TQ_TEST_HARDEN="0")
    assert found == {"body_limits": False, "header_timeout": False, "backpressure": False}


@pytest.mark.parametrize(("settings_module", "env"), [
    ("tests.settings_host_site", {"TQ_TEST_HARDEN": "1"}),  # a host site that asks
    ("taskqueue_project.settings", {}),  # this repository's site turns it on
])
def test_a_site_that_asks_gets_every_patch(settings_module: str, env: dict[str, str]) -> None:
    found = patches_after_with_taskqueue(settings_module, **env)
    assert found == {"body_limits": True, "header_timeout": True, "backpressure": True}
