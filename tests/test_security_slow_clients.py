"""Slow clients (slowloris) do not stop legitimate requests; the open files limit is raised."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.once  # a soak's short form: the newest-Python leg runs it
def test_quick_slowloris_leaves_legitimate_requests_fast() -> None:
    """The CI form of ``reliability/slow_clients.py``: 200 clients trickling headers."""
    result = subprocess.run([sys.executable, "-m", "reliability.slow_clients", "--quick"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert "PASS: 0 legitimate requests failed" in report, report[-6000:]


def test_server_start_raises_the_soft_open_files_limit_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    code = ("import os, resource\n"
            "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'taskqueue_project.settings')\n"
            "import django; django.setup()\n"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, (256, {hard}))\n"
            "from tasks_app.routing import with_taskqueue\n"
            "with_taskqueue(lambda *a: None)\n"
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = hard if hard != resource.RLIM_INFINITY else 65536
    assert int(result.stdout.split()[-1]) == expected
