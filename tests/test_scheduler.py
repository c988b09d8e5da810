"""TimerScheduler on a real Redis: setting and firing timers, what handlers get, get_timer."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import redistimers
from redistimers import (
    Delivery,
    InvalidTimerError,
    RetryPolicy,
    RetryTimer,
    Router,
    TimerInfo,
    TimerScheduler,
    TimerSpec,
)

from .helpers import (
    UTC,
    InvoiceDue,
    RecordingFactory,
    SchedulerFactory,
    blocked_until,
    dead_letters,
    running,
    server_now,
    timer_gone,
    wait_for,
)

# -- firing -----------------------------------------------------------------------------


def test_timers_fire_in_due_order_and_never_before_their_due_time(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    scheduler, handler = recording("ticks", handler={"max_concurrent": 1})
    delays_ms = {"c": 300, "a": 60, "e": 500, "b": 180, "d": 400}
    set_at: dict[str, dt.datetime] = {}
    for name, delay in delays_ms.items():
        set_at[name] = server_now(redis_client)
        scheduler.set_timer(
            "ticks", name, activate_in=dt.timedelta(milliseconds=delay), timer_id=name
        )
    scheduler.start()
    calls = handler.wait_calls(5)
    assert [c.payload for c in calls] == ["a", "b", "c", "d", "e"]
    for call in calls:
        assert call.delivery is not None
        name = call.payload
        earliest = set_at[name] + dt.timedelta(milliseconds=delays_ms[name])
        assert call.delivery.due_at >= earliest - dt.timedelta(milliseconds=1)
        assert call.server_now >= call.delivery.due_at, "fired early by the Redis clock"
        assert call.local_now >= call.delivery.due_at, "fired early by the local clock"
        assert call.server_now >= earliest
    due = [c.delivery.due_at for c in calls if c.delivery is not None]
    assert due == sorted(due)


def test_overdue_timers_fire_in_due_order(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    scheduler, handler = recording("ticks", handler={"max_concurrent": 1})
    base = server_now(redis_client).replace(microsecond=0) - dt.timedelta(minutes=5)
    for name, offset in [("third", 3), ("first", 1), ("fourth", 4), ("second", 2)]:
        scheduler.set_timer("ticks", name, activate_at=base + dt.timedelta(seconds=offset))
    with scheduler:
        calls = handler.wait_calls(4)
    assert [c.payload for c in calls] == ["first", "second", "third", "fourth"]
    assert [c.delivery.due_at for c in calls if c.delivery] == [
        base + dt.timedelta(seconds=s) for s in (1, 2, 3, 4)
    ]


def test_timer_set_while_running_fires_without_waiting_for_the_poll_interval(
    recording: RecordingFactory,
) -> None:
    scheduler, handler = recording("ticks", max_poll_interval=60)
    with scheduler:
        time.sleep(0.1)  # let the poller go to sleep on an empty topic
        started = time.monotonic()
        scheduler.set_timer("ticks", "now", activate_in=0)
        handler.wait_calls(1, timeout=5)
        assert time.monotonic() - started < 5


def test_timer_set_by_another_process_without_handlers_is_delivered_promptly(
    recording: RecordingFactory, make_scheduler: SchedulerFactory
) -> None:
    worker, handler = recording(
        "invoices", handler={"payload": InvoiceDue}, max_poll_interval=60
    )
    web_app = make_scheduler()  # schedules only: no handlers, no thread
    with worker:
        time.sleep(0.1)  # let the poller go to sleep on an empty topic
        web_app.set_timer(
            "invoices",
            {"invoice_id": "INV-1", "amount_cents": 995},
            activate_in=dt.timedelta(milliseconds=50),
            timer_id="INV-1",
        )
        (call,) = handler.wait_calls(1, timeout=5)
    assert call.payload == InvoiceDue("INV-1", 995)


def test_cancelled_timer_never_fires(recording: RecordingFactory) -> None:
    scheduler, handler = recording("ticks", handler={"max_concurrent": 1})
    scheduler.set_timer("ticks", "cancelled", activate_in=0.1, timer_id="x")
    scheduler.set_timer("ticks", "kept", activate_in=0.3, timer_id="y")
    assert scheduler.cancel_timer("ticks", "x") is True
    assert scheduler.cancel_timer("ticks", "x") is False
    assert scheduler.cancel_timer("ticks", "never-set") is False
    with scheduler:
        handler.wait_calls(1)
        wait_for(timer_gone(scheduler, "ticks", "y"))
    assert handler.payloads == ["kept"]
    assert scheduler.get_timer("ticks", "x") is None


def test_reset_replaces_payload_and_moves_the_timer_earlier(
    recording: RecordingFactory,
) -> None:
    scheduler, handler = recording("ticks")
    scheduler.set_timer("ticks", "old", activate_in=dt.timedelta(hours=1), timer_id="same")
    scheduler.set_timer("ticks", "new", activate_in=0.05, timer_id="same")
    with scheduler:
        handler.wait_calls(1)
        wait_for(timer_gone(scheduler, "ticks", "same"))
    assert handler.payloads == ["new"]


def test_reset_replaces_payload_and_moves_the_timer_later(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    scheduler, handler = recording("ticks", handler={"max_concurrent": 1})
    scheduler.set_timer("ticks", "old", activate_in=0.05, timer_id="same")
    before = server_now(redis_client)
    scheduler.set_timer("ticks", "new", activate_in=dt.timedelta(hours=1), timer_id="same")
    scheduler.set_timer("ticks", "sentinel", activate_in=0.3, timer_id="sentinel")
    with scheduler:
        handler.wait_calls(1)
        wait_for(timer_gone(scheduler, "ticks", "sentinel"))
    assert handler.payloads == ["sentinel"]
    info = scheduler.get_timer("ticks", "same")
    assert info is not None
    assert info.payload == "new"
    assert info.due_at >= before + dt.timedelta(hours=1) - dt.timedelta(milliseconds=1)


def test_reset_during_handler_survives_old_ack(
    recording: RecordingFactory, release: threading.Event
) -> None:
    def block_first_version(payload: Any, delivery: Delivery | None) -> None:
        if payload == "v1":
            assert release.wait(10)

    scheduler, handler = recording("ticks", block_first_version)
    scheduler.set_timer("ticks", "v1", activate_in=0, timer_id="INV-1")
    with running(scheduler, release):
        handler.wait_calls(1)
        old = scheduler.get_timer("ticks", "INV-1")
        assert old is not None
        assert old.leased is True
        scheduler.set_timer("ticks", "v2", activate_in=0.3, timer_id="INV-1")
        release.set()  # the old version's handler returns and acks with its stale token
        calls = handler.wait_calls(2)
        wait_for(timer_gone(scheduler, "ticks", "INV-1"))
    assert [c.payload for c in calls] == ["v1", "v2"]
    assert calls[1].delivery is not None
    assert calls[1].delivery.attempt == 1  # the replaced timer started fresh


def test_handler_can_reschedule_its_own_timer(recording: RecordingFactory) -> None:
    """A handler that re-sets its own id (a home-made periodic timer) is not undone by
    its own ack: the next occurrence fires."""
    schedulers: list[TimerScheduler] = []

    def next_round(payload: Any, delivery: Delivery | None) -> None:
        assert delivery is not None
        if payload < 3:
            schedulers[0].set_timer(
                "rounds", payload + 1, activate_in=0.02, timer_id=delivery.timer_id
            )

    scheduler, handler = recording("rounds", next_round)
    schedulers.append(scheduler)
    scheduler.set_timer("rounds", 1, activate_in=0, timer_id="r")
    with scheduler:
        handler.wait_calls(3)
        wait_for(timer_gone(scheduler, "rounds", "r"))
    assert handler.payloads == [1, 2, 3]
    assert [c.delivery.attempt for c in handler.calls if c.delivery] == [1, 1, 1]


def test_cancel_during_handler_is_not_undone_by_its_outcome(
    recording: RecordingFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    def fail_after_release(payload: Any, delivery: Delivery | None) -> None:
        if payload == "x":
            assert release.wait(10)
            raise RetryTimer(0)

    scheduler, handler = recording("ticks", fail_after_release)
    scheduler.set_timer("ticks", "x", activate_in=0, timer_id="x")
    scheduler.set_timer("ticks", "sentinel", activate_in=0.3, timer_id="sentinel")
    with running(scheduler, release):
        handler.wait_calls(1)
        assert scheduler.cancel_timer("ticks", "x") is True
        release.set()  # its RetryTimer must not bring the cancelled timer back
        handler.wait_calls(2)
    assert sorted(handler.payloads) == ["sentinel", "x"]
    assert scheduler.get_timer("ticks", "x") is None
    assert redis_client.zscore("redistimers:{ticks}:due", "x") is None


# -- what handlers receive --------------------------------------------------------------


def test_set_timer_returns_the_given_id(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    assert scheduler.set_timer("ticks", 1, activate_in=60, timer_id="INV-1") == "INV-1"
    assert scheduler.get_timer("ticks", "INV-1") is not None


def test_set_timer_generates_distinct_ids_when_none_is_given(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    ids = [scheduler.set_timer("ticks", n, activate_in=60) for n in range(20)]
    assert len(set(ids)) == 20
    for n, timer_id in enumerate(ids):
        assert isinstance(timer_id, str)
        assert timer_id
        info = scheduler.get_timer("ticks", timer_id)
        assert info is not None
        assert info.payload == n


def test_headers_and_correlation_id_reach_the_handler_through_delivery(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    scheduler, handler = recording("invoices", handler={"payload": InvoiceDue})
    at = server_now(redis_client) - dt.timedelta(seconds=1)
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    scheduler.set_timer(
        "invoices",
        InvoiceDue("INV-7", 1200),
        activate_at=at,
        timer_id="INV-7",
        headers={"tenant": "acme", "trace": "ünï"},
        correlation_id="req-42",
    )
    with scheduler:
        (call,) = handler.wait_calls(1)
    assert call.payload == InvoiceDue("INV-7", 1200)
    delivery = call.delivery
    assert isinstance(delivery, Delivery)
    assert delivery.topic == "invoices"
    assert delivery.timer_id == "INV-7"
    assert delivery.attempt == 1
    assert dict(delivery.headers) == {"tenant": "acme", "trace": "ünï"}
    assert delivery.correlation_id == "req-42"
    assert delivery.due_at == at
    assert delivery.due_at.utcoffset() == dt.timedelta(0)


def test_delivery_without_headers_has_empty_headers_and_no_correlation_id(
    recording: RecordingFactory,
) -> None:
    scheduler, handler = recording("ticks")
    scheduler.set_timer("ticks", [1, 2], activate_in=0)
    with scheduler:
        (call,) = handler.wait_calls(1)
    assert call.payload == [1, 2]
    assert call.delivery is not None
    assert dict(call.delivery.headers) == {}
    assert call.delivery.correlation_id is None


def test_handler_with_one_parameter_gets_only_the_payload(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    received: list[tuple[Any, ...]] = []
    router = Router()

    @router.handler("invoices", payload=InvoiceDue, retry=RetryPolicy(max_attempts=1))
    def on_invoice(invoice: InvoiceDue) -> None:
        received.append((invoice,))

    scheduler = make_scheduler(router)
    scheduler.set_timer("invoices", InvoiceDue("INV-1", 5), activate_in=0, timer_id="INV-1")
    with scheduler:
        wait_for(lambda: received)
        wait_for(timer_gone(scheduler, "invoices", "INV-1"))
    assert received == [(InvoiceDue("INV-1", 5),)]
    assert dead_letters(redis_client, "invoices") == {}


# -- get_timer --------------------------------------------------------------------------


def test_get_timer_describes_a_pending_timer(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    scheduler, _ = recording("invoices", handler={"payload": InvoiceDue})
    before = server_now(redis_client)
    scheduler.set_timer(
        "invoices",
        InvoiceDue("INV-1", 995),
        activate_in=dt.timedelta(minutes=30),
        timer_id="INV-1",
        headers={"tenant": "acme"},
        correlation_id="req-1",
    )
    after = server_now(redis_client)
    info = scheduler.get_timer("invoices", "INV-1")
    assert isinstance(info, TimerInfo)
    assert info.topic == "invoices"
    assert info.timer_id == "INV-1"
    assert info.payload == InvoiceDue("INV-1", 995)
    assert dict(info.headers) == {"tenant": "acme"}
    assert info.correlation_id == "req-1"
    assert info.attempts == 0
    assert info.leased is False
    slack = dt.timedelta(milliseconds=1)
    assert before + dt.timedelta(minutes=30) - slack <= info.due_at
    assert info.due_at <= after + dt.timedelta(minutes=30) + slack
    assert info.due_at.utcoffset() == dt.timedelta(0)
    # Due times round up to the millisecond and the server's now rounds down.
    assert dt.timedelta(minutes=29) < info.remaining <= dt.timedelta(minutes=30) + slack


def test_get_timer_of_an_unknown_id_is_none(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    assert scheduler.get_timer("invoices", "nope") is None
    scheduler.set_timer("invoices", 1, activate_in=60, timer_id="other")
    assert scheduler.get_timer("invoices", "nope") is None
    assert scheduler.get_timer("elsewhere", "other") is None


def test_get_timer_without_a_handler_gives_the_json_payload(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("invoices", InvoiceDue("INV-1", 995), activate_in=60, timer_id="INV-1")
    info = scheduler.get_timer("invoices", "INV-1")
    assert info is not None
    assert info.payload == {"invoice_id": "INV-1", "amount_cents": 995}


def test_get_timer_of_an_overdue_timer_has_no_time_remaining(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    at = dt.datetime(2020, 1, 1, tzinfo=UTC)
    scheduler.set_timer("ticks", 1, activate_at=at, timer_id="old")
    info = scheduler.get_timer("ticks", "old")
    assert info is not None
    assert info.due_at == at
    assert info.remaining == dt.timedelta(0)


def test_get_timer_of_a_payload_that_no_longer_decodes_gives_its_json(
    recording: RecordingFactory, make_scheduler: SchedulerFactory
) -> None:
    typed, _ = recording("invoices", handler={"payload": InvoiceDue})
    make_scheduler().set_timer("invoices", {"old": "shape"}, activate_in=60, timer_id="x")
    info = typed.get_timer("invoices", "x")
    assert info is not None
    assert info.payload == {"old": "shape"}


def test_get_timer_shows_a_running_timer_as_leased_with_its_attempt(
    recording: RecordingFactory, release: threading.Event
) -> None:
    scheduler, handler = recording("ticks", blocked_until(release), handler={"lease_ttl": 20})
    scheduler.set_timer("ticks", "x", activate_in=0, timer_id="x")
    with running(scheduler, release):
        handler.wait_calls(1)
        info = scheduler.get_timer("ticks", "x")
        release.set()
        wait_for(timer_gone(scheduler, "ticks", "x"))
    assert info is not None
    assert info.leased is True
    assert info.attempts == 1
    # While leased, due_at is when the lease runs out.
    assert dt.timedelta(seconds=10) < info.remaining <= dt.timedelta(seconds=20)


# -- bulk scheduling ----------------------------------------------------------------------


def test_set_timers_writes_many_timers_of_several_topics_and_returns_their_ids(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    specs = [
        TimerSpec("bulk-a" if i % 2 else "bulk-b", {"n": i}, activate_in=60, timer_id=f"t{i}")
        for i in range(2500)  # more than one script call per topic
    ]
    specs.append(TimerSpec("bulk-a", {"n": -1}, activate_in=60))  # a generated id
    ids = scheduler.set_timers(specs)
    assert ids[:2500] == [f"t{i}" for i in range(2500)]
    assert len(ids[2500]) == 22
    assert scheduler.stats("bulk-a").pending == 1251
    assert scheduler.stats("bulk-b").pending == 1250
    info = scheduler.get_timer("bulk-a", "t7")
    assert info is not None
    assert info.payload == {"n": 7}


def test_set_timers_checks_every_timer_before_writing_any(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    specs = [TimerSpec("bulk", i, activate_in=60) for i in range(10)]
    specs.insert(5, TimerSpec("bulk", 5, activate_at=dt.datetime(2030, 1, 1)))  # naive
    with pytest.raises(InvalidTimerError, match="timezone-aware"):
        scheduler.set_timers(specs)
    assert redis_client.keys("*") == []


def test_set_timers_replaces_timers_with_the_same_id_like_set_timer(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("bulk", "old", activate_in=60, timer_id="x")
    scheduler.set_timers([TimerSpec("bulk", "new", activate_in=120, timer_id="x")])
    info = scheduler.get_timer("bulk", "x")
    assert info is not None
    assert info.payload == "new"
    assert info.remaining > dt.timedelta(seconds=100)


def test_set_timers_wakes_a_running_worker_for_a_new_earliest_timer(
    recording: RecordingFactory,
) -> None:
    scheduler, handler = recording("bulk")
    scheduler.set_timer("bulk", "later", activate_in=3600)
    with scheduler:
        time.sleep(0.1)  # the poller now sleeps towards the hour-away timer
        scheduler.set_timers([TimerSpec("bulk", i, activate_in=0.05) for i in range(3)])
        handler.wait_calls(3, timeout=2.0)
    assert sorted(handler.payloads) == [0, 1, 2]


def test_set_timers_refuses_what_is_not_a_timer_spec(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    with pytest.raises(InvalidTimerError, match="TimerSpec"):
        scheduler.set_timers([("bulk", 1)])  # type: ignore[list-item]


def test_a_timer_written_as_the_readme_wire_format_says_is_delivered(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    """Another language schedules by running schedule.lua as README's "Wire format" says."""
    scheduler, handler = recording("wire")
    ns = "redistimers"
    source = (Path(redistimers.__file__).parent / "lua" / "schedule.lua").read_text()
    keys = [f"{ns}:{{wire}}:{kind}" for kind in ("due", "body", "lease", "attempts", "dead",
                                                 "dead_body")]
    records = "\x1e".join([
        'w1\x1fin\x1f50\x1f{"v":1,"p":{"n":1},"h":{"k":"v"},"c":"c-1"}',
        'w2\x1fat\x1f1000.5\x1f{"v":1,"p":"long overdue"}',
    ])
    redis_client.eval(source, len(keys), *keys, f"{ns}:{{wire}}:wake", records)
    redis_client.sadd(f"{ns}:topics", "wire")
    assert scheduler.topics() == ["wire"]
    scheduler.start()
    calls = handler.wait_calls(2)
    assert [c.payload for c in calls] == ["long overdue", {"n": 1}]
    delivery = calls[1].delivery
    assert delivery is not None
    assert (delivery.timer_id, dict(delivery.headers), delivery.correlation_id) == (
        "w1", {"k": "v"}, "c-1"
    )
