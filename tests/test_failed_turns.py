"""A worker's round trip that fails with an error Redis keeps answering for a while (here
BUSY: another client's script runs past lua-time-limit) loses nothing: the outcomes of
that turn are sent again with the next one, so no timer waits for its lease to expire."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from redistimers import Router, TimerScheduler
from redistimers.testing import RedisServer

from .helpers import wait_for

BUSY_LOOP = """
local t = redis.call('TIME')
local stop = tonumber(t[1]) + tonumber(ARGV[1])
while tonumber(redis.call('TIME')[1]) < stop do end
return 1
"""


@pytest.fixture
def server() -> Iterator[RedisServer]:
    own = RedisServer(config={"lua-time-limit": "100"})
    own.start()
    yield own
    own.close()


@pytest.mark.slow
def test_outcomes_of_a_turn_that_failed_are_settled_by_the_next(server: RedisServer) -> None:
    handled = threading.Event()
    busy_started = threading.Event()
    calls: list[int] = []
    router = Router()
    probe = server.client()

    def redis_is_busy() -> bool:
        try:
            probe.ping()
        except redis.exceptions.ResponseError as exc:
            return "BUSY" in str(exc)
        return False

    @router.handler("jobs", lease_ttl=60)
    def handle(payload: int) -> None:
        calls.append(payload)
        busy_started.wait(10)
        wait_for(redis_is_busy, 10)  # finish while another client's script keeps Redis BUSY
        handled.set()

    scheduler = TimerScheduler.from_url(server.url, routers=[router])
    scheduler.set_timer("jobs", 1, activate_in=0, timer_id="a")
    hog = server.client(socket_timeout=30)

    def keep_busy() -> None:
        busy_started.set()
        hog.eval(BUSY_LOOP, 0, 2)

    with scheduler:
        wait_for(lambda: calls, 10)
        busy = threading.Thread(target=keep_busy)
        busy.start()
        handled.wait(10)
        busy.join(30)
        wait_for(lambda: scheduler.stats("jobs").pending == 0, 15)
    assert calls == [1], "delivered again: its outcome was lost with the failed turn"
    assert scheduler.metrics().succeeded == 1
