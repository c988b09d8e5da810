"""What the inspection tests share: a handler that fails, dead letters made on demand,
and a router whose handler blocks until released."""

from __future__ import annotations

import threading
from typing import Any

import redis

from redistimers import (
    RetryPolicy,
    Router,
)

from .helpers import Recorder, SchedulerFactory

#: A retry policy that sends a timer to dead letters at its first failure.
ONCE = RetryPolicy(max_attempts=1)


def fail(payload: Any) -> None:
    raise ValueError(f"card declined: {payload}")


def dead_on(scheduler_factory: SchedulerFactory, topic: str, *timer_ids: str) -> None:
    """Make dead letters of `timer_ids` on `topic`, through a handler that fails once."""
    router = Router()
    router.handler(topic, retry=ONCE)(fail)
    scheduler = scheduler_factory(router)
    for timer_id in timer_ids:
        scheduler.set_timer(topic, timer_id, activate_in=0, timer_id=timer_id)
    assert scheduler.run_pending() == len(timer_ids)


def blocking_router(topic: str, release: threading.Event, client: redis.Redis) -> tuple[
    Router, Recorder
]:
    """A router whose `topic` handler holds its timer (one at a time) until `release`."""
    router = Router()
    recorder = Recorder(client, lambda payload, delivery: release.wait(10) and None)
    router.handler(topic, max_concurrent=1, lease_ttl=30.0)(recorder)
    return router, recorder


