"""run_pending runs the worker's own engine in one pass on the calling thread: suspects
run alone as in the threads, an interrupted handler's timer is settled before the
interrupt goes on, and Redis errors reach the caller instead of being waited out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import redis

from redistimers import RedisUnavailableError, Router, TimerScheduler

from .helpers import UTC, RecordingFactory

LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=UTC)


def test_run_pending_marks_a_suspect_as_running_alone_while_its_handler_runs(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    leases: dict[str, str] = {}

    def look(payload: Any, delivery: Any) -> None:
        lease = redis_client.hget("redistimers:{jobs}:lease", payload)
        leases[payload] = lease.decode() if lease else ""

    scheduler, handler = recording("jobs", look)
    for timer_id in ("neighbour", "suspect"):
        scheduler.set_timer("jobs", timer_id, activate_at=LONG_AGO, timer_id=timer_id)
    # The suspect's previous delivery never reported back: its lease is there, expired.
    redis_client.hset("redistimers:{jobs}:lease", "suspect", "12")
    redis_client.zadd("redistimers:{jobs}:due", {"suspect": 0})

    assert scheduler.run_pending() == 2
    assert sorted(handler.payloads) == ["neighbour", "suspect"]
    assert leases["suspect"].endswith("*"), "Redis was not told it runs alone"
    assert not leases["neighbour"].endswith("*")
    assert scheduler.metrics().isolated == 1
    assert scheduler.stats("jobs").pending == 0


def test_an_interrupted_handler_s_timer_is_settled_before_the_interrupt_goes_on(
    recording: RecordingFactory,
) -> None:
    def interrupt(payload: Any, delivery: Any) -> None:
        raise KeyboardInterrupt

    scheduler, handler = recording("jobs", interrupt)
    scheduler.set_timer("jobs", "x", activate_at=LONG_AGO, timer_id="x")
    with pytest.raises(KeyboardInterrupt):
        scheduler.run_pending()
    info = scheduler.get_timer("jobs", "x")
    assert info is not None
    assert (info.leased, info.attempts) == (False, 1), "left leased until its lease expires"
    assert len(handler.calls) == 1


def test_run_pending_raises_redis_errors_instead_of_waiting_them_out() -> None:
    router = Router()
    router.handler("jobs")(lambda payload: None)
    scheduler = TimerScheduler.from_url(
        "redis://127.0.0.1:1/0", routers=[router], socket_connect_timeout=0.5
    )
    with pytest.raises(RedisUnavailableError, match="cannot reach Redis"):
        scheduler.run_pending()
    assert scheduler.metrics().redis_errors == 1
