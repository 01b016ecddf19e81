"""Secrets: with auth on the JWT signing key comes from the environment and is strong."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from taskqueue_project.settings import secret_key
from tasks_app.conf import tq_settings
from tasks_app.security_checks import check_auth_secrets
from tests.servers import LiveServer

ROOT = Path(__file__).resolve().parent.parent
STRONG = "k" + "x7Qp2LmZ9rT4vW8yB3nC6dF1gH5jK0sE" * 2


def load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter with ``env`` on top of this one's."""
    full = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    code = "import taskqueue_project.settings as s; print(len(s.SECRET_KEY))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**full, **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_auth_on_without_secret_key_refuses_to_load() -> None:
    result = load_settings(TASKQUEUE_AUTH_ENABLED="1")
    assert result.returncode != 0
    assert "TASKQUEUE_AUTH_ENABLED=1 needs DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize("weak", ["django-insecure-local-dev-only-change-me", "short-key",
                                  "a" * 64])
def test_auth_on_with_a_weak_secret_key_refuses_to_load(weak: str) -> None:
    result = load_settings(TASKQUEUE_AUTH_ENABLED="1", DJANGO_SECRET_KEY=weak)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is unsafe with auth on" in result.stderr


def test_auth_on_with_a_strong_secret_key_loads() -> None:
    result = load_settings(TASKQUEUE_AUTH_ENABLED="1", DJANGO_SECRET_KEY=STRONG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(STRONG))


def test_auth_off_without_secret_key_uses_a_random_per_install_key(tmp_path: Path) -> None:
    first = secret_key({}, tmp_path / "var")
    assert first == secret_key({}, tmp_path / "var")  # kept: sessions survive restarts
    assert len(first) >= 32 and not first.startswith("django-insecure")
    assert first != secret_key({}, tmp_path / "other")  # per install, not a constant
    mode = stat.S_IMODE((tmp_path / "var" / "secret_key").stat().st_mode)
    assert mode == 0o600


def test_environment_key_wins_and_no_file_is_written(tmp_path: Path) -> None:
    assert secret_key({"DJANGO_SECRET_KEY": STRONG}, tmp_path) == STRONG
    assert not (tmp_path / "secret_key").exists()
    with pytest.raises(ImproperlyConfigured):
        secret_key({"TASKQUEUE_AUTH_ENABLED": "yes"}, tmp_path)


def test_daphne_with_auth_on_and_no_secret_key_does_not_start(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, {"TASKQUEUE_AUTH_ENABLED": "1", "DJANGO_SECRET_KEY": ""})
    with pytest.raises(RuntimeError, match="needs DJANGO_SECRET_KEY"):
        server.start()
    server.stop()


def test_system_check_flags_weak_signing_key_when_auth_turned_on_in_code() -> None:
    auth_on = {"REDIS_URL": tq_settings.REDIS_URL, "AUTH_ENABLED": True,
               "API_KEYS": ["short"], "ADMIN_API_KEYS": []}
    with override_settings(TASKQUEUE=auth_on, SECRET_KEY="django-insecure-x"):
        ids = {m.id for m in check_auth_secrets()}
    assert ids == {"taskqueue.security.E001", "taskqueue.security.W002"}
    with override_settings(TASKQUEUE=auth_on, SECRET_KEY=STRONG,
                           SIMPLE_JWT={"SIGNING_KEY": "weak"}):
        assert {m.id for m in check_auth_secrets()} == {"taskqueue.security.E001",
                                                          "taskqueue.security.W002"}
    with override_settings(TASKQUEUE={**auth_on, "API_KEYS": [STRONG]}, SECRET_KEY=STRONG):
        assert check_auth_secrets() == []
    with override_settings(SECRET_KEY="django-insecure-x"):
        assert check_auth_secrets() == []  # auth off: nothing is signed for access


def test_manage_py_check_fails_with_auth_on_and_a_weak_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT,
                            env={**env, "TASKQUEUE_AUTH_ENABLED": "1"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize("blocked", ["var_is_a_file", "key_is_a_directory"])
def test_an_unusable_var_dir_is_a_clear_configuration_error(tmp_path: Path,
                                                             blocked: str) -> None:
    """var/ unwritable or its key unreadable (as in a container run as another user than
    the one that made var/): a message naming DJANGO_SECRET_KEY, not an OSError."""
    var = tmp_path / "var"
    if blocked == "var_is_a_file":
        var.write_text("")
    else:
        (var / "secret_key").mkdir(parents=True)
    with pytest.raises(ImproperlyConfigured, match="set DJANGO_SECRET_KEY"):
        secret_key({}, var)


def test_the_image_build_bakes_no_secret_key_file() -> None:
    """collectstatic at build time runs with a throwaway DJANGO_SECRET_KEY, so no
    var/secret_key (root's, mode 0600) is left in the image for every container to share
    or fail to read."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    step = dockerfile.split("collectstatic")[0].rsplit("RUN ", 1)[1]
    assert "DJANGO_SECRET_KEY=" in step
