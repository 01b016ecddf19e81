"""The local run's private files in var/: the folder 0700, everything in it owner-only.

``./run.sh`` keeps the SQLite database, the dev secret key, the embedded Redis's data
and its password here. The launcher writes ``redis-port`` while its Redis runs, so
``manage.py`` commands started beside it (without ``REDIS_URL``) find that Redis.
No Django imports: the launcher uses this before any settings exist.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tasks_app.devserver.redis import local_url

REDIS_PASSWORD_FILE = "redis-password"
REDIS_PORT_FILE = "redis-port"
ADMIN_PASSWORD_FILE = "admin-password"


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if missing; return it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def make_private(var_dir: Path) -> None:
    """Make ``var_dir`` and its folders 0700 and its files 0600 (symlinks left alone)."""
    private_dir(var_dir).chmod(0o700)
    for root, dirs, files in os.walk(var_dir):
        for name in dirs + files:
            path = Path(root) / name
            if not path.is_symlink():
                path.chmod(0o700 if path.is_dir() else 0o600)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, whatever the file's mode was."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def redis_password(var_dir: Path) -> str:
    """The embedded Redis's password from var/redis-password, made (0600) on first use."""
    path = private_dir(var_dir) / REDIS_PASSWORD_FILE
    password = path.read_text().strip() if path.exists() else ""
    if not password:
        password = secrets.token_urlsafe(32)
        write_private(path, password + "\n")
    return password


def publish_redis_port(var_dir: Path, port: int) -> None:
    """Record the running embedded Redis's port in var/redis-port."""
    write_private(var_dir / REDIS_PORT_FILE, f"{port}\n")


def withdraw_redis_port(var_dir: Path, port: int) -> None:
    """Remove var/redis-port if it still names ``port``."""
    path = var_dir / REDIS_PORT_FILE
    try:
        if path.read_text().strip() == str(port):
            path.unlink()
    except OSError:
        pass


def running_redis_url(var_dir: Path) -> str | None:
    """The URL (with password) of the Redis a running ``./run.sh`` published, or None."""
    try:
        port = int((var_dir / REDIS_PORT_FILE).read_text())
        password = (var_dir / REDIS_PASSWORD_FILE).read_text().strip()
    except (OSError, ValueError):
        return None
    return local_url(port, password) if password else None


def save_admin_password(var_dir: Path, username: str, password: str) -> Path:
    """Keep the generated first superuser's credentials in var/admin-password (0600)."""
    path = private_dir(var_dir) / ADMIN_PASSWORD_FILE
    write_private(path, f"username: {username}\npassword: {password}\n")
    return path


def saved_admin_username(var_dir: Path) -> str | None:
    """The username recorded in var/admin-password, or None without that file."""
    try:
        lines = (var_dir / ADMIN_PASSWORD_FILE).read_text().splitlines()
    except OSError:
        return None
    names = [line.partition(":")[2].strip() for line in lines if line.startswith("username:")]
    return names[0] if names else None
