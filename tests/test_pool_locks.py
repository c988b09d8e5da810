"""Forking beside a busy Redis client: the connection pool's locks (private attributes of
redis-py, read in one module) are held across os.fork(); without them, forking works as
redis-py alone makes it."""

from __future__ import annotations

import os
import threading

import pytest
import redis

from redistimers import TimerScheduler, pool_locks


def _fork_and_set_a_timer(scheduler: TimerScheduler) -> int:
    """The exit code of a forked child that sets a timer through `scheduler`."""
    pid = os.fork()
    if pid == 0:  # the child: exit at once, whatever happens
        try:
            scheduler.set_timer("forked", "child", activate_in=60, timer_id="child")
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_pool_locks_are_taken_and_given_back(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    held = pool_locks.hold_pool_locks(client)
    taken_elsewhere: list[bool] = []
    try:
        assert len(held) == 2
        other = threading.Thread(
            target=lambda: taken_elsewhere.extend(lock.acquire(blocking=False) for lock in held)
        )
        other.start()
        other.join(5)
        assert taken_elsewhere == [False, False], "another thread could take them"
    finally:
        for lock in reversed(held):
            lock.release()
    client.ping()  # the pool is usable again


def test_a_child_forked_beside_busy_threads_uses_redis(
    redis_url: str, redis_client: redis.Redis
) -> None:
    scheduler = TimerScheduler.from_url(redis_url)
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            scheduler.topics()

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    try:
        codes = [_fork_and_set_a_timer(scheduler) for _ in range(5)]
    finally:
        stop.set()
        thread.join(5)
    assert codes == [0] * 5
    assert scheduler.get_timer("forked", "child") is not None


def test_without_the_pool_locks_nothing_is_held_and_forking_still_works(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redis-py without these private attributes: forking is as safe as redis-py alone
    makes it (a fork beside a thread holding the pool's lock is then that thread's luck,
    so this one forks with no other thread)."""
    monkeypatch.setattr(pool_locks, "_LOCK_NAMES", ("_no_such_lock",))
    scheduler = TimerScheduler.from_url(redis_url)
    scheduler.topics()  # the pool has a connection to reset in the child
    assert pool_locks.hold_pool_locks(redis.Redis.from_url(redis_url)) == []
    assert _fork_and_set_a_timer(scheduler) == 0
    assert scheduler.get_timer("forked", "child") is not None
