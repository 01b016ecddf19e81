"""A WebSocket client that never reads cannot exhaust the server's memory.

A real client opens ``/ws`` (raw socket, tiny receive buffer) and stops reading
while many events flow; the server must drop it (close code 4408 once its
buffer is full) and daphne's resident memory must stay bounded.  A client that
keeps reading gets its events throughout.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
from websockets.sync.client import connect

from tasks_app.connection import get_broker
from tests.factories import make_spec
from tests.servers import LiveServer

BUFFER = 5000
EVENTS = 60_000
BATCH = 50
RATE = 4000  # events a second: a Python client that reads keeps up (the producer shares
# the test process's GIL with it); the stalled clients still pass their buffer at once


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    env = {"TASKQUEUE_WS_CLIENT_BUFFER": str(BUFFER),
           "TASKQUEUE_WS_MAX_EVENTS_PER_SECOND": "1000000"}
    with LiveServer(tmp_path, env) as live:
        yield live


def rss(server: LiveServer) -> int:
    assert server.proc is not None
    return int(psutil.Process(server.proc.pid).memory_info().rss)


def stalled_client(server: LiveServer) -> socket.socket:
    """Open /ws by hand with a 4 kB receive buffer, then never read again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def flood(events: int) -> None:
    """Submit ``events`` tasks (one task.submitted event each) at RATE a second."""
    broker = get_broker()
    sent, started = 0, time.monotonic()
    while sent < events:
        broker.enqueue_many([make_spec(payload={"pad": "p" * 64}) for _ in range(BATCH)])
        sent += BATCH
        time.sleep(max(0.0, started + sent / RATE - time.monotonic()))


@pytest.mark.once  # a soak's short form: the newest-Python leg runs it
def test_never_reading_client_is_dropped_and_memory_stays_bounded(server: LiveServer) -> None:
    reader_got = 0
    stop = threading.Event()

    def read_all() -> None:
        nonlocal reader_got
        with connect(f"{server.ws_url}/ws?types=task.submitted") as live:
            while not stop.is_set():
                try:
                    live.recv(timeout=0.5)
                    reader_got += 1
                except TimeoutError:
                    continue

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    stalled = [stalled_client(server) for _ in range(5)]
    time.sleep(0.5)
    before = rss(server)
    peak = before
    started = time.monotonic()
    flooding = threading.Thread(target=flood, args=(EVENTS,), daemon=True)
    flooding.start()
    while flooding.is_alive():
        peak = max(peak, rss(server))
        time.sleep(0.05)
    # Let the reader catch up (slowly on a loaded machine): stop once it has everything or
    # has made no progress for 5 s (it was cut off, or events were lost).
    last, last_change, deadline = reader_got, time.monotonic(), time.monotonic() + 90
    while reader_got < EVENTS and time.monotonic() < deadline:
        peak = max(peak, rss(server))
        time.sleep(0.1)
        if reader_got != last:
            last, last_change = reader_got, time.monotonic()
        elif time.monotonic() - last_change > 5:
            break
    time.sleep(0.5)
    peak = max(peak, rss(server))
    stop.set()
    reader.join(5)
    elapsed = time.monotonic() - started
    print(f"{EVENTS} events in {elapsed:.1f} s; daphne RSS {before / 2**20:.0f} MiB -> peak "
          f"{peak / 2**20:.0f} MiB; reading client got {reader_got}")
    # The stalled clients were cut off: their connections end (close frame queued, then
    # dropped), so nothing more piles up for them.
    ended = 0
    for sock in stalled:
        sock.settimeout(10)
        try:
            while sock.recv(1 << 20):
                pass
            ended += 1  # the server closed it
        except TimeoutError:
            pass  # still open and still fed: not bounded
        except OSError:
            ended += 1  # the server dropped it
        sock.close()
    assert ended == len(stalled)
    assert peak - before < 48 * 2**20, f"RSS grew by {(peak - before) / 2**20:.0f} MiB"
    assert reader_got == EVENTS  # a client that reads is not cut off


class FakeTransport:
    def __init__(self, unsent: int) -> None:
        self.dataBuffer = b"x" * unsent
        self.offset = 0
        self._tempDataLen = 0
        self.connected = False


class FakeProtocol:
    def __init__(self, unsent: int) -> None:
        self.transport = FakeTransport(unsent)
        self.sent: list[Any] = []
        self.closed: list[int] = []
        self.state = "open"
        self.STATE_CONNECTING = "connecting"
        self.client_addr = None

    def sendClose(self, code: int, reason: str) -> None:  # noqa: N802 (autobahn's name)
        self.closed.append(code)


def test_send_past_the_unsent_bytes_limit_closes_with_4408(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet import reactor

    from tasks_app.server import backpressure as ws_backpressure

    ws_backpressure.install()
    monkeypatch.setattr(reactor, "callLater", lambda *args: None)
    monkeypatch.setattr(ws_backpressure, "limit_bytes", lambda: 1000)
    fast = FakeProtocol(unsent=10)
    slow = FakeProtocol(unsent=5000)
    for proto in (fast, slow):
        proto.sendMessage = lambda data, binary, p=proto: p.sent.append(data)  # type: ignore
        WebSocketProtocol.serverSend(proto, "event")
        WebSocketProtocol.serverSend(proto, "event")
    assert fast.sent == [b"event", b"event"] and fast.closed == []
    assert slow.sent == [] and slow.closed == [4408]  # closed once, nothing more queued


@pytest.fixture
def small_buffer_server(tmp_path: Path) -> Iterator[LiveServer]:
    env = {"TASKQUEUE_WS_CLIENT_BUFFER": "10",
           "TASKQUEUE_WS_MAX_EVENTS_PER_SECOND": "1000000"}
    with LiveServer(tmp_path, env) as live:
        yield live


def test_a_reading_client_is_not_cut_off_by_a_burst_sent_in_one_go(
        small_buffer_server: LiveServer) -> None:
    """A burst the consumer accepts (within WS_CLIENT_BUFFER events) but larger than the
    unsent-bytes bound must reach a client that reads: the bytes are unsent only because
    the server has not yet written them, not because the client does not read."""
    size = 10
    got: list[str] = []
    with connect(f"{small_buffer_server.ws_url}/ws?types=task.submitted") as live:
        time.sleep(0.5)
        get_broker().enqueue_many([make_spec("t" * 150) for _ in range(size)])
        deadline = time.monotonic() + 10
        while len(got) < size and time.monotonic() < deadline:
            try:
                got.append(str(live.recv(timeout=1)))
            except TimeoutError:
                continue
    assert len(got) == size
