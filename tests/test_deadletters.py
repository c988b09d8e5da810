"""Dead letters: what a timer that cannot be delivered becomes, and the API that shows,
requeues and purges them (the README's table of outcomes)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

import pytest
import redis

from redistimers import (
    DeadTimer,
    Delivery,
    InvalidTimerError,
    RejectTimer,
    RetryPolicy,
    RetryTimer,
)

from .helpers import (
    FAST_RETRY,
    InvoiceDue,
    RecordingFactory,
    SchedulerFactory,
    running,
    server_now,
    timer_gone,
    wait_for,
)

#: Every delivery is the last one allowed: a failure goes straight to the dead letters.
ONE_ATTEMPT = RetryPolicy(max_attempts=1, initial=0.01, maximum=0.01, jitter=False)
#: Handler options of an "invoices" topic whose payloads are InvoiceDue, retried fast.
TYPED_FAST: dict[str, Any] = {"payload": InvoiceDue, "retry": FAST_RETRY}


def always_fail(payload: Any, delivery: Delivery | None) -> None:
    raise ValueError("card declined")


class Switch:
    """A handler behaviour that fails while `failing` is set, then succeeds."""

    def __init__(self) -> None:
        self.failing = threading.Event()
        self.failing.set()

    def __call__(self, payload: Any, delivery: Delivery | None) -> None:
        if self.failing.is_set():
            raise ValueError(f"still failing: {payload}")


def kill(scheduler: Any, topic: str, *timer_ids: str) -> None:
    """Schedule `timer_ids` due now (in this order) and fail each on its only attempt,
    through run_pending, so they die in this order."""
    for timer_id in timer_ids:
        scheduler.set_timer(topic, timer_id, activate_in=0, timer_id=timer_id)
        assert scheduler.run_pending() == 1


# -- how timers die ---------------------------------------------------------------------


def test_timer_past_max_attempts_becomes_a_dead_timer_with_error_traceback_and_attempts(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    policy = RetryPolicy(max_attempts=3, initial=0.01, maximum=0.01, jitter=False)
    scheduler, handler = recording(
        "invoices", always_fail, handler={"payload": InvoiceDue, "retry": policy}
    )
    scheduler.set_timer(
        "invoices", InvoiceDue("INV-1", 995), activate_in=0, timer_id="INV-1",
        headers={"tenant": "acme"}, correlation_id="req-42",
    )
    with scheduler:
        wait_for(lambda: scheduler.dead_timers("invoices"))
        wait_for(lambda: scheduler.metrics().dead_lettered == 1)
        metrics = scheduler.metrics()
    now = server_now(redis_client)

    assert [c.delivery.attempt for c in handler.calls if c.delivery] == [1, 2, 3]
    assert scheduler.get_timer("invoices", "INV-1") is None
    (dead,) = scheduler.dead_timers("invoices")
    assert isinstance(dead, DeadTimer)
    assert dead.topic == "invoices"
    assert dead.timer_id == "INV-1"
    # The payload as stored (its JSON form), not decoded into the topic's type.
    assert dead.payload == {"invoice_id": "INV-1", "amount_cents": 995}
    assert dead.error == "ValueError: card declined"
    assert dead.error_type == "ValueError"
    assert dead.reason == "failed"
    assert dead.attempts == 3
    assert dead.traceback is not None
    assert dead.traceback.startswith("Traceback (most recent call last)")
    assert "always_fail" in dead.traceback  # the frame that raised
    assert dead.traceback.rstrip().endswith("ValueError: card declined")
    assert dict(dead.headers) == {"tenant": "acme"}
    assert dead.correlation_id == "req-42"
    # It died after the last attempt started, by the Redis server's clock.
    assert dead.died_at.tzinfo is not None
    assert handler.calls[-1].server_now <= dead.died_at <= now
    assert now - dead.died_at < dt.timedelta(seconds=5)
    assert metrics.retried == 2
    assert metrics.dead_lettered == 1
    assert metrics.succeeded == 0


def test_retry_timer_requests_count_as_attempts_and_end_in_dead_letters(
    recording: RecordingFactory,
) -> None:
    def ask_again(payload: Any, delivery: Delivery | None) -> None:
        raise RetryTimer(0.01)

    scheduler, handler = recording(
        "polls", ask_again, handler={"retry": RetryPolicy(max_attempts=2)}
    )
    scheduler.set_timer("polls", {"url": "x"}, activate_in=0, timer_id="p")
    assert scheduler.run_pending() == 1  # the retry is not due yet when the pass ends
    wait_for(lambda: scheduler.run_pending() == 1)
    (dead,) = scheduler.dead_timers("polls")
    assert dead.attempts == 2
    assert dead.error_type == "RetryTimer"
    assert dead.payload == {"url": "x"}
    assert len(handler.calls) == 2


def test_undecodable_payload_is_dead_at_once_while_the_topics_other_timers_flow(
    recording: RecordingFactory, make_scheduler: SchedulerFactory
) -> None:
    # Many attempts allowed: an undecodable payload must not use them up one by one.
    policy = RetryPolicy(max_attempts=10, initial=0.01, maximum=0.01, jitter=False)
    worker, handler = recording("invoices", handler={"payload": InvoiceDue, "retry": policy})
    web_app = make_scheduler()  # no handlers: it cannot check the payload's type
    web_app.set_timer("invoices", {"invoice_id": "INV-1", "amount_cents": 1},
                      activate_in=0, timer_id="good-1")
    web_app.set_timer("invoices", ["not", "an", "invoice"], activate_in=0, timer_id="bad")
    web_app.set_timer("invoices", {"invoice_id": "INV-2", "amount_cents": 2},
                      activate_in=0, timer_id="good-2")
    with worker:
        handler.wait_calls(2)
        wait_for(lambda: worker.dead_timers("invoices"))
        wait_for(timer_gone(worker, "invoices", "bad"))
        # A timer scheduled after the bad one was buried is delivered too.
        web_app.set_timer("invoices", {"invoice_id": "INV-3", "amount_cents": 3},
                          activate_in=0, timer_id="good-3")
        handler.wait_calls(3)
        wait_for(lambda: worker.metrics().dead_lettered == 1)
    assert sorted(handler.payloads, key=lambda p: p.invoice_id) == [
        InvoiceDue("INV-1", 1), InvoiceDue("INV-2", 2), InvoiceDue("INV-3", 3),
    ]
    (dead,) = worker.dead_timers("invoices")
    assert dead.timer_id == "bad"
    assert dead.reason == "undecodable"
    assert dead.attempts == 1
    assert dead.payload == ["not", "an", "invoice"]
    assert "InvoiceDue" in dead.error
    assert worker.metrics().retried == 0


def test_envelope_that_is_not_json_is_dead_lettered_not_dropped(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    """Another language wrote garbage: it is kept, as written, in the dead letters."""
    scheduler, handler = recording("invoices", handler=TYPED_FAST)
    redis_client.zadd("redistimers:{invoices}:due", {"junk": 0})
    redis_client.hset("redistimers:{invoices}:body", "junk", "<xml>not json</xml>")
    assert scheduler.run_pending() == 1
    assert handler.calls == []
    (dead,) = scheduler.dead_timers("invoices")
    assert dead.timer_id == "junk"
    assert dead.reason == "undecodable"
    assert dead.attempts == 1
    assert dead.payload == "<xml>not json</xml>"
    assert scheduler.get_timer("invoices", "junk") is None


def test_envelope_that_is_not_utf8_is_dead_lettered_at_once_through_run_pending(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    scheduler, handler = recording("invoices", handler=TYPED_FAST)
    redis_client.zadd("redistimers:{invoices}:due", {"junk": 0})
    redis_client.hset("redistimers:{invoices}:body", "junk", b"\xff\xfe{not utf-8")
    assert scheduler.run_pending() == 1
    assert handler.calls == []
    (dead,) = scheduler.dead_timers("invoices")
    assert dead.timer_id == "junk"
    assert dead.reason == "undecodable"
    assert dead.attempts == 1
    assert scheduler.get_timer("invoices", "junk") is None


def test_envelope_that_is_not_utf8_is_dead_lettered_while_the_topic_keeps_flowing(
    recording: RecordingFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    """With one handler slot, a body that cannot even be stored as text in a dead letter
    must still free its slot: the timers after it are delivered."""
    scheduler, handler = recording("invoices", handler={**TYPED_FAST, "max_concurrent": 1})
    redis_client.zadd("redistimers:{invoices}:due", {"junk": 0})
    redis_client.hset("redistimers:{invoices}:body", "junk", b"\xff\xfe{not utf-8")
    scheduler.set_timer("invoices", InvoiceDue("INV-1", 1), activate_in=0.05, timer_id="good")
    scheduler.start()
    try:
        handler.wait_calls(1, timeout=3)
        wait_for(lambda: scheduler.dead_timers("invoices"), timeout=3)
        wait_for(lambda: scheduler.metrics().in_flight == {"invoices": 0}, timeout=3)
    finally:
        release.set()
        assert scheduler.stop(timeout=1), "a handler slot was never given back"
    assert handler.payloads == [InvoiceDue("INV-1", 1)]
    (dead,) = scheduler.dead_timers("invoices")
    assert dead.timer_id == "junk"
    assert dead.attempts == 1


def test_timer_whose_deliveries_never_reported_back_is_dead_lettered_without_running_again(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    """Workers that died mid-handler used up the attempts (counted in Redis at each
    claim), the last one running this timer alone (its lease marked '*', as solo.lua
    does): the next claim buries the timer instead of running its handler once more."""
    scheduler, handler = recording("jobs", handler={"retry": FAST_RETRY})
    scheduler.set_timer("jobs", "poison", activate_in=0, timer_id="p")
    redis_client.hset("redistimers:{jobs}:attempts", "p", FAST_RETRY.max_attempts)
    redis_client.hset("redistimers:{jobs}:lease", "p", "99*")  # the lost delivery's lease
    assert scheduler.run_pending() == 1
    assert handler.calls == []
    (dead,) = scheduler.dead_timers("jobs")
    assert dead.reason == "lease expired"
    assert dead.attempts == FAST_RETRY.max_attempts  # deliveries started, all lost
    assert dead.payload == "poison"
    assert scheduler.get_timer("jobs", "p") is None


def test_reject_timer_removes_the_timer_for_good_and_logs_a_warning_with_its_ids(
    recording: RecordingFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def reject(payload: Any, delivery: Delivery | None) -> None:
        raise RejectTimer("invoice already paid")

    caplog.set_level(logging.DEBUG, logger="redistimers")
    scheduler, handler = recording("invoices", reject, handler=TYPED_FAST)
    scheduler.set_timer("invoices", InvoiceDue("INV-1", 995), activate_in=0, timer_id="INV-1")
    with scheduler:
        handler.wait_calls(1)
        wait_for(timer_gone(scheduler, "invoices", "INV-1"))
        wait_for(lambda: scheduler.metrics().rejected == 1)
        metrics = scheduler.metrics()

    assert len(handler.calls) == 1  # never retried
    assert scheduler.dead_timers("invoices") == []
    assert metrics.retried == 0
    assert metrics.dead_lettered == 0
    records = [r for r in caplog.records if getattr(r, "timer_id", None) == "INV-1"]
    assert records, "no log record carries the rejected timer's id"
    (warning,) = [r for r in records if r.levelno == logging.WARNING]
    assert warning.name.startswith("redistimers")
    assert warning.topic == "invoices"  # type: ignore[attr-defined]
    assert warning.timer_id == "INV-1"  # type: ignore[attr-defined]
    assert warning.attempt == 1  # type: ignore[attr-defined]
    assert "invoice already paid" in warning.getMessage()
    assert not [r for r in records if r.levelno >= logging.ERROR]


# -- reading dead letters -----------------------------------------------------------------


def test_dead_timers_pages_by_limit_and_offset_in_the_order_they_died(
    recording: RecordingFactory,
) -> None:
    scheduler, _ = recording("jobs", always_fail, handler={"retry": ONE_ATTEMPT})
    order = ["e", "c", "a", "d", "b"]  # neither alphabetical nor by id
    kill(scheduler, "jobs", *order)

    everything = scheduler.dead_timers("jobs")
    assert [d.timer_id for d in everything] == order
    died = [d.died_at for d in everything]
    assert died == sorted(died)
    assert [d.timer_id for d in scheduler.dead_timers("jobs", limit=2)] == ["e", "c"]
    assert [d.timer_id for d in scheduler.dead_timers("jobs", limit=2, offset=2)] == ["a", "d"]
    assert [d.timer_id for d in scheduler.dead_timers("jobs", limit=2, offset=4)] == ["b"]
    assert scheduler.dead_timers("jobs", offset=5) == []
    assert scheduler.dead_timers("jobs", limit=0) == []
    assert [d.timer_id for d in scheduler.dead_timers("jobs", offset=3)] == ["d", "b"]


def test_dead_timers_of_a_topic_without_dead_letters_is_empty(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    assert scheduler.dead_timers("never-used") == []
    scheduler.set_timer("jobs", "x", activate_in=60, timer_id="x")  # alive, not dead
    assert scheduler.dead_timers("jobs") == []


@pytest.mark.parametrize(("limit", "offset"), [(-1, 0), (10, -1), (1.5, 0), (True, 0)])
def test_dead_timers_refuses_a_bad_limit_or_offset(
    make_scheduler: SchedulerFactory, limit: Any, offset: Any
) -> None:
    scheduler = make_scheduler()
    with pytest.raises(InvalidTimerError):
        scheduler.dead_timers("jobs", limit=limit, offset=offset)


# -- requeue and purge --------------------------------------------------------------------


def test_requeue_dead_of_one_id_makes_it_due_now_with_attempts_reset(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    switch = Switch()
    policy = RetryPolicy(max_attempts=2, initial=0.01, maximum=0.01, jitter=False)
    scheduler, handler = recording("jobs", switch, handler={"retry": policy})
    scheduler.set_timer("jobs", {"n": 1}, activate_in=0, timer_id="a",
                        headers={"k": "v"}, correlation_id="c-1")
    scheduler.set_timer("jobs", {"n": 2}, activate_in=0, timer_id="b")
    with scheduler:
        wait_for(lambda: len(scheduler.dead_timers("jobs")) == 2)
    assert len(handler.calls) == 4

    before = server_now(redis_client)
    assert scheduler.requeue_dead("jobs", "a") == 1
    after = server_now(redis_client)
    info = scheduler.get_timer("jobs", "a")
    assert info is not None
    assert info.attempts == 0
    assert before <= info.due_at <= after  # due now, by the server's clock
    assert info.remaining == dt.timedelta(0)
    assert info.payload == {"n": 1}
    assert dict(info.headers) == {"k": "v"}
    assert info.correlation_id == "c-1"
    assert [d.timer_id for d in scheduler.dead_timers("jobs")] == ["b"]

    switch.failing.clear()
    assert scheduler.run_pending() == 1
    last = handler.calls[-1]
    assert last.payload == {"n": 1}
    assert last.delivery is not None
    assert last.delivery.attempt == 1  # a fresh start, not attempt 3
    assert last.delivery.correlation_id == "c-1"
    assert scheduler.get_timer("jobs", "a") is None
    assert [d.timer_id for d in scheduler.dead_timers("jobs")] == ["b"]


def test_requeue_dead_of_all_brings_every_one_back_and_a_running_scheduler_fires_them(
    recording: RecordingFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    killer, killed = recording("jobs", always_fail, handler={"retry": ONE_ATTEMPT})
    kill(killer, "jobs", "a", "b", "c")
    assert len(killer.dead_timers("jobs")) == 3

    # The worker sleeps up to max_poll_interval on its empty topic: only the wake-up the
    # requeue publishes brings it round in time.
    worker, handler = recording("jobs", handler={"retry": ONE_ATTEMPT}, max_poll_interval=30)
    with running(worker, release):
        wait_for(lambda: redis_client.pubsub_numsub("redistimers:{jobs}:wake")[0][1] >= 1)
        time.sleep(0.1)  # let the poller go to sleep
        requeued_at = server_now(redis_client)
        assert killer.requeue_dead("jobs") == 3  # another process: a pub/sub wake-up
        again = handler.wait_calls(3, timeout=5)
        for timer_id in "abc":
            wait_for(timer_gone(worker, "jobs", timer_id))
    assert len(killed.calls) == 3
    assert sorted(c.payload for c in again) == ["a", "b", "c"]
    assert all(c.delivery is not None and c.delivery.attempt == 1 for c in again)
    assert all(c.server_now - requeued_at < dt.timedelta(seconds=2) for c in again)
    assert worker.dead_timers("jobs") == []


def test_requeue_dead_of_all_brings_back_more_than_one_script_calls_worth(
    recording: RecordingFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    count = 1234  # the requeue script moves at most 1000 per call
    worker, _ = recording(
        "jobs", always_fail, handler={"retry": ONE_ATTEMPT, "max_concurrent": 100}
    )
    for n in range(count):
        worker.set_timer("jobs", n, activate_in=0, timer_id=f"t{n}")
    with running(worker, release):
        wait_for(lambda: redis_client.zcard("redistimers:{jobs}:dead") == count)
    assert len(worker.dead_timers("jobs", limit=2000)) == count
    assert worker.requeue_dead("jobs") == count
    assert worker.dead_timers("jobs") == []
    assert redis_client.zcard("redistimers:{jobs}:due") == count
    info = worker.get_timer("jobs", "t1233")
    assert info is not None
    assert info.attempts == 0
    assert info.payload == 1233


def test_requeue_dead_of_an_unknown_id_returns_zero_and_creates_nothing(
    recording: RecordingFactory,
) -> None:
    scheduler, _ = recording("jobs", always_fail, handler={"retry": ONE_ATTEMPT})
    assert scheduler.requeue_dead("jobs", "nobody") == 0
    assert scheduler.requeue_dead("jobs") == 0  # nothing dead at all
    kill(scheduler, "jobs", "x")
    assert scheduler.requeue_dead("jobs", "nobody") == 0
    assert scheduler.get_timer("jobs", "nobody") is None
    assert [d.timer_id for d in scheduler.dead_timers("jobs")] == ["x"]


def test_requeue_dead_of_a_live_timer_does_not_touch_it(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("jobs", "later", activate_in=60, timer_id="live")
    assert scheduler.requeue_dead("jobs", "live") == 0
    info = scheduler.get_timer("jobs", "live")
    assert info is not None
    assert info.remaining > dt.timedelta(seconds=50)


def test_purge_dead_returns_how_many_it_deleted_and_leaves_live_timers(
    recording: RecordingFactory,
) -> None:
    scheduler, _ = recording("jobs", always_fail, handler={"retry": ONE_ATTEMPT})
    kill(scheduler, "jobs", "a", "b", "c")
    scheduler.set_timer("jobs", "alive", activate_in=60, timer_id="alive")
    assert scheduler.purge_dead("jobs") == 3
    assert scheduler.dead_timers("jobs") == []
    assert scheduler.purge_dead("jobs") == 0
    assert scheduler.requeue_dead("jobs", "a") == 0  # gone for good
    assert scheduler.get_timer("jobs", "alive") is not None
    assert scheduler.purge_dead("other") == 0


def test_setting_a_dead_timers_id_again_clears_its_dead_letter(
    recording: RecordingFactory,
) -> None:
    switch = Switch()
    scheduler, handler = recording("jobs", switch, handler={"retry": ONE_ATTEMPT})
    kill(scheduler, "jobs", "x", "y")
    scheduler.set_timer("jobs", "fixed", activate_in=0, timer_id="x")
    assert [d.timer_id for d in scheduler.dead_timers("jobs")] == ["y"]
    info = scheduler.get_timer("jobs", "x")
    assert info is not None
    assert info.attempts == 0
    assert info.payload == "fixed"
    # The old dead letter cannot come back over the new timer.
    assert scheduler.requeue_dead("jobs", "x") == 0
    switch.failing.clear()
    assert scheduler.run_pending() == 1
    assert handler.calls[-1].payload == "fixed"
    assert handler.calls[-1].delivery is not None
    assert handler.calls[-1].delivery.attempt == 1
    assert [d.timer_id for d in scheduler.dead_timers("jobs")] == ["y"]
