"""The fault scripts' quick forms (reliability/*.py --quick): each starts its own Redis,
workers (and web server), injects its faults and exits 0 only when every pass condition of
docs/reliability.md holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.once  # a soak: the newest-Python leg of --matrix runs it

ROOT = Path(__file__).resolve().parent.parent


def run_quick(script: str, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # each starts its own Redis
    run = subprocess.run([sys.executable, f"reliability/{script}", "--quick"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "RESULT: PASS" in run.stdout, output
    assert "FAIL:" not in run.stdout, output
    return run.stdout


def test_worker_kills_lose_nothing_and_complete_nothing_twice() -> None:
    out = run_quick("worker_kills.py", timeout=240)
    for condition in ("0 tasks lost", "0 tasks completed twice",
                      "re-executions <= attempts in flight at the kills",
                      "poison task ran max_retries + 1 times and is in the DLQ"):
        assert f"PASS: {condition}" in out


def test_rolling_restarts_rerun_nothing_finished_in_the_grace() -> None:
    out = run_quick("rolling_restarts.py", timeout=240)
    assert "PASS: 0 re-executions of tasks that finished inside the grace" in out
    assert "PASS: 0 tasks lost" in out


def test_redis_restarts_keep_every_accepted_task() -> None:
    out = run_quick("redis_restarts.py", timeout=240)
    for condition in ("no false 2xx while Redis was down",
                      "health unhealthy (503) during every outage poll",
                      "workers resume within 10 s",
                      "every task whose submission got a 2xx completes"):
        assert f"PASS: [always] {condition}" in out


def test_fsync_window_is_measured_and_always_acks_only_durable_tasks() -> None:
    if shutil.which("strace") is None and not os.access("/usr/bin/strace", os.X_OK):
        reason = ("strace is not installed (apt-get install strace): "
                  "fsync_window.py traces Redis's fsync calls with it")
        if os.environ.get("TQ_REQUIRE_STRACE"):  # .ci/run installs it: missing is a failure
            pytest.fail(reason)
        pytest.skip(reason)
    out = run_quick("fsync_window.py", timeout=180)
    for condition in ("strace saw fsyncs of the AOF",
                      "every acknowledged task found in an AOF write and a later fsync"):
        assert f"PASS: [everysec] {condition}" in out
        assert f"PASS: [always] {condition}" in out
    assert "PASS: [always] control: window <= 0.005 s for every task" in out
    assert "[everysec] ack -> durable window max (s)" in out


def test_schedules_tick_once_each_without_a_miss() -> None:
    out = run_quick("schedules.py", timeout=150)
    for condition in ("0 duplicate ticks", "0 missed ticks while workers lived",
                      "every task is on its schedule's grid"):
        assert f"PASS: {condition}" in out
    assert "tick lag p99 (ms)" in out and "Redis CPU per tick" in out


def test_type_limits_hold_a_rate_and_a_concurrency_with_real_workers() -> None:
    out = run_quick("type_limits.py", timeout=150)
    assert "PASS: echo rate within 10% of 20/s over 10 s" in out
    assert "PASS: at most 2 sleep attempts at once, and 2 reached" in out


@pytest.mark.parametrize("script", ["worker_kills.py", "rolling_restarts.py",
                                    "redis_restarts.py", "fsync_window.py", "failover.py",
                                    "schedules.py", "type_limits.py"])
def test_scripts_document_their_quick_form(script: str) -> None:
    text = (ROOT / "reliability" / script).read_text()
    assert f"reliability/{script} --quick" in text


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_failover_loses_no_replica_acknowledged_task(topology: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    run = subprocess.run([sys.executable, "reliability/failover.py", "--quick", "--topology",
                          topology, "--durability", "replica"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=150)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "RESULT: PASS" in run.stdout, output
    tag = f"[{topology}/replica]"
    for condition in ("0 acknowledged tasks lost", "every acknowledged task that exists ends",
                      "every task ends once or is listed with why it ran twice",
                      "web and workers recover within the failover time + 5 s"):
        assert f"PASS: {tag} {condition}" in run.stdout, output


def test_workflows_complete_exactly_under_worker_kills() -> None:
    out = run_quick("workflows.py", timeout=240)
    for condition in ("every workflow completed", "every step's task completed",
                      "the final figures are exact (each step counted once, parents in full)"):
        assert f"PASS: {condition}" in out
