"""What a Redis error means to the caller of a scheduler method: the RedisCallError that
says so in words (unreachable, full, refused credentials or permissions)."""

from __future__ import annotations

import urllib.parse

import redis

from .errors import (
    RedisAuthenticationError,
    RedisCallError,
    RedisFullError,
    RedisPermissionError,
    RedisUnavailableError,
)
from .outage import is_bad_credentials, is_out_of_memory, is_refused_access, is_transient


def describe_location(client: redis.Redis) -> str:
    """host:port (or the unix socket path) a client talks to, for error messages."""
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


def describe_user(client: redis.Redis) -> str:
    """Which Redis user a client authenticates as, for error messages."""
    user = _connection_kwargs(client).get("username")
    return f"user {user!r}" if user else "the default user"


def _connection_kwargs(client: redis.Redis) -> dict[str, object]:
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
