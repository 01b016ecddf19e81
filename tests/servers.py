"""Run the ASGI server (daphne) as a real process for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tasks_app.devserver.redis import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_secret_key() -> str:
    """The SECRET_KEY of this (test) process."""
    from django.conf import settings

    return str(settings.SECRET_KEY)


class LiveServer:
    """``daphne taskqueue_project.asgi:application`` on a free port, stopped on exit."""

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        self.tls = tls  # (certificate, key): serve HTTPS on the port instead of HTTP
        self.log_path = log_dir / f"daphne-{self.port}.log"
        # The test process's own key: tokens it mints are valid on the server, and a
        # server with TASKQUEUE_AUTH_ENABLED=1 (which needs DJANGO_SECRET_KEY) starts.
        self.env = {"DJANGO_SECRET_KEY": test_secret_key(), **os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """ws://127.0.0.1:<port>"""
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> LiveServer:
        """Start daphne and wait until it accepts connections."""
        if self.tls:
            cert, key = self.tls
            bind = ["-e", f"ssl:{self.port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"]
        else:
            bind = ["-b", "127.0.0.1", "-p", str(self.port)]
        command = [sys.executable, "-m", "daphne", *bind, "taskqueue_project.asgi:application"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log_path.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port),
                                                                        0.2):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"daphne did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the whole session."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``directory``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
