"""End to end: daphne and a worker as real processes, a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import websockets

from tasks_app.connection import get_broker
from tasks_app.core.inspect import Inspector
from tests.procs import WorkerPool
from tests.servers import LiveServer


async def collect(ws_url: str, api_url: str, want: int) -> tuple[str, list[dict[str, Any]]]:
    """Connect, submit one task over HTTP, and read its events until completed."""
    async with websockets.connect(f"{ws_url}/ws?types=task.*") as ws:
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=api_url) as http:
            reply = await http.post("/api/v1/tasks", json={"type": "echo", "payload": {"a": 1}})
        assert reply.status_code == 201, reply.text
        task_id = reply.json()["id"]
        seen: list[dict[str, Any]] = []
        while len(seen) < want:
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if event["data"].get("task_id") == task_id:
                seen.append(event)
        return task_id, seen


def test_a_client_sees_submitted_started_completed_in_order(tmp_path: Path) -> None:
    with LiveServer(tmp_path) as server, WorkerPool(tmp_path) as pool:
        pool.start(inspector=Inspector(get_broker()))
        task_id, seen = asyncio.run(collect(server.ws_url, server.url, 3))
    assert [e["type"] for e in seen] == ["task.submitted", "task.started", "task.completed"]
    assert all(e["data"]["type"] == "echo" and e["data"]["priority"] == "low" for e in seen)
    assert seen[2]["data"]["duration"] >= 0
