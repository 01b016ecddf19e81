"""Run ``manage.py runworker_tq`` as real processes for the end-to-end worker tests.

    with WorkerPool(tmp_path) as pool:
        worker = pool.start(concurrency=2)
        ...
        worker.terminate()
        assert worker.wait(5) == 0

Every worker gets fast settings (lease 1 s, heartbeat 0.25 s, ...), its own log
file, and its own session so teardown can kill it and any slot it left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from reliability.common import children_of
from tasks_app import producer
from tasks_app.core.errors import WorkerNotFound
from tasks_app.core.inspect import Inspector, WorkerInfo
from tasks_app.core.task import Task

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "manage.py"

LEASE_SECONDS = 1.0
HEARTBEAT_INTERVAL = 0.25
HEARTBEAT_TIMEOUT = 1.0
RECOVERY_INTERVAL = 0.25
BACKOFF_BASE = 0.05
SHUTDOWN_GRACE = 5.0

FAST_ENV: dict[str, str] = {
    "TASKQUEUE_LEASE_SECONDS": str(LEASE_SECONDS),
    "TASKQUEUE_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
    "TASKQUEUE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
    "TASKQUEUE_RECOVERY_INTERVAL": str(RECOVERY_INTERVAL),
    "TASKQUEUE_RETRY_BACKOFF_BASE": str(BACKOFF_BASE),
    "TASKQUEUE_SHUTDOWN_GRACE": str(SHUTDOWN_GRACE),
    "TASKQUEUE_CONCURRENCY": "1",
    "TASKQUEUE_DEMO_HANDLERS": "1",
    "DJANGO_SETTINGS_MODULE": "taskqueue_project.settings",
    "PYTHONUNBUFFERED": "1",
}
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")


class WorkerStartError(RuntimeError):
    """A worker did not come up (not an AssertionError, so an xfail test cannot hide it)."""


def wait_for(predicate: Callable[[], T | None], timeout: float, interval: float = 0.02,
             message: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for "
                                 f"{message or getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


def wait_for_state(task_id: str, states: str | Sequence[str], timeout: float) -> Task:
    """Poll a task until it reaches one of ``states``; return it."""
    wanted = {states} if isinstance(states, str) else set(states)

    def reached() -> Task | None:
        task = producer.get(task_id)
        return task if task.state.value in wanted else None

    try:
        return wait_for(reached, timeout)
    except AssertionError:
        raise AssertionError(f"task {task_id} did not become {sorted(wanted)} within "
                             f"{timeout:g} s: {producer.get(task_id)}") from None


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan may never be reaped here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


class WorkerProcess:
    """One ``runworker_tq`` subprocess (the supervisor) and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], worker_id: str, log_path: Path) -> None:
        self.proc = proc
        self.id = worker_id
        self.log_path = log_path

    @property
    def pid(self) -> int:
        """The supervisor's pid."""
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """True until the supervisor has exited."""
        return self.proc.poll() is None

    def log(self) -> str:
        """Everything the worker wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def log_lines(self, needle: str) -> list[str]:
        """Log lines containing ``needle``."""
        return [line for line in self.log().splitlines() if needle in line]

    def slot_pids(self) -> list[int]:
        """The slot processes the supervisor forked."""
        return children_of(self.pid)

    def info(self, inspector: Inspector) -> WorkerInfo | None:
        """The worker's registry record, or None when it is not registered."""
        try:
            return inspector.worker(self.id)
        except WorkerNotFound:
            return None

    def wait_registered(self, inspector: Inspector, timeout: float = STARTUP_TIMEOUT
                        ) -> WorkerInfo:
        """Wait until the worker shows up in the registry with all its slots forked."""

        def ready() -> WorkerInfo | None:
            if not self.alive:
                raise WorkerStartError(f"worker {self.id} exited early:\n{self.log()}")
            info = self.info(inspector)
            if info is None or len(self.slot_pids()) < info.concurrency:
                return None
            return info

        try:
            return wait_for(ready, timeout, interval=0.05)
        except AssertionError:
            raise WorkerStartError(f"worker {self.id} did not register within {timeout:g} s:\n"
                                   f"{self.log()}") from None

    def signal(self, signum: int) -> None:
        """Send a signal to the supervisor only (not its process group)."""
        os.kill(self.pid, signum)

    def terminate(self) -> None:
        """SIGTERM: begin a graceful stop."""
        self.signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """The exit code; raises ``subprocess.TimeoutExpired`` if still running."""
        return self.proc.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to ``timeout``, then kill whatever is left; the exit code."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.wait(timeout)
        self.kill_all()
        return self.proc.returncode

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def kill_all(self) -> None:
        """SIGKILL the whole session: the supervisor and any slot it left behind."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_TIMEOUT)


class WorkerPool:
    """Starts workers and always stops them at exit: SIGTERM first, then SIGKILL."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    def start(self, *args: str, concurrency: int = 1, env: Mapping[str, str] | None = None,
              inspector: Inspector | None = None, name: str = "w",
              worker_id: str | None = None) -> WorkerProcess:
        """Start ``runworker_tq`` with fast settings; wait for it to register if given an
        inspector.  Each worker gets a fresh id unless ``worker_id`` pins one."""
        worker_id = worker_id or f"{name}-{uuid.uuid4().hex[:8]}"
        log_path = self.log_dir / f"{worker_id}-{len(self.workers)}.log"
        command = self.command(worker_id, concurrency, args)
        full_env = {**os.environ, **FAST_ENV, **(env or {})}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        worker = WorkerProcess(proc, worker_id, log_path)
        self.workers.append(worker)
        if inspector is not None:
            worker.wait_registered(inspector)
        return worker

    @staticmethod
    def command(worker_id: str, concurrency: int, args: Sequence[str]) -> list[str]:
        """The command line of one worker."""
        return [sys.executable, str(MANAGE), "runworker_tq", "--worker-id", worker_id,
                "--concurrency", str(concurrency), "--log-level", "debug", *args]

    def stop_all(self) -> None:
        """SIGTERM every running worker, wait a little, then kill whatever is left."""
        for worker in self.workers:
            if worker.alive:
                with contextlib.suppress(ProcessLookupError):
                    worker.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(max(deadline - time.monotonic(), 0.01))
            worker.kill_all()

    def dump_logs(self) -> None:
        """Print every worker's log (pytest shows it for failed tests)."""
        for worker in self.workers:
            print(f"----- log of {worker.id} (pid {worker.pid}) -----")
            print(worker.log())

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop_all()
        finally:
            self.dump_logs()


class FaultyProxy:
    """A TCP proxy in front of Redis that can lose or hold up one request (a network blip).

    ``lose_reply(request, reply)`` arms it: once a request containing ``request`` went
    through a connection, the first reply on it that contains ``reply`` (its own, or a
    later one's) still ran in Redis, but the connection is cut before that reply gets
    back.  ``hold(*parts, seconds=...)`` delays the next request containing
    every one of ``parts`` (other connections carry on meanwhile).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.lost = threading.Event()
        self.held = threading.Event()
        self._armed: tuple[bytes, bytes] | None = None
        self._hold: tuple[tuple[bytes, ...], float] | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        """A redis:// URL that goes through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    def lose_reply(self, request: bytes, reply: bytes = b"") -> None:
        """Cut the connection instead of relaying the next matching reply."""
        with self._lock:
            self._armed = (request, reply)
            self.lost.clear()

    def hold(self, *parts: bytes, seconds: float) -> None:
        """Delay the next request that contains every one of ``parts`` by ``seconds``."""
        with self._lock:
            self._hold = (parts, seconds)
            self.held.clear()

    def close(self) -> None:
        """Stop accepting and cut every connection."""
        for sock in [self.listener, *self._sockets]:
            _hang_up(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            watching = threading.Event()
            threading.Thread(target=self._requests, args=(client, server, watching),
                             daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, watching),
                             daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket,
                  watching: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                with self._lock:
                    if self._armed is not None and self._armed[0] in data:
                        watching.set()
                time.sleep(self._delay_for(data))
                server.sendall(data)

    def _replies(self, server: socket.socket, client: socket.socket,
                 watching: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                # Watch every reply after the matching request until the one to lose: a
                # pipelined request (an idle slot's wait, then its take) is answered in parts.
                if watching.is_set() and self._take(data):
                    watching.clear()
                    break
                client.sendall(data)
        for sock in (client, server):
            _hang_up(sock)

    def _delay_for(self, request: bytes) -> float:
        """How long to hold ``request`` back (once, for the armed one)."""
        with self._lock:
            if self._hold is None or not all(part in request for part in self._hold[0]):
                return 0.0
            seconds = self._hold[1]
            self._hold = None
        self.held.set()
        return seconds

    def _take(self, reply: bytes) -> bool:
        """True (and disarmed) when ``reply`` is the one to lose."""
        with self._lock:
            if self._armed is None or self._armed[1] not in reply:
                return False
            self._armed = None
        self.lost.set()
        return True


def _hang_up(sock: socket.socket) -> None:
    """Shut down (which wakes a thread blocked reading it) and close a socket."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
