"""What a Redis error means: worth waiting out (transient), refused access, a full
Redis; and, to the caller of a scheduler method, the RedisCallError that says so in words."""

from __future__ import annotations

import urllib.parse

import redis
from redis.cluster import RedisCluster

from .errors import (
    RedisAuthenticationError,
    RedisCallError,
    RedisFullError,
    RedisPermissionError,
    RedisUnavailableError,
)

#: Errors that mean "Redis cannot serve us right now" rather than "this call is wrong":
#: connection loss, timeouts, a server still loading its data, a replica mid-failover.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError,  # a replica that lost its primary, mid-failover
    redis.exceptions.SlotNotCoveredError,  # a Cluster whose failed master has no heir yet
)

_OUT_OF_MEMORY: tuple[type[Exception], ...] = tuple(
    cls for cls in (getattr(redis.exceptions, "OutOfMemoryError", None),) if cls is not None
)


#: Errors that mean "Redis will not let this user do this": a wrong password, a missing
#: ACL permission. Waiting does not help (redis-py makes the first kind a ConnectionError).
ACCESS_ERRORS: tuple[type[Exception], ...] = tuple(
    cls
    for cls in (
        redis.exceptions.AuthenticationError,
        getattr(redis.exceptions, "AuthorizationError", None),
        getattr(redis.exceptions, "NoPermissionError", None),
    )
    if cls is not None
)

#: How Redis words refused credentials, where redis-py does not make them an
#: AuthenticationError (inside a script, say).
_BAD_CREDENTIALS_WORDS = (
    "NOAUTH", "WRONGPASS", "invalid username-password", "Authentication required",
)

#: How Redis words a refused command or key inside a script (it names neither), or a
#: refused command outside one (redis-py's NoPermissionError, or a plain error).
_REFUSED_WORDS = (
    "NOPERM", "no permissions to", "can't run this command", "can't access at least one",
    *_BAD_CREDENTIALS_WORDS,
)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth waiting out: Redis unreachable, loading, failing over."""
    return isinstance(exc, TRANSIENT_ERRORS) and not is_refused_access(exc)


def is_refused_access(exc: BaseException) -> bool:
    """True when Redis refused this client: authentication failed, or its user lacks an ACL
    permission for a command, key or channel."""
    if isinstance(exc, ACCESS_ERRORS):
        return True
    text = str(exc)
    return isinstance(exc, redis.exceptions.ResponseError) and any(
        words in text for words in _REFUSED_WORDS
    )


def is_bad_credentials(exc: BaseException) -> bool:
    """True when Redis refused the user name or password (not a permission)."""
    return isinstance(exc, redis.exceptions.AuthenticationError) or (
        isinstance(exc, redis.exceptions.ResponseError)
        and any(words in str(exc) for words in _BAD_CREDENTIALS_WORDS)
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """True when Redis refused a write for want of memory (used memory over maxmemory).

    redis-py maps the "-OOM" reply of a plain command to OutOfMemoryError (stripping
    "OOM" from the message); Redis 6 reports it from inside a script as a plain error.
    """
    if isinstance(exc, _OUT_OF_MEMORY):
        return True
    text = str(exc)
    return isinstance(exc, redis.exceptions.ResponseError) and (
        text.startswith("OOM") or "OOM command not allowed" in text
        or "used memory > 'maxmemory'" in text
    )



def describe_location(client: object) -> str:
    """Where a client's Redis is, for messages: host:port, a unix socket, a Sentinel
    service with its sentinels, or a Cluster's nodes."""
    if isinstance(client, RedisCluster):
        nodes = sorted({f"{node.host}:{node.port}" for node in client.get_primaries()})  # type: ignore[no-untyped-call]
        shown = ",".join(nodes[:3]) + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")
        return f"{shown} (a Redis Cluster)"
    pool = getattr(client, "connection_pool", None)
    service = getattr(pool, "service_name", None)
    if isinstance(service, str):
        manager = getattr(pool, "sentinel_manager", None)
        sentinels = [
            f"{kwargs.get('host')}:{kwargs.get('port')}"
            for kwargs in (
                _connection_kwargs(sentinel) for sentinel in getattr(manager, "sentinels", [])
            )
        ]
        return f"{service!r} (the primary named by the sentinels {','.join(sentinels)})"
    kwargs = _connection_kwargs(client)
    if kwargs.get("path"):
        return f"unix socket {kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def redacted_url(url: str) -> str:
    """`url` with its password, if any, replaced by ``***``: fit for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def describe_user(client: object) -> str:
    """Which Redis user a client authenticates as, for error messages."""
    if isinstance(client, RedisCluster):
        user = client.get_connection_kwargs().get("username")  # type: ignore[no-untyped-call]
    else:
        user = _connection_kwargs(client).get("username")
    return f"user {user!r}" if user else "the default user"


def _connection_kwargs(client: object) -> dict[str, object]:
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    return kwargs if isinstance(kwargs, dict) else {}


def call_error(exc: BaseException, where: str, who: str) -> RedisCallError | None:
    """The RedisCallError that says what `exc` means, or None when it is none of those
    (an answer about this very call, raised as Redis gave it)."""
    if is_out_of_memory(exc):
        return RedisFullError(
            f"Redis at {where} is full: its used memory is over maxmemory, so it refuses "
            f"writes that need memory (workers go on delivering, which frees memory)"
        )
    if is_refused_access(exc):
        text = str(exc)
        if is_bad_credentials(exc):
            return RedisAuthenticationError(
                f"Redis at {where} refused to authenticate {who}: {text} (check the user "
                "name and password, in the Redis URL for instance)"
            )
        return RedisPermissionError(
            f"Redis at {where} does not let {who} do what redistimers needs: {text} (grant "
            "the ACL rule of the README's 'Redis permissions' section)"
        )
    if is_transient(exc):
        return RedisUnavailableError(f"cannot reach Redis at {where}: {exc}")
    return None
