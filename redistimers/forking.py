"""What happens to schedulers around os.fork() (gunicorn --preload, multiprocessing).

Before the fork, the Redis connection pools' locks are taken, so that the child never
inherits one held by a thread it does not have (redis-py resets the pool in the child
under those locks). In the child, each tracked owner is told to forget its threads: a
scheduler started in the parent is not running there, and start() starts it properly.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

from .pool_locks import hold_pool_locks
from .store import TimerStore

_tracked: weakref.WeakKeyDictionary[TimerStore, weakref.WeakMethod[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)
_held: list[Any] = []


def track(store: TimerStore, forget_in_child: Callable[[], None]) -> None:
    """Look after `store`'s connection pool at every fork of this process, and call
    `forget_in_child` (a bound method, held weakly) in the child."""
    _tracked[store] = weakref.WeakMethod(forget_in_child)


def _before() -> None:
    clients = {id(store.client): store.client for store in list(_tracked)}
    for client in clients.values():
        _held.extend(hold_pool_locks(client))


def _after_in_parent() -> None:
    for lock in reversed(_held):
        lock.release()
    _held.clear()


def _after_in_child() -> None:
    _after_in_parent()
    for reference in list(_tracked.values()):
        forget = reference()
        if forget is not None:
            forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
