"""Run everything locally: Redis (embedded unless REDIS_URL is set), migrate, daphne, workers.

var/ is private (0700, files 0600); the embedded Redis listens on 127.0.0.1 only and
requires the password kept in var/redis-password. The demo handlers are on for the
children unless auth is on or TASKQUEUE_DEMO_HANDLERS says otherwise. On a fresh database
the first start creates a superuser (DJANGO_SUPERUSER_USERNAME / _PASSWORD, else ``admin``
with a generated password shown once and kept in var/admin-password).

Usage: ``python -m taskqueue_project.launcher [--port 8080] [--host 127.0.0.1] [--workers 1]
[--no-redis]``. daphne listens on 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from taskqueue_project import var_files
from tasks_app.cli import redact
from tasks_app.conf import DEFAULTS
from tasks_app.devserver.redis import EmbeddedRedis, RedisServerError, free_port

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
REDIS_DIR = VAR_DIR / "redis"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})  # as settings.env_bool reads them
REDIS_PORT = 6390
DEFAULT_ADMIN = "admin"
POLL_INTERVAL = 0.2
STOP_MARGIN = 15.0

log = logging.getLogger("taskqueue_project.launcher")


@dataclass
class Child:
    """One supervised subprocess."""

    name: str
    process: subprocess.Popen[bytes]
    is_worker: bool

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` if the process is still running."""
        if self.alive:
            self.process.send_signal(signum)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m taskqueue_project.launcher")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port for daphne")
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address daphne listens on (default 127.0.0.1: this machine only; "
             "0.0.0.0 serves the network, with auth on)",
    )
    parser.add_argument("--workers", type=int, default=1, help="number of worker processes")
    parser.add_argument(
        "--no-redis", action="store_true", help="never start the embedded Redis; use REDIS_URL"
    )
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error("--workers must be >= 0")
    return args


def child_env(redis_url: str | None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment every child inherits: the demo handlers on unless auth is."""
    env = dict(os.environ if environ is None else environ, PYTHONUNBUFFERED="1")
    if redis_url:
        env["REDIS_URL"] = redis_url
    auth_on = env.get("TASKQUEUE_AUTH_ENABLED", "").strip().lower() in TRUE_WORDS
    if not env.get("TASKQUEUE_DEMO_HANDLERS", "").strip() and not auth_on:
        env["TASKQUEUE_DEMO_HANDLERS"] = "1"
    return env


def prepare_var_dir(var_dir: Path = VAR_DIR) -> None:
    """Make var/ private (0700, files 0600), including what earlier runs left there."""
    var_files.make_private(var_dir)


def start_redis(var_dir: Path = VAR_DIR) -> EmbeddedRedis:
    """Start the embedded Redis (AOF under var/redis, password from var/redis-password)."""
    data_dir = var_dir / REDIS_DIR.name
    password = var_files.redis_password(var_dir)
    server = EmbeddedRedis(data_dir, port=free_port(REDIS_PORT), persistence=True,
                           password=password)
    server.start()
    var_files.publish_redis_port(var_dir, server.port)
    log.info("Embedded Redis on %s (data in %s)", redact(server.url), data_dir)
    return server


def stop_redis(server: EmbeddedRedis, var_dir: Path = VAR_DIR) -> None:
    """Stop the embedded Redis and withdraw its port file."""
    var_files.withdraw_redis_port(var_dir, server.port)
    server.stop()


def migrate(env: dict[str, str]) -> None:
    """Apply database migrations."""
    command = [sys.executable, "manage.py", "migrate", "--noinput"]
    subprocess.run(command, cwd=BASE_DIR, env=env, check=True)


def first_admin_credentials(env: dict[str, str]) -> tuple[str, str, bool]:
    """Username and password for the first superuser, and whether the password is generated."""
    username = env.get("DJANGO_SUPERUSER_USERNAME", "").strip() or DEFAULT_ADMIN
    password = env.get("DJANGO_SUPERUSER_PASSWORD", "")
    return username, password or secrets.token_urlsafe(16), not password


def ensure_first_admin(env: dict[str, str], var_dir: Path = VAR_DIR) -> str:
    """Create a superuser if the database has no user yet; return the banner's sign-in text."""
    username, password, generated = first_admin_credentials(env)
    command = [sys.executable, "-m", "taskqueue_project.first_admin"]
    done = subprocess.run(command, cwd=BASE_DIR, env=env, check=True, text=True,
                          input=json.dumps({"username": username, "password": password}),
                          stdout=subprocess.PIPE)
    created = json.loads(done.stdout.strip().splitlines()[-1])["created"]
    if created and generated:
        path = var_files.save_admin_password(var_dir, username, password)
        log.info("Created the superuser %r; its password is in %s", username, path)
        return f"{username} / {password}  (shown once; kept in var/{path.name})"
    if created:
        log.info("Created the superuser %r", username)
        return f"{username} (password from DJANGO_SUPERUSER_PASSWORD)"
    saved = var_files.saved_admin_username(var_dir)
    if saved:
        return f"{saved} (password in var/{var_files.ADMIN_PASSWORD_FILE})"
    return "your own users (manage.py createsuperuser makes one)"


def spawn(name: str, command: list[str], env: dict[str, str], is_worker: bool) -> Child:
    """Start a child in its own process group so only the launcher signals it."""
    process = subprocess.Popen(command, cwd=BASE_DIR, env=env, start_new_session=True)
    log.info("Started %s (pid %d)", name, process.pid)
    return Child(name, process, is_worker)


def start_children(args: argparse.Namespace, env: dict[str, str]) -> list[Child]:
    """Start daphne and the workers."""
    daphne = [sys.executable, "-m", "daphne", "-b", args.host, "-p", str(args.port)]
    children = [spawn("daphne", [*daphne, "taskqueue_project.asgi:application"], env, False)]
    worker = [sys.executable, "manage.py", "runworker_tq"]
    for index in range(1, args.workers + 1):
        children.append(spawn(f"worker-{index}", worker, env, True))
    return children


def print_banner(port: int, env: dict[str, str], workers: int, sign_in: str) -> None:
    """Tell the user where things are (the Redis password shown as ***)."""
    base = f"http://localhost:{port}"
    redis_url = env.get("REDIS_URL")
    demo = env.get("TASKQUEUE_DEMO_HANDLERS", "").strip().lower() in TRUE_WORDS
    lines = [
        "",
        "  taskqueue is running",
        f"    Web:          {base}/",
        f"    Dashboard:    {base}/dashboard/",
        f"    API docs:     {base}/api/docs/",
        f"    Django admin: {base}/django-admin/",
        f"    Metrics:      {base}/metrics",
        f"    Sign in:      {sign_in}",
        f"    Redis:        {redact(redis_url) if redis_url else '(default from settings)'}",
        f"    Workers:      {workers}",
        f"    Demo tasks:   {'on' if demo else 'off'}",
        "  Press Ctrl-C to stop (a second Ctrl-C forces workers to exit).",
        "",
    ]
    print("\n".join(lines), flush=True)


class Supervisor:
    """Watch the children; stop them all on a signal or when one dies."""

    def __init__(self, children: list[Child], grace: float) -> None:
        self.children = children
        self.grace = grace
        self.stop_requests = 0
        self.wakeup = threading.Event()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Record a Ctrl-C/SIGTERM; a second one forces the workers."""
        self.stop_requests += 1
        self.wakeup.set()
        if self.stop_requests > 1:
            log.warning("Second stop request: forcing workers to exit")
            self.signal_workers(signal.SIGTERM)

    def install(self) -> None:
        """Route SIGINT and SIGTERM to on_signal."""
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)

    def run(self) -> int:
        """Supervise until stopped; return the launcher's exit code."""
        died = self.wait_for_stop_or_death()
        if died is not None:
            log.error("%s exited unexpectedly with code %s", died.name, died.process.returncode)
        else:
            log.info("Stopping: draining workers, then daphne")
        self.shutdown()
        return 1 if died is not None else 0

    def wait_for_stop_or_death(self) -> Child | None:
        """Block until a stop signal (None) or a child exits (that child)."""
        while not self.stop_requests:
            for child in self.children:
                if not child.alive:
                    return child
            self.wakeup.wait(POLL_INTERVAL)
        return None

    def signal_workers(self, signum: int) -> None:
        """Send ``signum`` to every live worker."""
        for child in self.children:
            if child.is_worker:
                child.signal(signum)

    def shutdown(self) -> None:
        """SIGTERM workers so they drain, then daphne; kill whatever outlives the grace."""
        for child in sorted(self.children, key=lambda c: not c.is_worker):
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in self.children:
            self.wait_or_kill(child, deadline)

    def wait_or_kill(self, child: Child, deadline: float) -> None:
        """Wait for ``child`` until ``deadline``, then SIGKILL it."""
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("%s did not stop in time; killing it", child.name)
            child.process.kill()
            child.process.wait()


def shutdown_grace() -> float:
    """Seconds to wait for children: the workers' grace plus a margin."""
    grace = os.environ.get("TASKQUEUE_SHUTDOWN_GRACE") or DEFAULTS["SHUTDOWN_GRACE"]
    return float(grace) + STOP_MARGIN


def serve(args: argparse.Namespace, redis_url: str | None) -> int:
    """Migrate, start the children and supervise them."""
    env = child_env(redis_url)
    migrate(env)
    sign_in = ensure_first_admin(env)
    supervisor = Supervisor([], shutdown_grace())
    supervisor.install()
    supervisor.children = start_children(args, env)
    print_banner(args.port, env, args.workers, sign_in)
    return supervisor.run()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s launcher: %(message)s")
    args = parse_args(argv)
    os.umask(0o077)  # whatever this run and its children create is owner-only
    prepare_var_dir()
    redis_url = os.environ.get("REDIS_URL") or None
    try:
        server = None if redis_url or args.no_redis else start_redis()
    except RedisServerError as exc:
        log.error("Cannot start the embedded Redis: %s", exc)
        return 1
    try:
        return serve(args, server.url if server else redis_url)
    except subprocess.CalledProcessError as exc:
        log.error("%s failed with code %d", " ".join(map(str, exc.cmd)), exc.returncode)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if server is not None:
            stop_redis(server)
            log.info("Embedded Redis stopped")


if __name__ == "__main__":
    sys.exit(main())
