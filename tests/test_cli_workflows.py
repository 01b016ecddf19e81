"""``manage.py tq workflows``: list, show and cancel, as text and ``--json``, against real
Redis."""

from __future__ import annotations

import io

from tasks_app import producer
from tests.test_cli import Terminal, tq


def test_list_and_show_name_each_step_and_its_state() -> None:
    older = producer.chain(producer.step("echo"), producer.step("echo"))
    newer = producer.group(producer.step("echo"), producer.step("echo"),
                           then=producer.step("echo"))
    listing = tq("workflows")
    assert listing.code == 0, listing.err
    rows = listing.rows()
    assert rows[newer.id][1:4] == ["pending", "default", "3"]
    assert listing.out.index(newer.id) < listing.out.index(older.id)  # newest first
    assert listing.out.strip().endswith("2 workflows")
    data = tq("workflows", "list", "--json").json()
    assert [w["id"] for w in data["workflows"]] == [newer.id, older.id]
    shown = tq("workflows", "show", newer.id)
    assert shown.code == 0
    steps = shown.rows()
    assert steps["2"][1:5] == [newer.steps[2].task_id, "echo", "waiting", "0,1"]
    assert tq("workflows", "show", newer.id, "--json").json() == producer.get_workflow(
        newer.id).to_dict()


def test_cancel_asks_then_cancels_and_unknown_ids_fail() -> None:
    flow = producer.chain(producer.step("echo"), producer.step("echo"))
    refused = tq("workflows", "cancel", flow.id, stdin=Terminal("n\n"))
    assert refused.code != 0 and producer.get_workflow(flow.id).state == "pending"
    done = tq("workflows", "cancel", flow.id, "--yes")
    assert done.code == 0 and f"workflow {flow.id} cancelled" in done.out
    assert producer.get_workflow(flow.id).state == "cancelled"
    missing = tq("workflows", "show", "00000000-0000-4000-8000-000000000000")
    assert missing.code == 1 and "WorkflowNotFound" in missing.err


def test_create_from_an_argument_or_stdin_prints_the_workflow() -> None:
    tree = '{"group": [{"type": "echo"}, {"type": "echo"}], "then": {"type": "echo"}}'
    made = tq("workflows", "create", tree, "--json")
    assert made.code == 0, made.err
    data = made.json()
    assert [s["type"] for s in data["steps"]] == ["echo"] * 3
    assert data == producer.get_workflow(data["id"]).to_dict()
    assert data["state"] == "pending" and data["queue"] == "default"
    assert producer.get(data["steps"][0]["task_id"]).state == "pending"  # started at once
    text = tq("workflows", "create", "-", "--queue", "reports",
              stdin=io.StringIO('{"chain": [{"type": "echo"}, {"type": "echo"}]}'))
    assert text.code == 0, text.err
    first_line = text.out.splitlines()[0]
    assert first_line.startswith("workflow ") and first_line.endswith(" created")
    flow_id = first_line.split()[1]
    assert producer.get_workflow(flow_id).queue == "reports"


def test_create_with_an_idempotency_key_creates_once() -> None:
    tree = '{"chain": [{"type": "echo"}]}'
    first = tq("workflows", "create", tree, "--idempotency-key", "nightly-7", "--json")
    again = tq("workflows", "create", tree, "--idempotency-key", "nightly-7")
    assert first.code == 0 and again.code == 0
    assert again.out.splitlines()[0] == (f"workflow {first.json()['id']} exists "
                                         "(same --idempotency-key)")
    assert len(producer.workflows().recent(10)) == 1


def test_create_refuses_bad_input_and_creates_nothing() -> None:
    for args, code, message in [
            (("not json",), 2, "workflow is not JSON"),
            (("[1, 2]",), 2, "must be a JSON object"),
            (('{"chain": []}',), 1, "ValidationError"),
            (('{"chain": [{"type": "echo", "priority": 9}]}',), 1, "priority"),
            (("[" * 200 + "]" * 200,), 1, "nested too deeply"),
    ]:
        run = tq("workflows", "create", *args)
        assert run.code == code and message in run.err, (args, run)
    assert producer.workflows().recent(10) == []
