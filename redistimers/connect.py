"""Redis URLs into clients: one server, a Sentinel-managed primary, or a Redis Cluster.

- ``redis://``, ``rediss://``, ``unix://``: one server (redis-py's own URLs);
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``: the
  primary of a Sentinel-managed group, found through the sentinels (port 26379 unless
  given) and followed across failovers;
- ``redis+cluster://[user:password@]host:port[,host:port...]``: a Redis Cluster, discovered
  from any of the given nodes (port 6379 unless given).

The user name and password are those of the Redis servers; sentinels that want their own
take ``sentinel_kwargs={"password": ...}``. A URL that cannot be read is a
ConfigurationError naming the part that is wrong, with the password never shown.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Union

import attrs
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from .errors import ConfigurationError, RedisUnavailableError
from .failures import redacted_url

#: A client redistimers works with: one server (or a Sentinel's primary), or a Cluster.
RedisClient = Union[redis.Redis, RedisCluster]  # noqa: UP007 (an alias, read at run time)

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
_SINGLE_SCHEMES = ("redis", "rediss", "unix")
_SCHEMES = (*_SINGLE_SCHEMES, SENTINEL_SCHEME, CLUSTER_SCHEME)


@attrs.frozen
class ParsedUrl:
    """What a ``redis+sentinel://`` or ``redis+cluster://`` URL says."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    service: str | None = None
    db: int = 0


def client_from_url(url: str, **options: Any) -> RedisClient:
    """A client of the Redis at `url` (see the module's docstring); `options` go to the
    client (``socket_timeout``, ``decode_responses``, ...). It does not connect yet."""
    scheme = _scheme_of(url)
    _without_maintenance_notifications(options)
    if scheme in _SINGLE_SCHEMES:
        try:
            return redis.Redis.from_url(url, **options)
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {redacted_url(url)!r}: {exc}"
            ) from None  # redis-py's error may hold the URL, password and all
    parsed = parse_url(url)
    credentials = {
        key: value
        for key, value in (("username", parsed.username), ("password", parsed.password))
        if value is not None
    }
    if parsed.scheme == CLUSTER_SCHEME:
        options.pop("retry", None)  # a Cluster client retries by its own rules (MOVED, ASK)
        nodes = [ClusterNode(host, port) for host, port in parsed.hosts]  # type: ignore[no-untyped-call]
        cluster_options: dict[str, Any] = {**credentials, **options}
        try:
            return RedisCluster(startup_nodes=nodes, **cluster_options)
        except redis.exceptions.RedisClusterException as exc:  # it reads the layout now
            where = ",".join(f"{host}:{port}" for host, port in parsed.hosts)
            raise RedisUnavailableError(
                f"cannot reach the Redis Cluster at {where}: {exc}"
            ) from None
    sentinel_kwargs = options.pop("sentinel_kwargs", None)
    if sentinel_kwargs is None:  # sentinels answer with the same socket settings
        sentinel_kwargs = {
            key: options[key]
            for key in ("socket_connect_timeout", "socket_timeout", "socket_keepalive",
                        "maint_notifications_config")
            if key in options
        }
    sentinel = Sentinel(list(parsed.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    assert parsed.service is not None  # parse_url requires it
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.service, db=parsed.db, **credentials, **options
    )
    return client


def _without_maintenance_notifications(options: dict[str, Any]) -> None:
    """Turn off redis-py's maintenance notifications (6.4+) unless `options` say otherwise:
    on "auto", every new connection sends CLIENT MAINT_NOTIFICATIONS, which Redis before
    8.2 refuses (a wasted round trip, and a log line each time)."""
    if "maint_notifications_config" in options:
        return
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # an older redis-py, without them
        return
    options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)


def is_single_server(url: str) -> bool:
    """True for redis-py's own one-server URLs (``redis://``, ``rediss://``, ``unix://``)."""
    return _scheme_of(url) in _SINGLE_SCHEMES


def check_url(url: str) -> None:
    """Refuse a URL that no client could be made of (ConfigurationError), at once."""
    scheme = _scheme_of(url)
    if scheme in _SINGLE_SCHEMES:
        try:
            redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis URL {redacted_url(url)!r}: {exc}") from None
    else:
        parse_url(url)


def parse_url(url: str) -> ParsedUrl:
    """The parts of a ``redis+sentinel://`` or ``redis+cluster://`` URL."""
    scheme = _scheme_of(url)
    shown = redacted_url(url)

    def refuse(problem: str) -> ConfigurationError:
        return ConfigurationError(f"invalid Redis URL {shown!r}: {problem}")

    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise refuse(f"{scheme}:// is one server's URL, read by redis-py")
    rest = url[len(scheme) + 3 :]
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    if query or fragment:
        raise refuse(
            "query parameters are not read here: pass options as keyword arguments "
            "(TimerScheduler.from_url(url, socket_timeout=...))"
        )
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        username = urllib.parse.unquote(user_text) or None
        password = urllib.parse.unquote(password_text) if colon else None
    if not hostlist:
        raise refuse("no host: give host:port, or several separated by commas")
    default_port = 26379 if scheme == SENTINEL_SCHEME else 6379
    hosts = tuple(_host_port(item, default_port, refuse) for item in hostlist.split(","))
    parts = [urllib.parse.unquote(part) for part in path.split("/")] if path else []
    if scheme == CLUSTER_SCHEME:
        if any(parts):
            raise refuse(
                "a Cluster URL has no path: a Redis Cluster has one database (db 0)"
            )
        return ParsedUrl(scheme, hosts, username, password)
    if not parts or not parts[0]:
        raise refuse(
            "no service name: redis+sentinel://host:port[,host:port...]/service_name[/db]"
        )
    if len(parts) > 2 or (len(parts) == 2 and not parts[1]):
        raise refuse("the path is /service_name or /service_name/db")
    db = 0
    if len(parts) == 2:
        if not (parts[1].isascii() and parts[1].isdigit()):
            raise refuse(f"the database {parts[1]!r} is not a number")
        db = int(parts[1])
    return ParsedUrl(scheme, hosts, username, password, parts[0], db)


def _scheme_of(url: object) -> str:
    if not isinstance(url, str):
        raise ConfigurationError(f"a Redis URL is a str, got {type(url).__name__}")
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        shown = redacted_url(url)
        raise ConfigurationError(
            f"invalid Redis URL {shown!r}: it must start with one of "
            + ", ".join(f"{name}://" for name in _SCHEMES)
        )
    return scheme.lower()


def _host_port(item: str, default_port: int, refuse: Any) -> tuple[str, int]:
    text = item.strip()
    if text.startswith("["):  # an IPv6 address: [::1]:6379
        host, bracket, port_text = text[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise refuse(f"the address {item!r} is not [IPv6]:port")
        port_text = port_text[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise refuse(f"the address {item!r} has no host")
    if not port_text:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise refuse(f"the port of {item!r} is not a port number (1 to 65535)")
    return host, int(port_text)
