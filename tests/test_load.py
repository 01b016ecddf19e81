"""The load and scale figures' short forms: REST API load with four workers, a pending backlog.

Each script starts its own Redis, daphne and workers, and exits non-zero when a pass
condition fails; see docs/reliability.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.once  # a soak: the newest-Python leg of --matrix runs it

ROOT = Path(__file__).resolve().parent.parent


def run_quick(script: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # each starts its own Redis
    return subprocess.run([sys.executable, str(ROOT / "reliability" / script), "--quick"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_quick_api_load_completes_every_task_without_growth() -> None:
    run = run_quick("load_api.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "FAIL" not in run.stdout
    assert "every task id's final state is completed" in run.stdout
    assert "OK: every check passed" in run.stdout


def test_quick_pending_scale_cost_stays_flat() -> None:
    run = run_quick("pending_scale.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "OK: per-operation cost flat" in run.stdout
