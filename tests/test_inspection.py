"""The inspection and repair API of TimerScheduler: topics, stats, reschedule and purge,
against a real redis-server."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
import redis

from redistimers import (
    InvalidTimerError,
    RetryTimer,
    Router,
)

from ._inspection_support import blocking_router, dead_on
from .helpers import UTC, InvoiceDue, Recorder, SchedulerFactory, running, server_now, wait_for

# -- topics -----------------------------------------------------------------------------------


def test_topics_lists_every_topic_of_its_namespace_sorted(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    other = make_scheduler(namespace="other-app")
    assert scheduler.topics() == []
    for topic in ("reminders", "invoices", "Zeta", "a.b-c"):
        scheduler.set_timer(topic, 1, activate_in=60)
    other.set_timer("elsewhere", 1, activate_in=60)
    assert scheduler.topics() == ["Zeta", "a.b-c", "invoices", "reminders"]
    assert other.topics() == ["elsewhere"]


# -- stats ------------------------------------------------------------------------------------


def test_stats_counts_pending_due_leased_and_dead_timers_and_the_oldest_due_lag(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    dead_on(make_scheduler, "bad", "d1", "d2")
    router, recorder = blocking_router("jobs", release, redis_client)
    worker = make_scheduler(router)
    admin = make_scheduler()
    now = server_now(redis_client)
    admin.set_timer("jobs", 0, activate_at=now - dt.timedelta(seconds=5), timer_id="late")
    admin.set_timer("jobs", 1, activate_in=0, timer_id="due-1")
    admin.set_timer("jobs", 2, activate_in=0, timer_id="due-2")
    admin.set_timer("jobs", 3, activate_in=3600, timer_id="later-1")
    admin.set_timer("jobs", 4, activate_in=7200, timer_id="later-2")
    before = admin.stats("jobs")
    assert (before.pending, before.due, before.leased, before.dead) == (5, 3, 0, 0)
    assert before.oldest_due_lag is not None
    assert dt.timedelta(seconds=5) <= before.oldest_due_lag < dt.timedelta(seconds=7)
    with running(worker, release):
        recorder.wait_calls(1)  # "late" is held by its handler; the other two wait
        during = admin.stats("jobs")
        assert (during.topic, during.pending, during.due, during.leased, during.dead) == (
            "jobs", 5, 2, 1, 0,
        )
        assert during.oldest_due_lag is not None
        assert during.oldest_due_lag < dt.timedelta(seconds=2)  # due-1 is the oldest now
        everything = admin.stats()
    assert sorted(everything) == ["bad", "jobs"]
    assert (everything["jobs"].pending, everything["jobs"].leased) == (5, 1)
    bad = everything["bad"]
    assert (bad.topic, bad.pending, bad.due, bad.leased, bad.dead) == ("bad", 0, 0, 0, 2)
    assert bad.oldest_due_lag is None


def test_stats_of_a_topic_with_nothing_due_has_no_lag_and_unknown_topics_count_zero(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("later", 1, activate_in=60)
    assert scheduler.stats("later").oldest_due_lag is None
    unknown = scheduler.stats("never-used")
    assert (unknown.pending, unknown.due, unknown.leased, unknown.dead) == (0, 0, 0, 0)
    assert scheduler.stats("never-used").oldest_due_lag is None
    assert scheduler.topics() == ["later"]  # counting creates nothing
    with pytest.raises(InvalidTimerError):
        scheduler.stats("bad{topic}")


# -- reschedule -------------------------------------------------------------------------------


def test_reschedule_moves_a_pending_timer_keeping_payload_headers_and_attempts(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()

    @router.handler("invoices", payload=InvoiceDue)
    def later(invoice: InvoiceDue) -> None:
        raise RetryTimer(3600)

    scheduler = make_scheduler(router)
    scheduler.set_timer(
        "invoices", InvoiceDue("INV-1", 995), activate_in=0, timer_id="INV-1",
        headers={"tenant": "acme"}, correlation_id="req-42",
    )
    assert scheduler.run_pending() == 1  # attempt 1 asks to be retried in an hour
    before = scheduler.get_timer("invoices", "INV-1")
    assert before is not None
    assert before.attempts == 1
    assert scheduler.reschedule("invoices", "INV-1", activate_in=dt.timedelta(hours=5))
    after = scheduler.get_timer("invoices", "INV-1")
    assert after is not None
    assert dt.timedelta(hours=4, minutes=59) < after.remaining <= dt.timedelta(hours=5)
    assert (after.payload, dict(after.headers), after.correlation_id, after.attempts) == (
        InvoiceDue("INV-1", 995), {"tenant": "acme"}, "req-42", 1,
    )
    moment = dt.datetime(2031, 1, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert scheduler.reschedule("invoices", "INV-1", activate_at=moment)
    moved = scheduler.get_timer("invoices", "INV-1")
    assert moved is not None
    assert moved.due_at == moment


def test_reschedule_keeps_a_periodic_timers_period(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("reports", "daily", every=dt.timedelta(days=1), timer_id="r")
    assert scheduler.reschedule("reports", "r", activate_in=60)
    timer = scheduler.get_timer("reports", "r")
    assert timer is not None
    assert timer.every == dt.timedelta(days=1)
    assert timer.remaining <= dt.timedelta(seconds=60)


def test_reschedule_refuses_a_timer_whose_handler_is_running(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    router, recorder = blocking_router("jobs", release, redis_client)
    worker = make_scheduler(router)
    admin = make_scheduler()
    admin.set_timer("jobs", "x", activate_in=0, timer_id="held")
    with running(worker, release):
        recorder.wait_calls(1)
        leased = admin.get_timer("jobs", "held")
        assert leased is not None
        assert leased.leased
        assert not admin.reschedule("jobs", "held", activate_in=3600)
        still = admin.get_timer("jobs", "held")
        assert still is not None
        assert still.leased
        assert still.due_at == leased.due_at  # not moved under its handler
        release.set()
        wait_for(lambda: admin.get_timer("jobs", "held") is None)  # acked: done, not moved
    assert len(recorder.calls) == 1


def test_reschedule_of_an_unknown_timer_returns_false_and_creates_nothing(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("jobs", 1, activate_in=60, timer_id="known")
    assert not scheduler.reschedule("jobs", "unknown", activate_in=1)
    assert not scheduler.reschedule("no-such-topic", "known", activate_in=1)
    assert scheduler.get_timer("jobs", "unknown") is None
    assert [t.timer_id for t in scheduler.list_timers("jobs").timers] == ["known"]
    assert not any(b"no-such-topic" in key for key in redis_client.keys("*"))


@pytest.mark.parametrize(
    "when",
    [
        {},
        {"activate_in": 1, "activate_at": dt.datetime(2031, 1, 1, tzinfo=UTC)},
        {"activate_in": -1},
        {"activate_at": dt.datetime(2031, 1, 1)},
    ],
    ids=["neither", "both", "negative", "naive"],
)
def test_reschedule_refuses_a_bad_time(make_scheduler: SchedulerFactory, when: Any) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("jobs", 1, activate_in=60, timer_id="j")
    with pytest.raises(InvalidTimerError):
        scheduler.reschedule("jobs", "j", **when)
    timer = scheduler.get_timer("jobs", "j")
    assert timer is not None
    assert timer.remaining > dt.timedelta(seconds=50)


@pytest.mark.parametrize("moved_by", ["the worker itself", "another scheduler"])
def test_reschedule_earlier_wakes_a_running_worker_so_the_timer_fires_promptly(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, moved_by: str
) -> None:
    router = Router()
    recorder = Recorder(redis_client)
    router.handler("jobs")(recorder)
    worker = make_scheduler(router, max_poll_interval=60)  # it would sleep for a minute
    mover = worker if moved_by == "the worker itself" else make_scheduler()
    worker.set_timer("jobs", "x", activate_in=3600, timer_id="j")
    with worker:
        time.sleep(0.2)  # the poller has claimed nothing and gone to sleep
        moved_at = time.monotonic()
        assert mover.reschedule("jobs", "j", activate_in=0)
        recorder.wait_calls(1, timeout=5)
        assert time.monotonic() - moved_at < 1.0


def test_reschedule_later_keeps_a_timer_from_firing_at_its_old_time(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    recorder = Recorder(redis_client)
    router.handler("jobs")(recorder)
    worker = make_scheduler(router)
    worker.set_timer("jobs", "x", activate_in=0.4, timer_id="j")
    with worker:
        assert worker.reschedule("jobs", "j", activate_in=3600)
        time.sleep(0.8)
    assert recorder.calls == []
    timer = worker.get_timer("jobs", "j")
    assert timer is not None
    assert timer.remaining > dt.timedelta(minutes=59)


# -- purge ------------------------------------------------------------------------------------


def test_purge_removes_every_pending_timer_of_a_topic_and_keeps_its_dead_letters(
    make_scheduler: SchedulerFactory,
) -> None:
    dead_on(make_scheduler, "jobs", "dead-1", "dead-2")
    scheduler = make_scheduler()
    for i in range(3):
        scheduler.set_timer("jobs", i, activate_in=60 * (i + 1), timer_id=f"p{i}")
    scheduler.set_timer("other", 1, activate_in=60, timer_id="stays")
    assert scheduler.purge("jobs") == 3
    stats = scheduler.stats("jobs")
    assert (stats.pending, stats.due, stats.leased, stats.dead) == (0, 0, 0, 2)
    assert [d.timer_id for d in scheduler.dead_timers("jobs")] == ["dead-1", "dead-2"]
    assert scheduler.get_timer("jobs", "p0") is None
    assert scheduler.list_timers("jobs").timers == []
    assert scheduler.get_timer("other", "stays") is not None
    assert scheduler.purge("jobs") == 0
    assert scheduler.purge("never-used") == 0
    scheduler.set_timer("jobs", "again", activate_in=60, timer_id="again")  # still usable
    assert [t.timer_id for t in scheduler.list_timers("jobs").timers] == ["again"]
    assert "jobs" in scheduler.topics()


def test_purge_while_a_handler_runs_counts_it_and_its_ack_brings_nothing_back(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    router, recorder = blocking_router("jobs", release, redis_client)
    worker = make_scheduler(router)
    worker.set_timer("jobs", "held", activate_in=0, timer_id="held")
    worker.set_timer("jobs", "waiting", activate_in=60, timer_id="waiting")
    with running(worker, release):
        recorder.wait_calls(1)
        assert worker.purge("jobs") == 2
        release.set()
        wait_for(lambda: worker.metrics().stale_acks == 1)
    assert worker.stats("jobs").pending == 0
    assert worker.get_timer("jobs", "held") is None


