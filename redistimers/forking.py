"""What happens to schedulers around os.fork() (gunicorn --preload, multiprocessing).

Before the fork, the Redis connection pools' locks are taken, so that the child never
inherits one held by a thread it does not have (redis-py resets the pool in the child
under those locks). In the child, a scheduler started in the parent forgets its
threads: it is not running there, and start() starts it properly.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

from .store import TimerStore

if TYPE_CHECKING:
    from .scheduler import TimerScheduler

_tracked: weakref.WeakSet[TimerScheduler] = weakref.WeakSet()
_held: list[Any] = []


def track(scheduler: TimerScheduler) -> None:
    """Look after `scheduler` at every fork of this process."""
    _tracked.add(scheduler)


def _before() -> None:
    stores = {id(s._store.client.connection_pool): s._store for s in list(_tracked)}
    for store in stores.values():
        _held.extend(store.hold_for_fork())


def _after_in_parent() -> None:
    TimerStore.release_after_fork(_held)
    _held.clear()


def _after_in_child() -> None:
    _after_in_parent()
    for scheduler in list(_tracked):
        scheduler._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
