"""Redis topologies: one URL names a standalone server, a Sentinel-managed master or a
Cluster, and :func:`make_client` opens it.

    redis://[[user]:password@]host[:port][/db]            standalone (also rediss://)
    unix://[[user]:password@]/path/to/socket[?db=N]      standalone over a socket
    redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER[/DB]
    redis+cluster://[[user]:password@]host:port[,host:port...]

``rediss+sentinel://`` and ``rediss+cluster://`` use TLS.  With Sentinel the credentials
are sent to the master and to the sentinels; add ``?sentinel_auth=none`` when the
sentinels themselves require no password.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

BLOCKING_EXTRA_TIMEOUT = 5.0
"""Seconds a blocking client's socket timeout adds to the normal one (BLPOP waits)."""

SENTINEL_PORT = 26379
REDIS_PORT = 6379


class Kind(StrEnum):
    """The shape of a Redis deployment."""

    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": (Kind.STANDALONE, False),
    "rediss": (Kind.STANDALONE, True),
    "unix": (Kind.STANDALONE, False),
    "redis+sentinel": (Kind.SENTINEL, False),
    "rediss+sentinel": (Kind.SENTINEL, True),
    "redis+cluster": (Kind.CLUSTER, False),
    "rediss+cluster": (Kind.CLUSTER, True),
}
URL_PREFIXES = tuple(f"{scheme}://" for scheme in SCHEMES)


@dataclass(frozen=True)
class RedisTarget:
    """What a Redis URL names: its kind, nodes (sentinels or cluster seeds), credentials."""

    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = None
    tls: bool = False
    db: int = 0
    master_name: str = ""
    sentinel_auth: bool = True

    def __repr__(self) -> str:  # never show the password
        return (f"RedisTarget(kind={self.kind.value!r}, nodes={self.nodes!r}, "
                f"master_name={self.master_name!r}, db={self.db}, tls={self.tls})")

    @property
    def credentials(self) -> dict[str, Any]:
        """``username``/``password`` keyword arguments for redis-py (empty when none)."""
        found = {"username": self.username, "password": self.password}
        return {key: value for key, value in found.items() if value is not None}


def parse_redis_url(url: str) -> RedisTarget:
    """Parse a Redis URL of any supported scheme; raise ValueError naming what is wrong
    (the password never appears in the message)."""
    if not isinstance(url, str):
        raise ValueError(f"a Redis URL must be a string, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        names = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(f"unknown Redis URL scheme {scheme.split(':')[0][:20]!r}; "
                         f"use one of {names}")
    kind, tls = SCHEMES[scheme.lower()]
    if kind is Kind.STANDALONE:
        return _standalone(url, tls)
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    default_port = SENTINEL_PORT if kind is Kind.SENTINEL else REDIS_PORT
    nodes = tuple(_node(text, default_port) for text in hosts.split(","))
    options = _options(query, kind)
    if kind is Kind.CLUSTER:
        if path not in ("", "0"):
            raise ValueError("a redis+cluster:// URL takes no database part: a cluster has "
                             "database 0 only")
        return RedisTarget(kind, url, nodes, username, password, tls)
    master, db = _master_and_db(path)
    return RedisTarget(kind, url, nodes, username, password, tls, db, master,
                       sentinel_auth=options.get("sentinel_auth", "yes") != "none")


def _standalone(url: str, tls: bool) -> RedisTarget:
    try:
        parsed = redis.connection.parse_url(url)
    except ValueError as exc:
        raise ValueError(f"malformed Redis URL: {_without(str(exc), url)}") from None
    path = urlsplit(url).path.strip("/")
    if not url.lower().startswith("unix:") and path and not path.isdigit():
        raise ValueError(f"the database in a Redis URL must be a number, not {path[:10]!r}")
    host, port = parsed.get("host"), parsed.get("port")
    nodes = ((str(host), int(port or REDIS_PORT)),) if host else ()
    return RedisTarget(Kind.STANDALONE, url, nodes, parsed.get("username"),
                       parsed.get("password"), tls, int(parsed.get("db") or 0))


def _without(message: str, url: str) -> str:
    """``message`` with any URL text removed (it may carry a password)."""
    return message.replace(url, "<url>")


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    return unquote(user) or None, unquote(password) if colon else None


def _node(text: str, default_port: int) -> tuple[str, int]:
    if not text:
        raise ValueError("a host is missing in the URL's host list (host:port,host:port)")
    if text.startswith("["):
        host, _, port_text = text[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"a host is missing before the port in {text!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port {port_text[:10]!r} for host {host!r}")
    return host, int(port_text)


def _options(query: str, kind: Kind) -> dict[str, str]:
    found = {key: values[-1] for key, values in parse_qs(query).items()}
    allowed = {"sentinel_auth": ("yes", "none")} if kind is Kind.SENTINEL else {}
    for key, value in found.items():
        if key not in allowed:
            raise ValueError(f"unknown option {key!r} in a redis+{kind.value}:// URL")
        if value not in allowed[key]:
            raise ValueError(f"{key} must be one of {', '.join(allowed[key])}")
    return found


def _master_and_db(path: str) -> tuple[str, int]:
    master, _, db_text = path.partition("/")
    if not master:
        raise ValueError("a redis+sentinel:// URL must name the master after the hosts: "
                         "redis+sentinel://host:26379/MASTER_NAME[/DB]")
    db_text = db_text.rstrip("/")
    if "/" in db_text:
        raise ValueError("a redis+sentinel:// URL has at most /MASTER_NAME/DB after the hosts")
    if db_text and not db_text.isdigit():
        raise ValueError(f"the database in a redis+sentinel:// URL must be a number, "
                         f"not {db_text[:10]!r}")
    return unquote(master), int(db_text or 0)


def make_client(url: str, *, decode_responses: bool = True,
                socket_timeout: float | None = None,
                socket_connect_timeout: float | None = None,
                health_check_interval: float = 0, **kw: Any) -> Any:
    """A client for ``url`` that the broker uses like ``redis.Redis``: ``redis.Redis`` for
    a standalone server, the master of a Sentinel set (found again after a failover), or
    a ``RedisCluster`` (MOVED/ASK handled)."""
    target = parse_redis_url(url)
    options: dict[str, Any] = {
        "decode_responses": decode_responses, "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "health_check_interval": health_check_interval, **kw,
    }
    if target.kind is Kind.STANDALONE:
        return redis.Redis.from_url(url, **options)
    if target.tls:
        options["ssl"] = True
    if target.kind is Kind.CLUSTER:
        return _cluster(target, options)
    return sentinel(target, socket_timeout, socket_connect_timeout).master_for(
        target.master_name, db=target.db, **target.credentials, **options)


def _cluster(target: RedisTarget, options: dict[str, Any]) -> RedisCluster:
    """A RedisCluster; it reads the slot map at once, so an unreachable cluster is a
    ``redis.ConnectionError`` here (the message names the seeds, never the password)."""
    nodes = [ClusterNode(host, port) for host, port in target.nodes]
    try:
        return RedisCluster(startup_nodes=nodes, **target.credentials, **options)
    except RedisClusterException as exc:
        seeds = ", ".join(f"{host}:{port}" for host, port in target.nodes)
        raise redis.ConnectionError(f"no Redis Cluster node answers at {seeds}: "
                                    f"{_without(str(exc), target.url)}") from None


def sentinel(target: RedisTarget, socket_timeout: float | None = None,
             socket_connect_timeout: float | None = None) -> Sentinel:
    """The redis-py ``Sentinel`` for a sentinel URL (sentinels get the URL's credentials
    unless it says ``sentinel_auth=none``)."""
    kwargs: dict[str, Any] = {"socket_timeout": socket_timeout,
                              "socket_connect_timeout": socket_connect_timeout}
    if target.sentinel_auth:
        kwargs.update(target.credentials)
    if target.tls:
        kwargs["ssl"] = True
    return Sentinel(list(target.nodes), sentinel_kwargs=kwargs)


def make_blocking_client(url: str, *, socket_timeout: float,
                         socket_connect_timeout: float | None = None,
                         health_check_interval: float = 0, **kw: Any) -> Any:
    """A client of its own for blocking waits (BLPOP): its socket timeout is longer than
    ``socket_timeout`` so a wait of that length never times out on the socket."""
    return make_client(url, socket_timeout=socket_timeout + BLOCKING_EXTRA_TIMEOUT,
                       socket_connect_timeout=socket_connect_timeout,
                       health_check_interval=health_check_interval, **kw)


def reachable_sentinels(target: RedisTarget, timeout: float = 1.0) -> list[str]:
    """The ``host:port`` of each sentinel of ``target`` that answers PING."""
    found = []
    for host, port in target.nodes:
        kwargs: dict[str, Any] = dict(target.credentials) if target.sentinel_auth else {}
        client = redis.Redis(host=host, port=port, socket_timeout=timeout,
                             socket_connect_timeout=timeout, ssl=target.tls,
                             retry=Retry(NoBackoff(), 0), **kwargs)
        try:
            if client.ping():
                found.append(f"{host}:{port}")
        except (redis.RedisError, OSError):
            pass
        finally:
            client.close()
    return found


def channel_layer_host(url: str) -> str | dict[str, Any]:
    """The entry for channels-redis's ``hosts`` that reaches the same Redis as ``url``.

    Sentinel: channels-redis's own sentinel form (master found through the sentinels).
    Cluster: channels-redis cannot talk to a cluster, so the first seed node, as a plain
    server: a PUBLISH on any cluster node reaches a SUBSCRIBE on every node, so the task
    events the scripts publish arrive there (while that node is up).
    """
    target = parse_redis_url(url)
    if target.kind is Kind.STANDALONE:
        return url
    if target.kind is Kind.CLUSTER:
        host, port = target.nodes[0]
        auth = ""
        if target.password is not None or target.username is not None:
            user, password = (quote(v or "", safe="") for v in (target.username, target.password))
            auth = f"{user}:{password}@"
        host_text = f"[{host}]" if ":" in host else host
        return f"{'rediss' if target.tls else 'redis'}://{auth}{host_text}:{port}/0"
    sentinel_kwargs = dict(target.credentials) if target.sentinel_auth else {}
    entry: dict[str, Any] = {"sentinels": list(target.nodes), "master_name": target.master_name,
                             "sentinel_kwargs": sentinel_kwargs, "db": target.db,
                             **target.credentials}
    if target.tls:
        entry["ssl"] = True
        entry["sentinel_kwargs"]["ssl"] = True
    return entry
