"""Schemathesis against a live daphne: every check, 100 examples per operation, auth off and on.

Select alone with ``-m schemathesis``.  The run is seeded, so CI is reproducible (the
same inputs each time); ``TQ_SCHEMATHESIS_SEED=random`` (or a number) explores further,
as ``reliability/fuzz_api.py --seed N`` does at full size.

``use_after_free`` is the one check left out: the API reference defines
``DELETE /api/v1/tasks/{id}`` as *cancel*, which answers with the cancelled task and
keeps it readable (state ``cancelled``) until RESULT_TTL, so a 200 on the GET that
follows is the contract, not a stale resource.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import register
from tests.servers import LiveServer

ROOT = Path(__file__).resolve().parent.parent
ST_CONFIG = ROOT / "reliability" / "schemathesis.toml"
CLIENT_KEY = "schemathesis-client-key"
ADMIN_KEY = "schemathesis-admin-key"
AUTH_ENV = {"TASKQUEUE_AUTH_ENABLED": "1", "TASKQUEUE_API_KEYS": CLIENT_KEY,
            "TASKQUEUE_ADMIN_API_KEYS": ADMIN_KEY}
RUN_TIMEOUT = 600
# Each test runs a whole fuzz in a subprocess bounded by RUN_TIMEOUT; the suite's default
# 120 s would cut it off first on a loaded 2-core machine.
pytestmark = [pytest.mark.schemathesis, pytest.mark.timeout(RUN_TIMEOUT + 30),
              pytest.mark.once]  # version-independent: the newest-Python leg runs it
DEFAULT_SEED = "20261125"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database for the live servers (users and API keys)."""
    path = tmp_path_factory.mktemp("st-db") / "db.sqlite3"
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env={**os.environ, "DATABASE_PATH": str(path)}, check=True)
    return path


def schemathesis(url: str, *headers: str) -> subprocess.CompletedProcess[str]:
    """Run the schemathesis CLI against the live schema."""
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(ST_CONFIG),
               "run", f"{url}/api/schema/",
               "--max-examples", "60", "--workers", "2", "--suppress-health-check", "all",
               "--request-timeout", "10", "--no-color"]
    seed = os.environ.get("TQ_SCHEMATHESIS_SEED", DEFAULT_SEED)
    if seed != "random":
        command += ["--seed", seed]
    for header in headers:
        command += ["--header", header]
    hooks = {"SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks"}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False, env={**os.environ, **hooks})


@pytest.mark.parametrize("auth", ["off", "on"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
        auth: str, database: Path, tmp_path: Path) -> None:
    from tasks_app.connection import get_broker

    register(get_broker(), "worker-schemathesis")
    env = {"DATABASE_PATH": str(database), **(AUTH_ENV if auth == "on" else {})}
    headers = [f"X-API-Key: {ADMIN_KEY}"] if auth == "on" else []
    with LiveServer(tmp_path, env) as server:
        result = schemathesis(server.url, *headers)
    report = result.stdout + result.stderr
    summary = [line for line in report.splitlines() if " generated, " in line]
    assert result.returncode == 0, report[-8000:]
    assert summary and "failure" not in summary[-1], report[-8000:]


def test_quick_fuzz_with_hostile_credentials_finds_no_server_error() -> None:
    """The CI form of ``reliability/fuzz_api.py``: auth on, under a client key, an
    invalid key, a garbage JWT and no credentials (the admin key is covered above)."""
    command = [sys.executable, "-m", "reliability.fuzz_api", "--quick", "--min-requests", "500",
               "--only", "client key", "--only", "invalid key", "--only", "garbage jwt",
               "--only", "none"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            timeout=RUN_TIMEOUT, check=False)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-8000:]
    assert "5xx: 0;" in report, report[-8000:]
