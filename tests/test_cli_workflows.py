"""``manage.py tq workflows``: list, show and cancel, as text and ``--json``, against real
Redis."""

from __future__ import annotations

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
