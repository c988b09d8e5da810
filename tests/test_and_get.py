"""set_timer_and_get and reschedule_and_get return the timer as Redis wrote it, read by
the same script call: the due time by Redis's clock, even when a worker took the timer at
once, so that no caller reads it back or guesses."""

from __future__ import annotations

import datetime as dt
import threading

import redis

from redistimers import TimerScheduler

from .helpers import UTC, InvoiceDue, RecordingFactory, SchedulerFactory, server_now, wait_for


def test_set_timer_and_get_returns_what_get_timer_reads(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    before = server_now(redis_client)
    written = scheduler.set_timer_and_get(
        "invoices", {"n": 1}, activate_in=30, timer_id="inv-1", headers={"k": "v"},
        correlation_id="c-1",
    )
    after = server_now(redis_client)
    assert before + dt.timedelta(seconds=30) <= written.due_at <= after + dt.timedelta(seconds=30)
    assert written.remaining == dt.timedelta(seconds=30)
    read = scheduler.get_timer("invoices", "inv-1")
    assert read is not None
    assert written.due_at == read.due_at
    assert (written.topic, written.timer_id, written.attempts, written.leased) == (
        "invoices", "inv-1", 0, False,
    )
    assert (written.payload, dict(written.headers), written.correlation_id) == (
        {"n": 1}, {"k": "v"}, "c-1",
    )


def test_a_timer_a_worker_took_at_once_still_has_its_true_due_time(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    scheduler, handler = recording("invoices", handler={"payload": InvoiceDue})
    scheduler.start()
    before = server_now(redis_client)
    written = scheduler.set_timer_and_get("invoices", InvoiceDue("INV-9", 100), activate_in=0)
    (call,) = handler.wait_calls(1)
    assert call.delivery is not None
    assert written.due_at == call.delivery.due_at
    assert before <= written.due_at <= server_now(redis_client)
    assert written.payload == InvoiceDue("INV-9", 100)
    wait_for(lambda: scheduler.get_timer("invoices", written.timer_id) is None)


def test_periodic_timers_say_their_first_occurrence(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    before = server_now(redis_client)
    written = scheduler.set_timer_and_get("reports", None, every=dt.timedelta(minutes=5))
    assert written.every == dt.timedelta(minutes=5)
    assert written.due_at - before >= dt.timedelta(minutes=5)
    assert written.due_at - before < dt.timedelta(minutes=5, seconds=5)
    at = dt.datetime(2031, 1, 1, 9, tzinfo=UTC)
    first = scheduler.set_timer_and_get("reports", None, every=60, activate_at=at)
    assert first.due_at == at


def test_reschedule_and_get_moves_and_says_when(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("invoices", "x", activate_in=600, timer_id="x")
    at = dt.datetime(2031, 1, 1, 9, tzinfo=UTC)
    moved = scheduler.reschedule_and_get("invoices", "x", activate_at=at)
    assert moved is not None
    assert (moved.due_at, moved.leased, moved.payload) == (at, False, "x")
    read = scheduler.get_timer("invoices", "x")
    assert read is not None
    assert read.due_at == at
    assert scheduler.reschedule_and_get("invoices", "nope", activate_in=5) is None


def test_a_timer_a_handler_runs_is_not_moved_and_says_so(
    recording: RecordingFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    started = threading.Event()

    def block(payload: object, delivery: object) -> None:
        started.set()
        release.wait(10)

    scheduler, _ = recording("invoices", block)
    scheduler.set_timer("invoices", "x", activate_in=0, timer_id="x")
    scheduler.start()
    try:
        assert started.wait(10)
        held = scheduler.reschedule_and_get("invoices", "x", activate_in=600)
        assert held is not None
        assert held.leased is True
        assert held.due_at < server_now(redis_client) + dt.timedelta(seconds=600)
        assert scheduler.reschedule("invoices", "x", activate_in=600) is False
    finally:
        release.set()


def test_the_sibling_and_the_plain_call_write_the_same(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler: TimerScheduler = make_scheduler()
    scheduler.set_timer("t", [1, 2], activate_in=60, timer_id="plain")
    scheduler.set_timer_and_get("t", [1, 2], activate_in=60, timer_id="sibling")
    bodies = redis_client.hgetall("redistimers:{t}:body")
    assert bodies[b"plain"] == bodies[b"sibling"]
