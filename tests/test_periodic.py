"""Periodic timers as they run: on the grid, never early or overlapping, ending only when asked."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
import time
from typing import Any

import pytest
import redis

from redistimers import (
    Delivery,
    RejectTimer,
    RetryPolicy,
    RetryTimer,
    Router,
)

from .helpers import (
    FAST_RETRY,
    Call,
    RecordingFactory,
    SchedulerFactory,
    blocked_until,
    running,
    server_now,
    wait_for,
)

MS = dt.timedelta(milliseconds=1)


def due_ats(calls: list[Call]) -> list[dt.datetime]:
    due = []
    for call in calls:
        assert call.delivery is not None
        due.append(call.delivery.due_at)
    return due


def grid_steps(moment: dt.datetime, anchor: dt.datetime, every: dt.timedelta) -> int:
    """k such that moment == anchor + k * every exactly (to the microsecond); fails if
    `moment` is off the grid."""
    steps, rest = divmod(moment - anchor, every)
    assert rest == dt.timedelta(0), f"{moment} is {rest} off the grid {anchor} + k * {every}"
    return steps


def wait_server_time(client: redis.Redis, moment: dt.datetime, timeout: float = 10.0) -> None:
    """Wait until the Redis server's clock reaches `moment`."""
    wait_for(lambda: server_now(client) >= moment, timeout, interval=0.02)


# -- every: on the grid -------------------------------------------------------------------


def test_every_fires_at_fixed_rate_exactly_on_the_grid_and_never_early(
    recording: RecordingFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    every = dt.timedelta(milliseconds=200)
    scheduler, handler = recording("ticks")
    before = server_now(redis_client)
    scheduler.set_timer("ticks", "tick", every=every, timer_id="t")
    info = scheduler.get_timer("ticks", "t")
    assert info is not None
    first = info.due_at
    # By default the first occurrence is one period from now (by the server's clock).
    assert before + every <= first <= server_now(redis_client) + every
    with running(scheduler, release):
        wait_server_time(redis_client, first + 10 * every - 50 * MS)
        handler.wait_calls(10)
        assert scheduler.cancel_timer("ticks", "t")
        observed_until = server_now(redis_client)
    calls = handler.calls
    # About ten in two seconds: no burst, no drift, none lost to a slow poller.
    assert 10 <= len(calls) <= 11
    assert [grid_steps(d, first, every) for d in due_ats(calls)] == list(range(len(calls)))
    for call in calls:
        assert call.delivery is not None
        assert call.server_now >= call.delivery.due_at, "fired before it was due"
        assert call.delivery.attempt == 1
        assert call.payload == "tick"
    assert observed_until - first < 3 * dt.timedelta(seconds=1)


def test_every_through_run_pending_moves_the_same_timer_to_its_next_grid_point(
    recording: RecordingFactory,
) -> None:
    every = dt.timedelta(seconds=1)
    scheduler, handler = recording("ticks")
    scheduler.set_timer("ticks", {"n": 1}, every=every, activate_in=0, timer_id="t",
                        headers={"k": "v"})
    first = scheduler.get_timer("ticks", "t")
    assert first is not None
    assert scheduler.run_pending() == 1
    assert due_ats(handler.calls) == [first.due_at]
    info = scheduler.get_timer("ticks", "t")
    assert info is not None
    assert info.due_at == first.due_at + every
    assert info.attempts == 0
    assert not info.leased
    assert info.payload == {"n": 1}
    assert dict(info.headers) == {"k": "v"}
    assert info.every == every
    assert scheduler.run_pending() == 0  # the next one is not due yet


def test_two_schedulers_never_deliver_one_occurrence_twice_nor_overlap_a_slow_handler(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    every = dt.timedelta(milliseconds=100)
    lock = threading.Lock()
    active = [0]
    max_active = [0]
    spans: list[tuple[dt.datetime, dt.datetime, dt.datetime, str]] = []

    def make_handler(name: str) -> Any:
        def slow(payload: Any, delivery: Delivery) -> None:
            start = server_now(redis_client)
            with lock:
                active[0] += 1
                max_active[0] = max(max_active[0], active[0])
            release.wait(0.25)  # longer than the period
            with lock:
                active[0] -= 1
                spans.append((delivery.due_at, start, server_now(redis_client), name))
        return slow

    routers = []
    for name in ("a", "b"):
        router = Router()
        router.handler("ticks", max_concurrent=4)(make_handler(name))
        routers.append(router)
    one, two = make_scheduler(routers[0]), make_scheduler(routers[1])
    one.set_timer("ticks", None, every=every, timer_id="t")
    info = one.get_timer("ticks", "t")
    assert info is not None
    anchor = info.due_at
    with running(one, release), running(two, release):
        wait_for(lambda: len(spans) >= 5)
        assert one.cancel_timer("ticks", "t")
    spans.sort()
    assert max_active[0] == 1, "two deliveries of one periodic timer ran at once"
    due = [span[0] for span in spans]
    assert len(set(due)) == len(due), f"an occurrence was delivered twice: {spans}"
    for (due_a, _start_a, end_a, _), (due_b, start_b, _end_b, _) in itertools.pairwise(spans):
        assert start_b >= end_a, "the next occurrence started before the last one returned"
        assert start_b >= due_b
        # Grid points that passed while the handler ran were skipped, not caught up.
        assert due_b - due_a >= 3 * every
        assert due_b > end_a - 5 * MS
    for moment in due:
        grid_steps(moment, anchor, every)


def test_occurrences_missed_while_no_worker_ran_are_skipped_not_fired_in_a_burst(
    recording: RecordingFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    every = dt.timedelta(milliseconds=100)
    scheduler, handler = recording("ticks")
    scheduler.set_timer("ticks", "tick", every=every, timer_id="t")
    info = scheduler.get_timer("ticks", "t")
    assert info is not None
    anchor = info.due_at
    wait_server_time(redis_client, anchor + 10 * every)  # about ten occurrences missed
    with running(scheduler, release):
        (first,) = handler.wait_calls(1)
        wait_server_time(redis_client, first.server_now + 4 * every + 50 * MS)
        calls = handler.wait_calls(4)
        assert scheduler.cancel_timer("ticks", "t")
    due = due_ats(calls)
    # One late delivery of the occurrence that was due, at once...
    assert due[0] == anchor
    assert first.server_now - anchor < dt.timedelta(seconds=2)
    # ...then the grid resumes from the present: the next grid point after that delivery,
    # and about one per period (not ten missed ones in a row).
    assert first.server_now < due[1] <= first.server_now + every + 50 * MS
    assert grid_steps(due[1], anchor, every) >= 10
    assert len(calls) <= 6
    steps = [grid_steps(d, anchor, every) for d in due]
    assert steps == sorted(set(steps))


def test_run_pending_on_a_long_overdue_periodic_timer_delivers_once_and_skips_to_the_future(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    every = dt.timedelta(milliseconds=100)
    scheduler, handler = recording("ticks")
    anchor = server_now(redis_client) - dt.timedelta(seconds=3)  # 30 occurrences ago
    scheduler.set_timer("ticks", "tick", every=every, activate_at=anchor, timer_id="t")
    assert scheduler.run_pending() == 1
    assert due_ats(handler.calls) == [anchor]
    info = scheduler.get_timer("ticks", "t")
    assert info is not None
    assert grid_steps(info.due_at, anchor, every) >= 30
    assert info.due_at > handler.calls[0].server_now
    assert info.remaining <= every


# -- ending and changing the series -------------------------------------------------------


def test_cancel_from_inside_the_handler_stops_the_series(
    recording: RecordingFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    every = dt.timedelta(milliseconds=100)
    cancelled: list[bool] = []
    scheduler_box: list[Any] = []

    def cancel_on_second(payload: Any, delivery: Delivery | None) -> None:
        if len(handler.calls) == 2:
            cancelled.append(scheduler_box[0].cancel_timer("ticks", "t"))

    scheduler, handler = recording("ticks", cancel_on_second)
    scheduler_box.append(scheduler)
    scheduler.set_timer("ticks", "tick", every=every, timer_id="t")
    with running(scheduler, release):
        calls = handler.wait_calls(2)
        wait_for(lambda: scheduler.metrics().stale_acks == 1)  # its ack found it gone
        wait_server_time(redis_client, calls[1].server_now + 4 * every)
    assert cancelled == [True]
    assert len(handler.calls) == 2
    assert scheduler.get_timer("ticks", "t") is None
    assert redis_client.zcard("redistimers:{ticks}:due") == 0
    assert redis_client.hlen("redistimers:{ticks}:body") == 0


def test_cancel_while_the_handler_runs_stops_the_series(
    recording: RecordingFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    every = dt.timedelta(milliseconds=100)
    scheduler, handler = recording("ticks", blocked_until(release))
    scheduler.set_timer("ticks", "tick", every=every, timer_id="t")
    with running(scheduler, release):
        handler.wait_calls(1)
        info = scheduler.get_timer("ticks", "t")
        assert info is not None
        assert info.leased
        assert scheduler.cancel_timer("ticks", "t")
        release.set()
        wait_for(lambda: scheduler.metrics().stale_acks == 1)
        wait_server_time(redis_client, server_now(redis_client) + 4 * every)
    assert len(handler.calls) == 1
    assert scheduler.get_timer("ticks", "t") is None
    assert scheduler.dead_timers("ticks") == []


def test_setting_the_id_again_with_a_new_period_replaces_the_series(
    recording: RecordingFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    old, new = dt.timedelta(milliseconds=100), dt.timedelta(milliseconds=300)
    scheduler, handler = recording("ticks")
    scheduler.set_timer("ticks", "old", every=old, timer_id="t")
    with running(scheduler, release):
        handler.wait_calls(2)
        reset_at = server_now(redis_client)
        scheduler.set_timer("ticks", "new", every=new, timer_id="t")
        info = scheduler.get_timer("ticks", "t")
        assert info is not None
        assert info.every == new
        anchor = info.due_at
        wait_for(lambda: sum(1 for p in handler.payloads if p == "new") >= 3)
        assert scheduler.cancel_timer("ticks", "t")
    assert reset_at + new <= anchor
    calls = handler.calls
    newer = [c for c in calls if c.payload == "new"]
    assert [grid_steps(d, anchor, new) for d in due_ats(newer)] == list(range(len(newer)))
    for call in calls:
        assert call.delivery is not None
        if call.payload == "old":
            # Only occurrences of the old series due before the re-set, none after it.
            assert call.delivery.due_at < reset_at
            grid_steps(call.delivery.due_at, due_ats(calls)[0], old)


def test_reject_timer_ends_a_periodic_series(recording: RecordingFactory) -> None:
    def reject(payload: Any, delivery: Delivery | None) -> None:
        raise RejectTimer("no longer needed")

    scheduler, handler = recording("ticks", reject, handler={"retry": FAST_RETRY})
    scheduler.set_timer("ticks", "tick", every=0.05, activate_in=0, timer_id="t")
    assert scheduler.run_pending() == 1
    assert scheduler.get_timer("ticks", "t") is None
    assert scheduler.dead_timers("ticks") == []
    assert len(handler.calls) == 1


# -- failures of a periodic timer ---------------------------------------------------------


def test_failed_occurrence_is_retried_and_the_series_resumes_on_the_original_grid(
    recording: RecordingFactory, release: threading.Event
) -> None:
    every = dt.timedelta(milliseconds=300)

    def fail_second_occurrence_twice(payload: Any, delivery: Delivery | None) -> None:
        if len(handler.calls) in (2, 3):
            raise ValueError("flaky")

    scheduler, handler = recording(
        "ticks", fail_second_occurrence_twice, handler={"retry": FAST_RETRY}
    )
    scheduler.set_timer("ticks", "tick", every=every, timer_id="t")
    info = scheduler.get_timer("ticks", "t")
    assert info is not None
    anchor = info.due_at
    with running(scheduler, release):
        calls = handler.wait_calls(5)
        assert scheduler.cancel_timer("ticks", "t")
    attempts = [c.delivery.attempt for c in calls[:5] if c.delivery]
    assert attempts == [1, 1, 2, 3, 1]  # attempts start again with the next occurrence
    due = due_ats(calls[:5])
    assert due[0] == anchor
    assert due[1] == anchor + every
    # The retries waited their backoff (10 ms, then 20 ms) after the failures.
    assert due[2] >= calls[1].server_now + 10 * MS
    assert due[3] >= calls[2].server_now + 20 * MS
    # After the retry succeeded, the next occurrence is the grid's, not retry + period.
    assert due[4] == anchor + 2 * every
    assert due[4] < calls[3].server_now + every


def test_periodic_timer_failing_every_attempt_is_dead_lettered_and_requeue_resumes_its_grid(
    recording: RecordingFactory,
) -> None:
    failing = threading.Event()
    failing.set()

    def fail_while_set(payload: Any, delivery: Delivery | None) -> None:
        if failing.is_set():
            raise RuntimeError("down")

    every = dt.timedelta(milliseconds=100)
    policy = RetryPolicy(max_attempts=2, initial=0.01, maximum=0.01, jitter=False)
    scheduler, handler = recording("ticks", fail_while_set, handler={"retry": policy})
    scheduler.set_timer("ticks", "tick", every=every, activate_in=0, timer_id="t")
    info = scheduler.get_timer("ticks", "t")
    assert info is not None
    anchor = info.due_at
    assert scheduler.run_pending() == 1
    wait_for(lambda: scheduler.run_pending() == 1)  # the retry, 10 ms later
    assert scheduler.get_timer("ticks", "t") is None  # the series ended in dead letters
    (dead,) = scheduler.dead_timers("ticks")
    assert dead.attempts == 2
    assert dead.error == "RuntimeError: down"

    failing.clear()
    assert scheduler.requeue_dead("ticks", "t") == 1
    assert scheduler.run_pending() == 1
    info = scheduler.get_timer("ticks", "t")
    assert info is not None
    assert info.every == every
    assert info.attempts == 0
    assert grid_steps(info.due_at, anchor, every) >= 1
    assert info.due_at > handler.calls[-1].server_now


# -- one delivery at a time, and periods that cannot work ------------------------------


def test_periodic_timer_is_not_claimed_again_while_its_delivery_runs(
    recording: RecordingFactory, release: threading.Event
) -> None:
    """While a handler holds it, the timer is leased (scored at the lease's expiry), so a
    second worker with free slots finds nothing due even though grid points pass."""
    every = dt.timedelta(milliseconds=50)
    one, handler = recording("ticks", blocked_until(release), handler={"max_concurrent": 5})
    two, other = recording("ticks", handler={"max_concurrent": 5})
    one.set_timer("ticks", "tick", every=every, timer_id="t")
    with running(one, release):
        handler.wait_calls(1)
        started = time.monotonic()
        while time.monotonic() - started < 0.3:  # six grid points pass meanwhile
            assert two.run_pending() == 0
            time.sleep(0.05)
        info = one.get_timer("ticks", "t")
        assert info is not None
        assert info.leased
        assert info.attempts == 1
    assert other.calls == []
    assert len(handler.calls) <= 2


@pytest.mark.parametrize(
    "period",
    [
        {"a": 1000.0, "e": 0},
        {"a": 1000.0, "e": -100},
        {"cron": "not a cron", "tz": "UTC"},
        {"cron": "* * * * *", "tz": "Nowhere/Nothing"},
    ],
    ids=["every-zero", "every-negative", "bad-cron", "unknown-zone"],
)
def test_envelope_with_a_malformed_period_is_dead_lettered_not_raised_or_looped(
    recording: RecordingFactory, redis_client: redis.Redis, period: dict[str, Any]
) -> None:
    """Another language wrote a periodic timer whose period cannot work: it ends in the
    dead letters after one delivery, instead of escaping from run_pending, being retried
    with its handler run again each time, or being rescheduled into the past for ever."""
    scheduler, handler = recording("ticks", handler={"retry": FAST_RETRY})
    envelope = json.dumps({**period, "v": 1, "p": "tick"})
    redis_client.zadd("redistimers:{ticks}:due", {"t": 0})
    redis_client.hset("redistimers:{ticks}:body", "t", envelope)
    assert scheduler.run_pending() == 1
    assert scheduler.get_timer("ticks", "t") is None
    (dead,) = scheduler.dead_timers("ticks")
    assert dead.timer_id == "t"
    assert dead.attempts == 1
    assert len(handler.calls) <= 1


# -- the occurrence a delivery is for ------------------------------------------------------


def test_occurrence_at_is_the_grid_point_a_delivery_belongs_to() -> None:
    from redistimers.periodic import Period

    every = Period(every_ms=1000.0)
    anchor = 1_000_000.0
    assert every.occurrence_at(anchor, anchor) == anchor
    assert every.occurrence_at(anchor - 0.0004, anchor) == anchor  # rounded apart
    assert every.occurrence_at(anchor + 2000.0, anchor) == anchor + 2000.0
    assert every.occurrence_at(anchor + 2750.0, anchor) == anchor + 2000.0  # a retry of it
    assert every.occurrence_at(5.0, None) == 5.0
    cron = Period(cron="*/5 * * * *")
    nine = dt.datetime(2030, 1, 1, 9, 0, tzinfo=dt.timezone.utc).timestamp() * 1000
    assert cron.occurrence_at(nine, None) == nine
    assert cron.occurrence_at(nine + 61_000, None) == nine  # retried a minute later
    assert cron.occurrence_at(nine + 300_000, None) == nine + 300_000


def test_a_periodic_delivery_says_which_occurrence_it_is_for_across_retries(
    recording: RecordingFactory, release: threading.Event
) -> None:
    def retry_first_occurrence(payload: Any, delivery: Delivery | None) -> None:
        assert delivery is not None
        if payload == 1 and delivery.attempt == 1 and len(handler.calls) <= 2:
            raise RetryTimer(0.05)

    scheduler, handler = recording("ticks", retry_first_occurrence, handler={"retry": FAST_RETRY})
    scheduler.set_timer("ticks", 1, every=1.0, timer_id="t")
    scheduler.set_timer("ticks", 2, activate_in=0, timer_id="once")
    with running(scheduler, release):
        calls = handler.wait_calls(4)
    seen = [(c.delivery.attempt, c.delivery.occurrence_at, c.delivery.due_at)
            for c in calls if c.delivery is not None]
    once = [s for s in seen if s[1] is None]
    assert len(once) == 1  # the one-shot timer has no occurrence
    periodic = [s for s in seen if s[1] is not None][:3]
    (a1, o1, d1), (a2, o2, d2), (a3, o3, _) = periodic
    assert (a1, a2, a3) == (1, 2, 1)
    assert o1 == o2  # a retry: the same occurrence...
    assert d1 != d2  # ...and a due time of its own
    assert o3 is not None
    assert o1 is not None
    assert o3 - o1 == dt.timedelta(seconds=1)
