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
