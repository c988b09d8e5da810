"""What the tests' helper processes (worker scripts, the gunicorn app) share."""

from __future__ import annotations

import os
import time

import redis

from redistimers import TimerScheduler


def exit_with_parent(parent: int) -> None:
    """End this process once `parent` is gone, so a crashed test run leaves none behind
    (run it on a daemon thread)."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(3)


def announce_ready(scheduler: TimerScheduler, client: redis.Redis, key: str, name: str) -> None:
    """RPUSH `name` to `key` once `scheduler` runs (gives up after a minute)."""
    deadline = time.monotonic() + 60
    while not scheduler.running:
        if time.monotonic() > deadline:
            return
        time.sleep(0.005)
    client.rpush(key, name)
