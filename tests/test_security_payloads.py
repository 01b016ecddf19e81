"""Hostile bodies against a live daphne: oversized (declared or chunked), deeply nested, huge.

An oversized body is refused with a JSON 413 before it is read (daphne would
otherwise spool the whole body to a temporary file before Django sees it), and
the server's memory stays bounded.  Deep nesting and huge values within the
limit get a clear 4xx, never a 500 or a stall; a deeply nested task payload
that reaches a real worker neither crashes nor stalls it.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
import requests

from tasks_app.api.asgi import ThreadedHandler
from tasks_app.conf import tq_settings
from tests.procs import WorkerPool, wait_for_state
from tests.servers import LiveServer, self_signed_certificate

GIGABYTE = 1_000_000_000
LIMIT = 1_048_576  # API_MAX_BODY_BYTES default
QUICK = 3.0  # seconds a refusal may take


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live daphne for the module."""
    with LiveServer(tmp_path_factory.mktemp("payload-daphne")) as live:
        yield live


def rss(server: LiveServer) -> int:
    """Resident memory of the daphne process, bytes."""
    assert server.proc is not None
    return int(psutil.Process(server.proc.pid).memory_info().rss)


def read_reply(sock: socket.socket, timeout: float = QUICK) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the HTTP reply on ``sock`` (read until close or complete)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def raw_request(server: LiveServer, head: str) -> socket.socket:
    """Open a connection and send a request head (no body)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=QUICK)
    sock.sendall(head.encode("latin-1"))
    return sock


@pytest.mark.parametrize("path", ["/api/v1/tasks", "/admin/dlq/retry", "/django-admin/login/",
                                  "/dashboard/"])
@pytest.mark.parametrize("expect", [False, True])
def test_declared_gigabyte_is_refused_at_once(server: LiveServer, path: str,
                                              expect: bool) -> None:
    before = rss(server)
    started = time.monotonic()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {GIGABYTE}\r\n" + ("Expect: 100-continue\r\n" if expect else "")
            + "\r\n")
    with raw_request(server, head) as sock:
        status, headers, body = read_reply(sock)
    elapsed = time.monotonic() - started
    assert status == 413, (status, body)  # no "100 Continue" first: nothing is read
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "Content Too Large"
    assert elapsed < QUICK
    assert rss(server) - before < 20 * 2**20


def test_file_uploads_to_other_pages_are_not_cut_at_django_s_data_limit(
        server: LiveServer) -> None:
    """Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) leaves out uploaded files: a 3 MB file
    posted to the Django admin reaches Django (CSRF refuses it here), not a 413 from daphne;
    a 3 MB body of another kind there, or any kind to the API, is still refused."""
    blob = b"x" * (3 * 2**20)
    upload = requests.post(f"{server.url}/django-admin/login/", timeout=10,
                           files={"file": ("big.bin", blob, "application/octet-stream")})
    assert upload.status_code != 413, upload.text[:300]
    assert upload.status_code == 403  # Django answered: no CSRF token
    plain = requests.post(f"{server.url}/django-admin/login/", data=blob, timeout=10,
                          headers={"Content-Type": "application/octet-stream"})
    assert plain.status_code == 413
    api = requests.post(f"{server.url}/api/v1/tasks", timeout=10,
                        files={"file": ("big.bin", blob, "application/octet-stream")})
    assert api.status_code == 413


@pytest.mark.parametrize("path", ["/%61pi/v1/tasks", "/api/v1/tasks?x=1"])
def test_an_encoded_api_path_gets_the_api_limit(server: LiveServer, path: str) -> None:
    """Daphne percent-decodes the path it routes by, so the limit goes by the decoded one
    (a multipart gigabyte to ``/%61pi/`` must not be read as a page outside the API)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {GIGABYTE}\r\n\r\n")
    with raw_request(server, head) as sock:
        status, _, body = read_reply(sock)
    assert status == 413, body


def test_declared_gigabyte_over_tls_gets_its_413(tmp_path: Path) -> None:
    """Under daphne's TLS wrapper too the JSON 413 reaches the client before the close."""
    with LiveServer(tmp_path, tls=self_signed_certificate(tmp_path)) as tls_server:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(socket.create_connection(("127.0.0.1", tls_server.port),
                                                          timeout=QUICK)) as sock:
            sock.sendall(f"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"Content-Type: application/json\r\n"
                         f"Content-Length: {GIGABYTE}\r\n\r\n".encode())
            status, _, body = read_reply(sock)
    assert status == 413, body
    assert json.loads(body)["error"] == "Content Too Large"


GOOD = "GET /admin/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
OVERSIZED = (f"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             f"Content-Type: application/json\r\nContent-Length: {LIMIT + 1}\r\n\r\n"
             + "x" * (LIMIT + 1))


@pytest.mark.parametrize(("requests_sent", "expected"), [
    ([GOOD, OVERSIZED, GOOD], [200, 413]),
    ([OVERSIZED, GOOD], [413]),
])
def test_pipelined_oversized_request_on_a_kept_alive_connection(
        server: LiveServer, requests_sent: list[str], expected: list[int]) -> None:
    """The 413 goes out after the earlier requests' replies, in order, then the connection
    closes: nothing after the refused request is answered (its body is not taken for one)."""
    head = "".join(requests_sent)
    with raw_request(server, head) as sock:
        sock.settimeout(QUICK)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses == expected, data[:600]


def test_expect_continue_within_the_limit_still_gets_100_continue(server: LiveServer) -> None:
    body = json.dumps({"type": "echo", "payload": {}}).encode()
    head = (f"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n")
    with raw_request(server, head) as sock:
        sock.settimeout(QUICK)
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(body)
        status, _, reply = read_reply(sock)
    assert status == 201, reply


def test_chunked_stream_is_cut_off_once_past_the_limit(server: LiveServer) -> None:
    before = rss(server)
    head = ("POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"[" * 65536
    sent = 0
    started = time.monotonic()
    with raw_request(server, head) as sock:
        try:  # a client that would go on forever: the server stops it past the limit
            while sent < 64 * LIMIT:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                if sent > 2 * LIMIT:
                    break
        except OSError:
            pass
        status, _, body = read_reply(sock)
    assert status == 413, body
    assert json.loads(body) == {"error": "Content Too Large",
                                "message": f"request body exceeds {LIMIT} bytes"}
    assert time.monotonic() - started < QUICK
    assert rss(server) - before < 20 * 2**20


def test_body_at_the_limit_still_goes_through(server: LiveServer) -> None:
    filler = "x" * (LIMIT - 200)
    body = json.dumps({"type": "echo", "payload": {"blob": filler}})
    assert len(body) <= LIMIT
    reply = requests.post(f"{server.url}/api/v1/tasks", data=body, timeout=10,
                          headers={"Content-Type": "application/json"})
    assert reply.status_code == 201, reply.text[:300]
    chunked = requests.post(f"{server.url}/api/v1/tasks", timeout=10,
                            data=iter([body[:1000].encode(), body[1000:].encode()]),
                            headers={"Content-Type": "application/json"})
    assert chunked.status_code == 201, chunked.text[:300]


TOO_DEEP = "request body is nested too deeply (more than 72 levels)"


@pytest.mark.parametrize(("body", "message"), [
    ("[" * 100_000, TOO_DEEP),
    ("[" * 100_000 + "]" * 100_000, TOO_DEEP),
    ('{"a":' * 100_000 + "1" + "}" * 100_000, TOO_DEEP),
    (json.dumps({"type": "echo", "payload": {"a": "[" * 500_000}})[:-5],
     "request body is not valid JSON"),
])
def test_deep_nesting_is_a_clear_400(server: LiveServer, body: str, message: str) -> None:
    started = time.monotonic()
    reply = requests.post(f"{server.url}/api/v1/tasks", data=body, timeout=10,
                          headers={"Content-Type": "application/json"})
    assert reply.status_code == 400, reply.text[:300]
    assert reply.json()["message"] == message
    assert time.monotonic() - started < QUICK


@pytest.mark.parametrize("payload", [
    {"blob": "é" * 100_000},
    {"items": list(range(120_000))},
    {"items": [{"k": i} for i in range(60_000)]},
    {f"k{i}": i for i in range(60_000)},
])
def test_huge_values_within_the_limit_are_accepted_or_refused_cleanly(
        server: LiveServer, payload: dict[str, Any]) -> None:
    body = json.dumps({"type": "echo", "payload": payload})
    assert len(body) <= LIMIT
    started = time.monotonic()
    reply = requests.post(f"{server.url}/api/v1/tasks", data=body, timeout=30,
                          headers={"Content-Type": "application/json"})
    assert reply.status_code in (201, 400), reply.text[:300]  # never 413 within the limit
    assert reply.headers["Content-Type"] == "application/json"
    assert time.monotonic() - started < 10


def asgi_call(scope_headers: list[tuple[bytes, bytes]], chunks: list[bytes]
              ) -> tuple[int, int]:
    """Drive the threaded API handler directly: (status, body chunks it asked for)."""
    handler = ThreadedHandler(threads=1)
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        more = asked < len(chunks)
        return {"type": "http.request", "body": chunks[asked - 1], "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/v1/tasks", "headers":
             [(b"host", b"localhost"), (b"content-type", b"application/json"), *scope_headers],
             "query_string": b"", "root_path": "", "server": ("localhost", 80)}
    asyncio.run(handler(scope, receive, send))
    handler.pool.shutdown()
    return int(sent[0]["status"]), asked


def test_threaded_api_handler_refuses_declared_length_without_reading() -> None:
    status, asked = asgi_call([(b"content-length", str(GIGABYTE).encode())], [b"x"])
    assert (status, asked) == (413, 0)


def test_threaded_api_handler_stops_reading_past_the_limit() -> None:
    limit = int(tq_settings.API_MAX_BODY_BYTES)
    chunk = b"[" * 65536
    chunks = [chunk] * (4 * limit // len(chunk))
    status, asked = asgi_call([], chunks)
    assert status == 413
    assert asked == limit // len(chunk) + 1  # stopped at the first chunk past the limit


@pytest.mark.parametrize("depth", [50, 500, 940])
def test_deeply_nested_task_payload_does_not_crash_or_stall_a_worker(
        server: LiveServer, tmp_path: Path, depth: int) -> None:
    from tasks_app import producer

    nested: Any = "leaf"
    for _ in range(depth):
        nested = [nested]
    body = json.dumps({"type": "echo", "payload": {"deep": nested}})
    reply = requests.post(f"{server.url}/api/v1/tasks", data=body, timeout=10,
                          headers={"Content-Type": "application/json"})
    assert reply.status_code in (201, 400), reply.text[:300]
    with WorkerPool(tmp_path) as pool:
        worker = pool.start(inspector=producer.inspector())
        probe = requests.post(f"{server.url}/api/v1/tasks", json={"type": "echo"}, timeout=10)
        assert probe.status_code == 201
        if reply.status_code == 201:
            task = wait_for_state(reply.json()["id"], ("completed", "failed", "dead_letter"),
                                  timeout=30)
            assert task.state.value in ("completed", "failed", "dead_letter")
        wait_for_state(probe.json()["id"], "completed", timeout=30)  # the worker goes on
        assert worker.alive, worker.log()[-3000:]
