"""``manage.py tq limits``: list, set and clear per-type limits, as text and ``--json``,
with the exit codes of the other subcommands, against real Redis."""

from __future__ import annotations

from tasks_app import producer
from tests.api_support import redis_snapshot
from tests.test_cli import tq


def test_set_list_and_clear_a_types_limits() -> None:
    assert tq("limits").out.strip() == "no type limits"
    done = tq("limits", "set", "email", "--concurrency", "5", "--rate", "100/s")
    assert done.code == 0, done.err
    assert done.rows()["email"] == ["email", "5", "100/s", "0", "0"]
    tq("limits", "set", "sms", "--rate", "10/m")
    data = tq("limits", "list", "--json").json()
    assert data == {"types": [s.to_dict() for s in producer.type_limits().all()], "count": 2}
    assert [t["type"] for t in data["types"]] == ["email", "sms"]
    assert tq("limits").out.strip().endswith("2 limited types")
    cleared = tq("limits", "clear", "email")
    assert cleared.code == 0 and cleared.out.strip() == "limits of email removed"
    assert [t.type for t in producer.type_limits().all()] == ["sms"]


def test_bad_limits_are_usage_errors_and_change_nothing() -> None:
    before = redis_snapshot()
    for args in (("--concurrency", "0"), ("--rate", "5/d"), ()):
        run = tq("limits", "set", "email", *args)
        assert run.code == 2 and run.out == "", run
    assert "rate must be" in tq("limits", "set", "email", "--rate", "x").err
    assert redis_snapshot() == before
    missing = tq("limits", "clear", "nope")
    assert missing.code == 1 and "TypeLimitNotFound: nope" in missing.err
