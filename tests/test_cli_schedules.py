"""``manage.py tq schedules``: list, show, pause, resume, trigger and delete, as text and
``--json``, with the exit codes of the other subcommands, against real Redis."""

from __future__ import annotations

import json

from tasks_app import producer
from tasks_app.core.schedules import Schedules
from tests.test_cli import Terminal, tq, tq_process


def seed() -> Schedules:
    """Two schedules: a cron one (Paris) and an every one on a named queue."""
    store = producer.schedules()
    store.create(producer.schedule_spec({"name": "nightly", "type": "echo",
                                         "cron": "0 3 * * *", "timezone": "Europe/Paris",
                                         "payload": {"report": "sales"}}))
    store.create(producer.schedule_spec({"name": "poll", "type": "echo", "every": 30,
                                         "queue": "emails"}))
    return store


def test_list_shows_timing_next_run_and_paused_as_text_and_json() -> None:
    store = seed()
    text = tq("schedules")
    assert text.code == 0, text.err
    rows = text.rows()
    assert rows["NAME"][:4] == ["NAME", "QUEUE", "TYPE", "WHEN"]
    assert rows["nightly"][:5] == ["nightly", "default", "echo", "cron", "0"]
    assert "(Europe/Paris)" in text.out and "every 30s" in text.out
    assert rows["poll"][1] == "emails"
    assert text.out.strip().endswith("2 schedules")
    data = tq("schedules", "list", "--json").json()
    assert data["count"] == 2
    assert data["schedules"] == [s.to_dict() for s in store.all()]
    only = tq("schedules", "list", "--queue", "emails", "--json").json()
    assert [s["name"] for s in only["schedules"]] == ["poll"]


def test_show_prints_the_definition_and_state() -> None:
    seed()
    run = tq("schedules", "show", "nightly")
    assert run.code == 0
    lines = dict(line.split(":", 1) for line in run.out.splitlines() if ": " in line)
    assert lines["when"].strip() == "cron 0 3 * * * (Europe/Paris)"
    assert lines["paused"].strip() == "no" and lines["last task"].strip() == "-"
    assert '"report": "sales"' in run.out
    assert tq("schedules", "show", "nightly", "--json").json()["cron"] == "0 3 * * *"


def test_pause_resume_and_trigger_change_the_schedule() -> None:
    store = seed()
    paused = tq("schedules", "pause", "poll", "--json")
    assert paused.code == 0 and paused.json()["paused"] is True
    assert store.get("poll").paused
    assert tq("schedules", "resume", "poll").out.startswith("schedule poll resumed (next run ")
    assert not store.get("poll").paused
    fired = tq("schedules", "trigger", "poll", "--json").json()
    task = producer.get(fired["task_id"])
    assert fired["name"] == "poll" and task.metadata["schedule"] == "poll"
    assert store.get("poll").last_task_id == fired["task_id"]
    text = tq("schedules", "trigger", "nightly").out.strip()
    assert text.startswith("schedule nightly triggered: task ")


def test_delete_asks_first_then_deletes() -> None:
    store = seed()
    no_tty = tq("schedules", "delete", "poll")
    assert no_tty.code == 3 and "pass --yes" in no_tty.err
    said_no = tq("schedules", "delete", "poll", stdin=Terminal("n\n"))
    assert said_no.code == 3 and "Delete the schedule poll?" in said_no.err
    assert store.count() == 2
    said_yes = tq("schedules", "delete", "poll", "--json", stdin=Terminal("y\n"))
    assert said_yes.json() == {"name": "poll", "deleted": True}
    assert tq("schedules", "delete", "nightly", "--yes").out.strip() == "schedule nightly deleted"
    assert store.count() == 0
    assert tq("schedules").out.strip() == "no schedules"


def test_unknown_names_are_exit_1_and_usage_errors_exit_2() -> None:
    for action in ("show", "pause", "resume", "trigger", "delete"):
        run = tq("schedules", action, "nope", "--yes" if action == "delete" else "--json")
        assert run.code == 1 and "ScheduleNotFound: nope" in run.err, (action, run)
        assert run.out == ""
    assert tq_process("schedules", "show").code == 2
    assert tq_process("schedules", "list", "--queue", "bad name").code == 2
    assert tq_process("schedules", "explode").code == 2
    listed = tq_process("schedules", "--json")
    assert listed.code == 0 and json.loads(listed.out) == {"schedules": [], "count": 0}
