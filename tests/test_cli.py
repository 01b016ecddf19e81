"""``manage.py tq``, the operator CLI, against the real Redis (and real workers where it
shows them): tables, --json, exit codes, confirmation, purge."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tasks_app import producer
from tasks_app.connection import get_broker
from tasks_app.core.inspect import DLQ_BATCH, Inspector
from tasks_app.core.states import TaskState
from tasks_app.devserver.redis import EmbeddedRedis
from tests.factories import make_spec, register, take
from tests.procs import MANAGE, ROOT, WorkerPool, wait_for, wait_for_state

S = TaskState


@dataclass(frozen=True)
class Run:
    """What one ``tq`` run printed and its exit code."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as the one JSON document it must be."""
        return json.loads(self.out)

    def rows(self) -> dict[str, list[str]]:
        """stdout's table lines keyed by their first column."""
        return {line.split()[0]: line.split() for line in self.out.splitlines() if line.strip()}


class Terminal(io.StringIO):
    """Typed answers on a stdin that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def tq(*args: str, stdin: io.StringIO | None = None) -> Run:
    """Run ``tq`` in this process with call_command; CommandError becomes its exit code."""
    out, err = io.StringIO(), io.StringIO()
    extra = {"stdin": stdin} if stdin is not None else {}
    try:
        call_command("tq", *args, stdout=out, stderr=err, **extra)
        code = 0
    except CommandError as exc:
        code, err = exc.returncode, io.StringIO(err.getvalue() + str(exc))
    return Run(code, out.getvalue(), err.getvalue())


def tq_process(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Run:
    """Run ``python manage.py tq`` as a subprocess, as a shell script would."""
    proc = subprocess.run([sys.executable, str(MANAGE), "tq", *args], cwd=ROOT,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def dead(count: int, task_type: str = "echo", priority: int = 0,
         payload: dict[str, Any] | None = None) -> list[str]:
    """``count`` dead-lettered tasks (one failed attempt each), oldest first."""
    broker = get_broker()
    register(broker, "seed-worker")
    ids = []
    for _ in range(count):
        task = broker.enqueue(make_spec(task_type, priority=priority, max_retries=0,
                                        payload=payload))
        job = take(broker, "seed-worker")
        assert job.id == task.id, "something else was pending"
        broker.fail(job, "seed-worker", f"{task_type} broke\nat line 2")
        ids.append(task.id)
    broker.deregister("seed-worker")
    return ids


def pending(count: int, priority: str = "low", task_type: str = "echo") -> list[str]:
    """``count`` pending tasks of one priority."""
    tasks = producer.enqueue_many([{"type": task_type, "priority": priority}] * count)
    return [t.id for t in tasks]


# -- status ---------------------------------------------------------------------------


def test_status_table_and_json_show_the_numbers(inspector: Inspector) -> None:
    dead(1)
    pending(3, "high")
    pending(1, "critical")
    producer.enqueue("echo", {}, priority="low", delay=60)
    producer.enqueue("echo", {}, priority="low", delay=60)
    inspector.pause_queue(1)
    run = tq("status")
    assert run.code == 0
    rows = run.rows()
    assert rows["critical"][1:3] == ["1", "0"] and rows["critical"][-1] == "no"
    assert rows["high"][1:3] == ["3", "0"]
    assert rows["normal"][1:3] == ["0", "0"] and rows["normal"][-1] == "yes"
    assert rows["low"][1:3] == ["0", "2"]
    assert "dead-letter queue: 1" in run.out and "running: 0" in run.out
    assert "no live workers" in run.out

    data = tq("status", "--json").json()
    assert set(data) == {"queues", "running", "dlq_size", "workers"}
    assert [(q["priority"], q["pending"], q["delayed"], q["paused"]) for q in data["queues"]] == [
        ("critical", 1, 0, False), ("high", 3, 0, False), ("normal", 0, 0, True),
        ("low", 0, 2, False)]
    assert (data["running"], data["dlq_size"], data["workers"]) == (0, 1, [])
    assert data["queues"][1]["oldest_pending_seconds"] >= 0
    assert data["queues"][2]["oldest_pending_seconds"] is None


def test_status_shows_a_real_worker_and_pause_resume_work(
    pool: WorkerPool, inspector: Inspector
) -> None:
    worker = pool.start(inspector=inspector, concurrency=2)
    data = tq("status", "--json").json()
    [row] = data["workers"]
    assert (row["id"], row["state"], row["active_tasks"], row["concurrency"]) == (
        worker.id, "idle", 0, 2)
    assert row["pid"] == worker.pid and row["hostname"] == socket.gethostname()
    assert 0 <= row["last_seen_seconds"] < 5
    line = tq("status").rows()[worker.id]
    assert line[1:5] == [socket.gethostname(), str(worker.pid), "idle", "0/2"]

    paused = tq("pause", "--worker", worker.id, "--json")
    assert (paused.code, paused.json()) == (0, {"worker": worker.id, "paused": True})
    assert tq("status").rows()[worker.id][3] == "paused"
    task = producer.enqueue("echo", {"n": 1})
    time.sleep(1.0)
    assert producer.get(task.id).state is S.PENDING

    resumed = tq("resume", "--worker", worker.id)
    assert (resumed.code, resumed.out.strip()) == (0, f"worker {worker.id} resumed")
    wait_for_state(task.id, "completed", 10)
    wait_for(lambda: tq("status", "--json").json()["workers"][0]["processed"] == 1, 5,
             message="the DONE count (sent with the next heartbeat)")


def test_a_busy_worker_shows_its_active_task(pool: WorkerPool, inspector: Inspector) -> None:
    worker = pool.start(inspector=inspector)
    task = producer.enqueue("sleep", {"seconds": 3})
    wait_for_state(task.id, "running", 10)
    wait_for(lambda: tq("status").rows()[worker.id][3] == "busy", 5, message="busy row")
    run = tq("status")
    assert run.rows()[worker.id][4] == "1/1" and "running: 1" in run.out


# -- pause / resume a priority, unknown worker ------------------------------------------


def test_pause_and_resume_a_priority(inspector: Inspector) -> None:
    run = tq("pause", "--priority", "high", "--json")
    assert run.json() == {"priority": "high", "level": 2, "paused": True}
    assert [s.paused for s in inspector.queue_stats() if s.name == "high"] == [True]
    assert tq("resume", "--priority", "2").out.strip() == "priority high resumed"
    assert not any(s.paused for s in inspector.queue_stats())


def test_pausing_an_unknown_worker_is_an_operation_error() -> None:
    run = tq("pause", "--worker", "no-such-worker")
    assert run.code == 1 and "WorkerNotFound: no-such-worker" in run.err


# -- dead-letter queue ------------------------------------------------------------------


def test_dlq_list_pages_with_before_and_filters_by_type() -> None:
    echo = dead(3, "echo")
    mail = dead(2, "email", priority=2)
    newest_first = [*reversed(mail), *reversed(echo)]
    first = tq("dlq", "list", "--limit", "2", "--json").json()
    assert [e["task_id"] for e in first["entries"]] == newest_first[:2]
    assert first["size"] == 5 and first["next_before"] == first["entries"][-1]["message_id"]
    second = tq("dlq", "list", "--limit", "2", "--before", first["next_before"], "--json").json()
    assert [e["task_id"] for e in second["entries"]] == newest_first[2:4]
    last = tq("dlq", "list", "--limit", "2", "--before", second["next_before"], "--json").json()
    assert [e["task_id"] for e in last["entries"]] == newest_first[4:]
    assert last["next_before"] is None

    entry = first["entries"][0]
    assert (entry["type"], entry["priority"], entry["attempts"], entry["reason"]) == (
        "email", "high", 1, "max retries exceeded")
    assert entry["task"]["state"] == "dead_letter"

    only_echo = tq("dlq", "list", "--type", "echo", "--json").json()
    assert [e["task_id"] for e in only_echo["entries"]] == list(reversed(echo))

    text = tq("dlq", "list", "--limit", "2")
    assert text.code == 0
    assert set(text.rows()) >= {"MESSAGE", first["entries"][0]["message_id"],
                                first["entries"][1]["message_id"]}
    assert "2 shown, 5 in the dead-letter queue" in text.out
    assert f"next page: --before {first['next_before']}" in text.out
    assert "email broke at line 2" in text.out  # the error, on one line


def test_dlq_show_prints_payload_error_attempts_and_times() -> None:
    [task_id] = dead(1, payload={"to": "a@example.com"})
    run = tq("dlq", "show", task_id)
    assert run.code == 0
    assert f"task:         {task_id}" in run.out
    assert "attempts:     1" in run.out and "state:        dead_letter" in run.out
    assert "echo broke\nat line 2" in run.out and '"to": "a@example.com"' in run.out
    data = tq("dlq", "show", task_id, "--json").json()
    assert data["task_id"] == task_id and data["error"] == "echo broke\nat line 2"
    assert data["task"]["payload"] == {"to": "a@example.com"}
    assert data["added_at"].endswith("Z") and data["task"]["created_at"].endswith("Z")


def test_dlq_show_of_deep_stored_data_prints_a_bounded_text() -> None:
    deep: dict[str, Any] = {}
    # Stored before MAX_JSON_DEPTH: indented, it printed about 1 MB (700 levels, as deep as
    # Python 3.11's JSON encoder and decoder go under pytest's recursion limit).
    for _ in range(700):
        deep = {"a": deep}
    [task_id] = dead(1, payload=deep)
    run = tq("dlq", "show", task_id)
    assert run.code == 0
    assert "(nested more than 64 levels: shown without indentation)" in run.out
    assert len(run.out) < 120_000, len(run.out)


def test_dlq_show_of_unknown_or_live_task_is_an_operation_error() -> None:
    unknown = tq("dlq", "show", "00000000-0000-0000-0000-000000000000")
    assert unknown.code == 1 and "TaskNotFound" in unknown.err
    [live] = pending(1)
    not_dead = tq("dlq", "show", live)
    assert not_dead.code == 1 and "NotInDeadLetterQueue" in not_dead.err
    assert "state: pending" in not_dead.err


def test_dlq_retry_by_id_and_all(inspector: Inspector) -> None:
    a, b, c, d = dead(4)
    one = tq("dlq", "retry", a, b, "--json")
    assert (one.code, one.json()) == (0, {"retried_count": 2, "retried": [a, b],
                                          "not_in_dlq": []})
    assert producer.get(a).state is S.PENDING and inspector.dlq_size() == 2
    partial = tq("dlq", "retry", c, "nope", "--json")
    assert partial.code == 1 and "NotInDeadLetterQueue: nope" in partial.err
    assert partial.json() == {"retried_count": 1, "retried": [c], "not_in_dlq": ["nope"]}
    assert tq("dlq", "retry", "--all", "--json").json() == {"retried_count": 1}
    assert producer.get(d).state is S.PENDING and inspector.dlq_size() == 0
    assert inspector.queue_depths()["low"] == 4


@pytest.mark.parametrize(("args", "message"), [
    (("--limit", "0"), "--limit must be at least 1"),
    (("--before", "yesterday"), "--before takes a message id"),
])
def test_dlq_list_refuses_bad_paging(args: tuple[str, ...], message: str) -> None:
    run = tq("dlq", "list", *args)
    assert run.code == 2 and message in run.err


@pytest.mark.parametrize("args", [(), ("--all", "some-id")])
def test_dlq_retry_needs_ids_or_all(args: tuple[str, ...]) -> None:
    run = tq("dlq", "retry", *args)
    assert run.code == 2 and "give task ids or --all" in run.err


def test_dlq_clear_asks_first(inspector: Inspector) -> None:
    dead(3)
    no_tty = tq("dlq", "clear")
    assert no_tty.code == 3 and "pass --yes" in no_tty.err
    said_no = tq("dlq", "clear", stdin=Terminal("n\n"))
    assert said_no.code == 3 and "Delete all 3 dead-letter entries" in said_no.err
    assert inspector.dlq_size() == 3
    said_yes = tq("dlq", "clear", "--json", stdin=Terminal("y\n"))
    assert (said_yes.code, said_yes.json()) == (0, {"cleared_count": 3})
    assert inspector.dlq_size() == 0
    dead(2)
    assert tq("dlq", "clear", "--yes").out.strip() == "deleted 2 dead-letter entries"
    assert tq("dlq", "clear", "--no-input", "--json").json() == {"cleared_count": 0}


# -- purge ----------------------------------------------------------------------------


def test_purge_asks_with_the_count_and_cancels_only_that_priority(inspector: Inspector) -> None:
    high = pending(4, "high")
    low = pending(2, "low")
    before = inspector.totals()
    refused = tq("purge", "--priority", "high", stdin=Terminal("no\n"))
    assert refused.code == 3 and "Cancel all 4 pending high task(s)?" in refused.err
    assert inspector.queue_depths()["high"] == 4

    done = tq("purge", "--priority", "high", "--json", stdin=Terminal("y\n"))
    assert (done.code, done.json()) == (0, {"priority": "high", "level": 2, "purged_count": 4})
    assert inspector.queue_depths() == {"critical": 0, "high": 0, "normal": 0, "low": 2}
    assert {producer.get(t).state for t in high} == {S.CANCELLED}
    assert {producer.get(t).state for t in low} == {S.PENDING}
    after = inspector.totals()
    assert after["cancelled"] - before["cancelled"] == 4
    assert after["submitted"] == before["submitted"]


def test_purge_without_a_terminal_needs_yes(inspector: Inspector) -> None:
    pending(3, "normal")
    assert tq("purge", "--priority", "normal").code == 3
    assert inspector.queue_depths()["normal"] == 3
    run = tq("purge", "--priority", "normal", "--yes")
    assert (run.code, run.out.strip()) == (0, "cancelled 3 pending normal task(s)")
    assert tq("purge", "--priority", "normal").out.strip() == "cancelled 0 pending normal task(s)"


def test_purged_tasks_never_run(pool: WorkerPool, inspector: Inspector) -> None:
    inspector.pause_queue(0)
    purged = pending(5, "low")
    assert tq("purge", "--priority", "low", "--yes").code == 0
    inspector.resume_queue(0)
    [kept] = pending(1, "low")
    pool.start(inspector=inspector)
    wait_for_state(kept, "completed", 10)
    assert {producer.get(t).state for t in purged} == {S.CANCELLED}
    assert {producer.get(t).attempts for t in purged} == {0}


def test_purge_confirmed_on_a_real_terminal(inspector: Inspector) -> None:
    pending(2, "critical")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(MANAGE), "tq", "purge", "--priority",
                             "critical"], cwd=ROOT, env=dict(os.environ), stdin=follower,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(follower)
    try:
        prompt = wait_for_prompt(proc)
        assert "Cancel all 2 pending critical task(s)? [y/N]" in prompt
        os.write(leader, b"y\n")
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out.strip() == "cancelled 2 pending critical task(s)"
    assert inspector.queue_depths()["critical"] == 0


def tq_on_terminal(*args: str, timeout: float = 60) -> Run:
    """Run ``python manage.py tq`` with its stderr on a pseudo-terminal (stdout a pipe)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(MANAGE), "tq", *args], cwd=ROOT,
                            env=dict(os.environ), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    err = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            assert ready, f"no end of stderr: {err!r}"
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the process closed the terminal's last handle
                break
            if not chunk:
                break
            err += chunk
        out, _ = proc.communicate(timeout=timeout)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    return Run(proc.returncode, out, err.decode())


PROGRESS_CASES = [
    (("purge", "--priority", "low", "--yes"), lambda n: pending(n, "low"), "cancelled",
     "cancelled {n} pending low task(s)"),
    (("dlq", "retry", "--all"), dead, "re-queued", "re-queued {n} dead-lettered task(s)"),
    (("dlq", "clear", "--yes"), dead, "deleted", "deleted {n} dead-letter entries"),
]


@pytest.mark.parametrize(("args", "seed", "verb", "result"), PROGRESS_CASES)
def test_batched_operations_show_progress_on_a_terminal(
    args: tuple[str, ...], seed: Any, verb: str, result: str
) -> None:
    n = DLQ_BATCH + 1
    seed(n)
    run = tq_on_terminal(*args)
    assert run.code == 0 and run.out.strip() == result.format(n=n)
    shown = [line for line in run.err.split("\r") if line.strip()]
    assert shown[:3] == [f"{verb} 0/{n}", f"{verb} {DLQ_BATCH}/{n}", f"{verb} {n}/{n}"]
    assert run.err.endswith("\r\x1b[K")


@pytest.mark.parametrize(("args", "seed", "verb", "result"), PROGRESS_CASES)
def test_batched_operations_print_no_progress_off_a_terminal(
    args: tuple[str, ...], seed: Any, verb: str, result: str
) -> None:
    seed(3)
    run = tq_process(*args)
    assert run.code == 0 and run.out.strip() == result.format(n=3)
    assert run.err == ""


def wait_for_prompt(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """What the process wrote on stderr until it ends a line with ``]`` and a space."""
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while not seen.endswith(b"] "):
        assert time.monotonic() < deadline, f"no prompt: {seen!r}"
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, f"stderr closed before the prompt: {seen!r}"
            seen += chunk
    return seen.decode()


# -- exit codes from a shell, Redis down ----------------------------------------------------


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("args", [
    ("status",), ("dlq", "list"), ("pause", "--priority", "low"),
    ("purge", "--priority", "low", "--yes"), ("get", "00000000-0000-4000-8000-000000000000"),
])
def test_redis_down_is_exit_1_with_one_line(args: tuple[str, ...]) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    run = tq_process(*args, "--json", env={"REDIS_URL": url})
    assert run.code == 1 and run.out == ""
    assert "Traceback" not in run.err
    [line] = run.err.strip().splitlines()
    assert line.startswith(f"CommandError: Redis unavailable at {url}")


def test_system_check_warnings_do_not_clutter_the_cli() -> None:
    """No REDIS_URL is check W001; tq still prints only its own one-line error."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.run([sys.executable, str(MANAGE), "tq", "status", "--json"], cwd=ROOT,
                          env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert "System check" not in proc.stderr and "W001" not in proc.stderr
    if proc.returncode == 0:  # a Redis of the machine's own answers on the default port
        json.loads(proc.stdout)
        return
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("CommandError: Redis unavailable at redis://127.0.0.1:6379/0")


def test_redis_stopping_under_a_running_process_is_exit_1(redis_server: EmbeddedRedis) -> None:
    pending(2)
    assert tq("status").code == 0
    redis_server.stop()
    try:
        run = tq("purge", "--priority", "low", "--yes")
    finally:
        redis_server.start()
    assert run.code == 1 and run.out == ""
    assert run.err.startswith("Redis unavailable at redis://127.0.0.1:")


def test_the_redis_password_is_not_printed() -> None:
    url = f"redis://admin:s3cret@127.0.0.1:{closed_port()}/0"
    run = tq_process("status", env={"REDIS_URL": url})
    assert run.code == 1 and "s3cret" not in run.err
    assert "redis://admin:***@127.0.0.1:" in run.err


def test_usage_errors_exit_2_and_success_exits_0() -> None:
    assert tq_process("purge", "--priority", "urgent").code == 2
    assert tq_process("pause").code == 2
    assert tq_process("pause", "--worker", "a", "--priority", "low").code == 2
    assert tq_process("bogus").code == 2
    ok = tq_process("status", "--json")
    assert ok.code == 0 and json.loads(ok.out)["dlq_size"] == 0
    assert tq_process("dlq", "show", "nope").code == 1
    assert tq_process("dlq", "clear").code == 0  # empty: nothing to confirm


def test_not_confirmed_from_a_shell_exits_3(inspector: Inspector) -> None:
    dead(1)
    run = tq_process("dlq", "clear", "--json")
    assert run.code == 3 and run.out == "" and "pass --yes" in run.err
    assert inspector.dlq_size() == 1


# -- the README tour's subcommands -------------------------------------------------------


def test_enqueue_get_cancel_still_print_tasks() -> None:
    created = tq("enqueue", "echo", '{"hello": "world"}', "--priority", "high", "--delay", "60")
    task = created.json()
    assert (task["state"], task["priority"], task["payload"]) == (
        "scheduled", "high", {"hello": "world"})
    assert tq("get", task["id"], "--json").json()["id"] == task["id"]
    assert tq("cancel", task["id"]).json()["state"] == "cancelled"
    assert tq("cancel", task["id"]).code == 1
    assert tq("enqueue", "echo", "{not json").code == 2


def test_enqueue_wait_prints_the_created_then_the_finished_task(
    pool: WorkerPool, inspector: Inspector
) -> None:
    pool.start(inspector=inspector)
    run = tq_process("enqueue", "echo", '{"hello": "world"}', "--priority", "high", "--wait")
    decoder, docs, rest = json.JSONDecoder(), [], run.out.strip()
    while rest:
        doc, end = decoder.raw_decode(rest)
        docs.append(doc)
        rest = rest[end:].strip()
    assert run.code == 0 and [d["state"] for d in docs] == ["pending", "completed"]
    assert docs[1]["result"] == {"hello": "world"}
    one = tq_process("enqueue", "echo", "{}", "--wait", "--json")
    assert one.code == 0 and json.loads(one.out)["state"] == "completed"


@pytest.mark.parametrize("old", ["stats", "dlq-retry"])
def test_spellings_from_before_1_0_are_refused_and_change_nothing(old: str) -> None:
    """``tq stats`` and ``tq dlq-retry`` predate 1.0: ``tq status --json`` and
    ``tq dlq retry --all`` replace them."""
    dead(2)
    run = tq(old)
    assert run.code != 0 and f"invalid choice: '{old}'" in run.err
    assert tq("dlq", "--json").json()["size"] == 2


def test_bare_dlq_is_dlq_list_and_takes_its_options() -> None:
    """``dlq`` alone lists (the README: list is the default), so ``dlq --json`` and
    ``dlq --limit 1`` must work as ``dlq list --json`` does, not exit 2."""
    ids = dead(2)
    run = tq_process("dlq", "--json", "--limit", "1")
    assert run.code == 0, run.err
    data = json.loads(run.out)
    assert [e["task_id"] for e in data["entries"]] == [ids[-1]] and data["size"] == 2
    assert tq("dlq", "list", "--json").out == tq("dlq", "--json").out
    assert tq("dlq").code == 0 and "2 in the dead-letter queue" in tq("dlq").out


# -- named queues -----------------------------------------------------------------------


def test_enqueue_in_a_queue_get_shows_it_and_queues_lists_depths(inspector: Inspector) -> None:
    created = tq("enqueue", "echo", "{}", "--queue", "emails", "--priority", "high").json()
    assert created["queue"] == "emails"
    assert tq("get", created["id"]).json()["queue"] == "emails"
    tq("enqueue", "echo", "{}", "--delay", "60")
    listed = tq("queues", "--json").json()
    assert listed["count"] == 2
    assert listed["named"][1] == {
        "name": "emails", "shards": 1, "paused": False, "depth": 1,
        "queue_depths": {"critical": 0, "high": 1, "normal": 0, "low": 0},
        "scheduled": 0, "dlq_size": 0}
    rows = tq("queues").rows()
    assert rows["QUEUE"][:3] == ["QUEUE", "SHARDS", "PENDING"]
    assert rows["emails"] == ["emails", "1", "1", "0", "1", "0", "0", "0", "0", "no"]
    assert rows["default"][-3:] == ["1", "0", "no"]


def test_pause_and_resume_a_named_queue(inspector: Inspector) -> None:
    tq("enqueue", "echo", "{}", "--queue", "emails")
    assert tq("pause", "--queue", "emails", "--json").json() == {"queue": "emails",
                                                                 "paused": True}
    assert tq("queues").rows()["emails"][-1] == "yes"
    assert [q.paused for q in inspector.named_queues()] == [False, True]
    assert tq("resume", "--queue", "emails").out.strip() == "queue emails resumed"
    assert not any(q.paused for q in inspector.named_queues())


def test_unknown_or_invalid_queue_names_are_refused() -> None:
    run = tq("pause", "--queue", "never-used")
    assert run.code == 1 and "QueueNotFound: never-used" in run.err
    for args in (("pause", "--queue=-x"), ("enqueue", "echo", "{}", "--queue", "a b")):
        run = tq(*args)
        assert run.code != 0 and "invalid queue name" in run.err, run


# -- unique tasks and progress ----------------------------------------------------------


def test_enqueue_unique_for_prints_the_existing_task_and_get_shows_progress() -> None:
    first = tq("enqueue", "echo", '{"n": 1}', "--unique-for", "60").json()
    again = tq("enqueue", "echo", '{"n": 1}', "--unique-for", "60").json()
    assert again["id"] == first["id"]
    keyed = tq("enqueue", "echo", '{"n": 2}', "--unique-for", "60", "--unique-key", "k").json()
    assert tq("enqueue", "echo", '{"n": 3}', "--unique-for", "60",
              "--unique-key", "k").json()["id"] == keyed["id"]
    assert tq("enqueue", "echo", "{}", "--unique-for", "0").code != 0
    broker = get_broker()
    register(broker)
    job = take(broker)
    broker.progress(job, 2, 5, "two of five")
    shown = tq("get", job.id).json()["progress"]
    assert (shown["done"], shown["total"], shown["message"]) == (2, 5, "two of five")
