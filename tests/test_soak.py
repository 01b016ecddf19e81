"""The chaos soak's short form: SIGKILLed workers and a Redis restart lose and repeat nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.once  # a soak: the newest-Python leg of --matrix runs it

ROOT = Path(__file__).resolve().parent.parent


def test_quick_soak_completes_every_task_exactly_once() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # it starts its own Redis
    run = subprocess.run([sys.executable, "soak.py", "--quick"], cwd=ROOT / "bench", env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "OK: every task completed exactly once" in run.stdout
