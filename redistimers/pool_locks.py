"""The locks of a redis-py connection pool, to hold across os.fork().

redis-py has no public way to make a pool safe to fork while other threads use it: a
child that inherits a pool lock held by another thread waits for ever when the pool
resets itself there. The locks are private attributes (`_fork_lock`, `_lock`), so this
is the one module that reads them; where a redis-py version has neither, nothing is held
and forking is as safe as redis-py makes it on its own.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from .connect import RedisClient

log = logging.getLogger("redistimers.forking")

#: The pool's locks, in the order redis-py takes them.
_LOCK_NAMES = ("_fork_lock", "_lock")

#: Longest wait for a lock another thread holds before forking without it.
_TIMEOUT_S = 5.0


def hold_pool_locks(client: RedisClient) -> list[Any]:
    """Take the locks of `client`'s connection pools (those they have: one pool, or one
    per node of a Cluster); returns what was taken, to release after the fork in the
    parent and in the child. Two clients sharing a pool take its locks once."""
    held: list[Any] = []
    for pool in _pools_of(client):
        if not any(lock is getattr(pool, name, None) for lock in held for name in _LOCK_NAMES):
            held += _hold(pool)
    return held


def _pools_of(client: RedisClient) -> list[Any]:
    if isinstance(client, redis.Redis):
        return [client.connection_pool]
    return [
        node.redis_connection.connection_pool
        for node in client.get_nodes()  # type: ignore[no-untyped-call]
        if node.redis_connection is not None
    ]


def _hold(pool: Any) -> list[Any]:
    held = []
    for name in _LOCK_NAMES:
        lock = getattr(pool, name, None)
        if lock is None or not hasattr(lock, "acquire"):
            continue
        if lock.acquire(timeout=_TIMEOUT_S):
            held.append(lock)
        else:
            log.warning("forking while another thread holds the Redis pool's %s", name)
    return held
