"""HTTP_HEADER_TIMEOUT under a real daphne: slow headers get 408, idle keep-alive
connections are closed, and nothing else (requests on time, WebSockets) is cut off."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from typing import BinaryIO

import pytest
import requests
from websockets.sync.client import connect

from tests.servers import LiveServer, self_signed_certificate

TIMEOUT = 1.5
SLACK = 1.5  # the deadline fires on the reactor; the machine may be loaded
REQUEST = b"GET /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"TASKQUEUE_HTTP_HEADER_TIMEOUT": str(TIMEOUT)}
    with LiveServer(tmp_path_factory.mktemp("header-timeout"), env) as live:
        yield live


def open_socket(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and when it closed (monotonic)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic()


def read_response(reader: BinaryIO) -> bytes:
    """One complete response with a Content-Length body; its status line and headers."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        assert line, f"connection closed after {head!r}"
        head += line
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    assert len(reader.read(length)) == length
    return head


def test_headers_trickled_past_the_deadline_get_a_json_408_and_the_connection_closes(
        server: LiveServer) -> None:
    sock = open_socket(server)
    started = time.monotonic()
    sock.sendall(b"GET /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    reply = b""
    sock.settimeout(0.3)
    while time.monotonic() - started < TIMEOUT + SLACK + 3:  # a byte every 0.3 s, never done
        try:
            sock.sendall(b"X")
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        reply += chunk
    closed = time.monotonic() - started
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout"), reply
    assert json.loads(body) == {"error": "Request Timeout",
                                "message": f"request headers not received within {TIMEOUT:g} s"}
    assert TIMEOUT - 0.1 <= closed <= TIMEOUT + SLACK + 2.5  # 408, then the linger at most


def test_a_connection_that_sends_nothing_is_closed_quietly_at_the_deadline(
        server: LiveServer) -> None:
    sock = open_socket(server)
    started = time.monotonic()
    data, closed = read_until_closed(sock)
    assert data == b""
    assert TIMEOUT - 0.1 <= closed - started <= TIMEOUT + SLACK


def test_keep_alive_connection_serves_requests_sent_in_time_then_is_closed_when_idle(
        server: LiveServer) -> None:
    sock = open_socket(server)
    reader = sock.makefile("rb")
    for _ in range(3):  # 3 × 0.8 s: longer than the deadline in all, each request in time
        time.sleep(TIMEOUT / 2 + 0.05)
        sock.sendall(REQUEST)
        assert read_response(reader).startswith(b"HTTP/1.1 200")
    idle_from = time.monotonic()
    data, closed = read_until_closed(sock)
    assert data == b""
    assert TIMEOUT - 0.1 <= closed - idle_from <= TIMEOUT + SLACK


def test_pipelined_requests_are_all_answered(server: LiveServer) -> None:
    sock = open_socket(server)
    reader = sock.makefile("rb")
    sock.sendall(REQUEST * 3)
    for _ in range(3):
        assert read_response(reader).startswith(b"HTTP/1.1 200")
    time.sleep(TIMEOUT / 2)
    sock.sendall(REQUEST)
    assert read_response(reader).startswith(b"HTTP/1.1 200")


def test_a_websocket_outlives_the_header_deadline(server: LiveServer) -> None:
    with connect(f"{server.ws_url}/ws", open_timeout=10) as ws:
        time.sleep(TIMEOUT * 2 + SLACK)
        ws.send(json.dumps({"type": "ping"}))
        ws.ping().wait(5)  # raises if daphne closed the connection


def test_a_slow_request_is_not_cut_off_once_its_headers_are_in(server: LiveServer) -> None:
    """A body that keeps arriving (a byte every 0.3 s, 3 s in all) is read and answered."""
    body = json.dumps({"type": "echo", "payload": {"x": "y" * 0}}).encode()
    sock = open_socket(server)
    sock.sendall(b"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    started = time.monotonic()
    for i in range(len(body)):
        sock.sendall(body[i:i + 1])
        if time.monotonic() - started < 3:
            time.sleep(0.3)
    head = read_response(sock.makefile("rb"))
    assert head.split(b"\r\n")[0] in (b"HTTP/1.1 201 Created", b"HTTP/1.1 400 Bad Request"), head


def read_408(sock: socket.socket) -> bytes:
    """Wait (sending nothing) for the server's 408 to a request whose headers stopped."""
    sock.settimeout(TIMEOUT + SLACK + 3)
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {reply!r}"
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    return reply


def test_a_request_finished_after_its_408_is_not_run(server: LiveServer) -> None:
    """The client was told 408: headers and body it sends afterwards must not create a task."""
    body = json.dumps({"type": "echo", "payload": {"marker": "after-408"}}).encode()
    sock = open_socket(server)
    sock.sendall(b"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\n")
    read_408(sock)
    sock.sendall(b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(1.0)  # within the linger: the server still reads what the client sends
    listing = requests.get(f"{server.url}/api/v1/tasks", timeout=10)
    assert listing.status_code == 200
    assert listing.json()["total_pending"] == 0, listing.text


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """daphne serving HTTPS (twisted's TLS wrapper around each connection)."""
    work = tmp_path_factory.mktemp("header-timeout-tls")
    env = {"TASKQUEUE_HTTP_HEADER_TIMEOUT": str(TIMEOUT)}
    with LiveServer(work, env, tls=self_signed_certificate(work)) as live:
        yield live


def open_tls_socket(server: LiveServer) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(open_socket(server))


def test_over_tls_headers_past_the_deadline_get_the_408(tls_server: LiveServer) -> None:
    sock = open_tls_socket(tls_server)
    sock.sendall(b"GET /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    reply = read_408(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    while len(body) < int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:"))):
        body += sock.recv(65536)
    assert json.loads(body)["error"] == "Request Timeout"


def test_over_tls_an_idle_connection_is_closed_at_the_deadline(tls_server: LiveServer) -> None:
    sock = open_tls_socket(tls_server)
    started = time.monotonic()
    data, closed = read_until_closed(sock)
    assert data == b""
    assert TIMEOUT - 0.1 <= closed - started <= TIMEOUT + SLACK


def test_over_tls_a_websocket_outlives_the_header_deadline(tls_server: LiveServer) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with connect(f"wss://127.0.0.1:{tls_server.port}/ws", open_timeout=10, ssl=context) as ws:
        time.sleep(TIMEOUT * 2 + SLACK)
        ws.send(json.dumps({"type": "ping"}))
        ws.ping().wait(5)
