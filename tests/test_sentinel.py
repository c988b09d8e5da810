"""A scheduler and its workers on a Sentinel-managed primary: through a
``redis+sentinel://`` URL and through redis-py's own ``master_for`` client, and across a
failover: two workers draining 2,000 timers while the primary is killed deliver every one
of them (at least once, never early), logging the outage once and the recovery once."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import redis
from redis.sentinel import Sentinel

from redistimers import Delivery, Router, TimerScheduler, TimerSpec
from redistimers.testing import RedisSentinelGroup

from .helpers import UTC, wait_for

LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=UTC)
#: How much earlier than its due time (by the same machine's clock as Redis's) a handler
#: may see a timer, for the rounding of clocks read in two processes.
TOLERANCE = dt.timedelta(milliseconds=5)

SentinelSchedulers = Callable[..., TimerScheduler]


@attrs.frozen
class Seen:
    delivery: Delivery
    local_now: dt.datetime


class Deliveries:
    """A handler recording each call with this machine's clock (the one Redis reads too)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, list[Seen]] = {}
        self.calls = 0

    def __call__(self, payload: Any, delivery: Delivery) -> None:
        seen = Seen(delivery, dt.datetime.now(UTC))
        with self.lock:
            self.seen.setdefault(delivery.timer_id, []).append(seen)
            self.calls += 1

    def distinct(self) -> int:
        with self.lock:
            return len(self.seen)

    def early(self) -> list[Seen]:
        with self.lock:
            return [
                seen
                for calls in self.seen.values()
                for seen in calls
                if seen.local_now + TOLERANCE < seen.delivery.due_at
            ]


def _router(topic: str, handler: Callable[[Any, Delivery], None], **options: Any) -> Router:
    router = Router()
    router.handler(topic, **options)(handler)
    return router


@pytest.fixture
def sentinel_schedulers(
    sentinel_url: str, stopped_at_teardown: list[TimerScheduler]
) -> SentinelSchedulers:
    """make(*routers, **options): schedulers of the session's (flushed) sentinel group."""

    def make(*routers: Router, **options: Any) -> TimerScheduler:
        scheduler = TimerScheduler.from_url(sentinel_url, routers=list(routers), **options)
        stopped_at_teardown.append(scheduler)
        return scheduler

    return make


def _ask(client: redis.Redis, *command: Any) -> Any:
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


# -- through the sentinels -----------------------------------------------------------------------


def test_timers_scheduled_through_a_sentinel_url_are_delivered_by_its_primary(
    sentinel_schedulers: SentinelSchedulers, redis_sentinel: RedisSentinelGroup
) -> None:
    handler = Deliveries()
    scheduler = sentinel_schedulers(_router("invoices", handler))
    ids = scheduler.set_timers(
        TimerSpec("invoices", {"i": i}, activate_in=0.2 + i / 100, timer_id=f"inv-{i}")
        for i in range(50)
    )
    info = scheduler.set_timer_and_get("invoices", "last", activate_in=0.8, timer_id="last")
    assert scheduler.topics() == ["invoices"]
    assert dt.timedelta(milliseconds=700) < info.remaining <= dt.timedelta(milliseconds=800)
    primary = redis_sentinel.primary.client()
    try:
        assert primary.zcard("redistimers:{invoices}:due") == 51  # on the primary itself
    finally:
        primary.close()
    assert "mymaster" in repr(scheduler)

    scheduler.start()
    wait_for(lambda: handler.distinct() == 51, timeout=10)
    assert set(handler.seen) == {*ids, "last"}
    assert handler.calls == 51
    assert handler.early() == []
    wait_for(lambda: scheduler.stats("invoices").pending == 0)


def test_a_scheduler_takes_a_sentinel_master_for_client(
    redis_sentinel: RedisSentinelGroup, sentinel_url: str
) -> None:
    sentinel = Sentinel(redis_sentinel.sentinel_addresses, socket_timeout=2.0)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(redis_sentinel.service)  # type: ignore[no-untyped-call]
    try:
        handler = Deliveries()
        scheduler = TimerScheduler(client, [_router("jobs", handler)])
        scheduler.set_timer("jobs", {"n": 1}, activate_at=LONG_AGO, timer_id="due")
        scheduler.set_timer("jobs", {"n": 2}, activate_in=3600, timer_id="later")
        assert scheduler.run_pending() == 1
        assert list(handler.seen) == ["due"]
        later = scheduler.get_timer("jobs", "later")
        assert later is not None
        assert later.payload == {"n": 2}
        assert scheduler.cancel_timer("jobs", "later")
        assert scheduler.stats("jobs").pending == 0
    finally:
        client.close()


# -- a failover while the workers drain ---------------------------------------------------------


@pytest.mark.slow
def test_two_workers_deliver_every_timer_across_a_failover_and_log_it_once_each(
    fresh_sentinel_group: RedisSentinelGroup,
    stopped_at_teardown: list[TimerScheduler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="redistimers.outage")
    group = fresh_sentinel_group
    count = 2000
    handler = Deliveries()
    workers = []
    for _ in range(2):
        worker = TimerScheduler.from_url(
            group.url, routers=[_router("drain", handler, max_concurrent=20)],
            socket_timeout=2.0, socket_connect_timeout=1.0,
        )
        stopped_at_teardown.append(worker)
        workers.append(worker)
    ids = workers[0].set_timers(
        TimerSpec("drain", {"i": i}, activate_in=0.3 + 2.0 * i / count, timer_id=f"t{i}")
        for i in range(count)
    )
    # Every timer is on the replica before the primary goes: the failover loses none.
    primary = group.primary.client()
    try:
        assert _ask(primary, "WAIT", 1, 5000) == 1
    finally:
        primary.close()
    for worker in workers:
        worker.start()

    wait_for(lambda: handler.distinct() >= count // 4, timeout=10)
    killed_at = time.monotonic()
    group.kill_primary()
    delivered_before = handler.distinct()
    assert delivered_before < count, "the drain ended before the primary was killed"
    group.wait_for_failover(timeout=20)
    failed_over_in = time.monotonic() - killed_at

    wait_for(lambda: handler.distinct() == count, timeout=20)
    assert set(handler.seen) == set(ids)
    assert handler.early() == []
    wait_for(lambda: workers[0].stats("drain").pending == 0, timeout=10)
    wait_for(lambda: all(worker.healthy for worker in workers), timeout=10)

    lines = [r.getMessage() for r in caplog.records if r.name == "redistimers.outage"]
    down = [line for line in lines if "unavailable" in line or "not answered" in line]
    up = [line for line in lines if "answering again" in line]
    context = f"failover took {failed_over_in:.1f}s; outage log: {lines}"
    assert len(down) == len(workers), context
    assert len(up) == len(workers), context
    assert len(lines) == 2 * len(workers), context
