"""What becomes of a timer after its handler ran (the README's table of outcomes),
through the threaded poller and through run_pending."""

from __future__ import annotations

import datetime as dt
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
    SchedulerStateError,
)

from .helpers import (
    FAST_RETRY,
    UTC,
    InvoiceDue,
    Recorder,
    RecordingFactory,
    SchedulerFactory,
    blocked_until,
    dead_letters,
    redistimers_threads,
    running,
    server_now,
    timer_gone,
    wait_for,
)

# -- outcomes of a delivery ---------------------------------------------------------------


def test_handler_that_raises_is_retried_until_it_succeeds(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    def fail_twice(payload: Any, delivery: Delivery | None) -> None:
        assert delivery is not None
        if delivery.attempt < 3:
            raise ValueError(f"attempt {delivery.attempt} fails")

    scheduler, handler = recording("ticks", fail_twice, handler={"retry": FAST_RETRY})
    scheduler.set_timer("ticks", "x", activate_in=0, timer_id="x")
    with scheduler:
        calls = handler.wait_calls(3)
        wait_for(timer_gone(scheduler, "ticks", "x"))
    assert [c.delivery.attempt for c in calls if c.delivery] == [1, 2, 3]
    assert [c.payload for c in calls] == ["x", "x", "x"]
    # Each retry waited its backoff: 10 ms after the first failure, 20 ms after the second.
    assert calls[1].server_now - calls[0].server_now >= dt.timedelta(milliseconds=10)
    assert calls[2].server_now - calls[1].server_now >= dt.timedelta(milliseconds=20)
    assert dead_letters(redis_client, "ticks") == {}


def test_scheduler_retry_policy_applies_to_topics_without_their_own(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    def always_fail(payload: Any, delivery: Delivery | None) -> None:
        raise RuntimeError("boom")

    scheduler, handler = recording(
        "ticks", always_fail,
        retry=RetryPolicy(max_attempts=2, initial=0.01, maximum=0.01, jitter=False),
    )
    scheduler.set_timer("ticks", "x", activate_in=0, timer_id="x")
    with scheduler:
        wait_for(lambda: "x" in dead_letters(redis_client, "ticks"))
    assert [c.delivery.attempt for c in handler.calls if c.delivery] == [1, 2]


def test_retry_timer_delay_is_honoured(recording: RecordingFactory) -> None:
    def retry_once(payload: Any, delivery: Delivery | None) -> None:
        assert delivery is not None
        if delivery.attempt == 1:
            raise RetryTimer(dt.timedelta(milliseconds=300))

    scheduler, handler = recording(
        "ticks", retry_once, handler={"retry": RetryPolicy(max_attempts=2)}
    )
    scheduler.set_timer("ticks", "x", activate_in=0, timer_id="x")
    with scheduler:
        first, second = handler.wait_calls(2)
        wait_for(timer_gone(scheduler, "ticks", "x"))
    assert second.delivery is not None
    assert second.delivery.attempt == 2
    assert second.server_now - first.server_now >= dt.timedelta(milliseconds=300)
    assert second.delivery.due_at >= first.server_now + dt.timedelta(milliseconds=299)
    assert len(handler.calls) == 2


def test_reject_timer_removes_the_timer_for_good(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    def reject(payload: Any, delivery: Delivery | None) -> None:
        raise RejectTimer("not wanted")

    scheduler, handler = recording("ticks", reject, handler={"retry": FAST_RETRY})
    scheduler.set_timer("ticks", "x", activate_in=0, timer_id="x")
    with scheduler:
        handler.wait_calls(1)
        wait_for(timer_gone(scheduler, "ticks", "x"))
    assert len(handler.calls) == 1
    assert dead_letters(redis_client, "ticks") == {}
    assert redis_client.exists("redistimers:{ticks}:due", "redistimers:{ticks}:body") == 0


def test_reject_timer_with_dead_letter_keeps_it_in_the_dead_letters_at_once(
    recording: RecordingFactory,
) -> None:
    def reject(payload: Any, delivery: Delivery | None) -> None:
        raise RejectTimer("url not allowed", dead_letter=True)

    scheduler, handler = recording("hooks", reject, handler={"retry": FAST_RETRY})
    scheduler.set_timer("hooks", {"url": "http://10.0.0.1/"}, activate_in=0, timer_id="w")
    assert scheduler.run_pending() == 1
    assert len(handler.calls) == 1  # not retried although attempts were left
    assert scheduler.get_timer("hooks", "w") is None
    (dead,) = scheduler.dead_timers("hooks")
    assert (dead.timer_id, dead.reason, dead.attempts) == ("w", "rejected", 1)
    assert dead.error == "RejectTimer: url not allowed"
    assert dead.payload == {"url": "http://10.0.0.1/"}


def test_retry_timer_counts_toward_max_attempts_then_dead_letters_with_its_request(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    """RetryTimer sets the delay of the next attempt, but every attempt counts: a handler
    that asks again and again ends in dead letters instead of looping for ever."""

    def not_ready_yet(payload: Any, delivery: Delivery | None) -> None:
        raise RetryTimer(0.01)

    scheduler, handler = recording(
        "polls", not_ready_yet, handler={"retry": RetryPolicy(max_attempts=3)}
    )
    scheduler.set_timer("polls", "x", activate_in=0, timer_id="x")
    with scheduler:
        wait_for(lambda: "x" in dead_letters(redis_client, "polls"))
    assert [c.delivery.attempt for c in handler.calls if c.delivery] == [1, 2, 3]
    record = dead_letters(redis_client, "polls")["x"]
    assert record["attempts"] == 3
    assert record["error"]["type"] == "RetryTimer"
    assert record["error"]["reason"] == "failed"


def test_timer_past_max_attempts_goes_to_dead_letters_with_its_error(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    def always_fail(payload: Any, delivery: Delivery | None) -> None:
        raise RuntimeError("card declined")

    policy = RetryPolicy(max_attempts=3, initial=0.01, maximum=0.01, jitter=False)
    scheduler, handler = recording(
        "invoices", always_fail, handler={"payload": InvoiceDue, "retry": policy}
    )
    scheduler.set_timer(
        "invoices", InvoiceDue("INV-1", 995), activate_in=0, timer_id="INV-1",
        headers={"tenant": "acme"},
    )
    with scheduler:
        wait_for(lambda: "INV-1" in dead_letters(redis_client, "invoices"))
    assert [c.delivery.attempt for c in handler.calls if c.delivery] == [1, 2, 3]
    assert scheduler.get_timer("invoices", "INV-1") is None
    record = dead_letters(redis_client, "invoices")["INV-1"]
    assert record["attempts"] == 3
    assert record["error"]["reason"] == "failed"
    assert record["error"]["type"] == "RuntimeError"
    assert record["error"]["message"] == "card declined"
    envelope = json.loads(record["envelope"])
    assert envelope["p"] == {"invoice_id": "INV-1", "amount_cents": 995}
    assert envelope["h"] == {"tenant": "acme"}
    assert redis_client.hlen("redistimers:{invoices}:attempts") == 0
    assert redis_client.hlen("redistimers:{invoices}:lease") == 0


def test_payload_that_does_not_decode_goes_to_dead_letters_without_calling_the_handler(
    recording: RecordingFactory, make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    worker, handler = recording("invoices", handler={"payload": InvoiceDue, "retry": FAST_RETRY})
    web_app = make_scheduler()  # knows no payload type, so cannot check it
    web_app.set_timer("invoices", {"wrong": "shape"}, activate_in=0, timer_id="bad")
    with worker:
        wait_for(lambda: "bad" in dead_letters(redis_client, "invoices"))
    assert handler.calls == []
    record = dead_letters(redis_client, "invoices")["bad"]
    assert record["error"]["reason"] == "undecodable"
    assert record["attempts"] == 1


def test_one_scheduler_delivers_every_topic_it_handles(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router, other = Router(), Router()
    handler = Recorder(redis_client)
    for topic in ("a", "b", "c"):
        router.handler(topic)(handler)
    other.handler("d")(handler)
    scheduler = make_scheduler(router, other)
    for topic in ("a", "b", "c", "d"):
        scheduler.set_timer(topic, topic, activate_in=0.05)
    with scheduler:
        calls = handler.wait_calls(4)
    assert sorted((c.payload, c.delivery.topic) for c in calls if c.delivery) == [
        ("a", "a"), ("b", "b"), ("c", "c"), ("d", "d")
    ]


def test_topic_without_a_handler_in_this_worker_is_not_claimed(recording: RecordingFactory) -> None:
    scheduler, handler = recording("mine", handler={"max_concurrent": 1})
    scheduler.set_timer("theirs", "t", activate_in=0, timer_id="t")
    scheduler.set_timer("mine", "m", activate_in=0.2, timer_id="m")
    with scheduler:
        handler.wait_calls(1)
    info = scheduler.get_timer("theirs", "t")
    assert info is not None
    assert (info.attempts, info.leased) == (0, False)


def test_running_handler_keeps_its_lease_beyond_lease_ttl(
    recording: RecordingFactory, release: threading.Event
) -> None:
    scheduler, handler = recording("ticks", blocked_until(release), handler={"lease_ttl": 0.6})
    scheduler.set_timer("ticks", "x", activate_in=0, timer_id="x")
    with running(scheduler, release):
        handler.wait_calls(1)
        first = scheduler.get_timer("ticks", "x")
        assert first is not None
        # Wait until the lease was renewed past twice its original length.
        wait_for(lambda: (scheduler.get_timer("ticks", "x") or first).due_at
                 > first.due_at + dt.timedelta(seconds=0.6))
        release.set()
        wait_for(timer_gone(scheduler, "ticks", "x"))
    assert len(handler.calls) == 1  # never delivered again while it ran


def test_new_version_keeps_its_lease_while_the_old_version_still_runs(
    recording: RecordingFactory, release: threading.Event
) -> None:
    """Re-setting an id while its handler runs makes the old delivery's lease stale; the
    new version's delivery, running at the same time, must still have its lease renewed."""
    scheduler, handler = recording("ticks", blocked_until(release), handler={"lease_ttl": 0.3})
    scheduler.set_timer("ticks", "v1", activate_in=0, timer_id="x")
    with running(scheduler, release):
        handler.wait_calls(1)
        scheduler.set_timer("ticks", "v2", activate_in=0, timer_id="x")
        handler.wait_calls(2)
        first = scheduler.get_timer("ticks", "x")
        assert first is not None
        assert first.leased is True

        def renewed_or_redelivered() -> bool:
            info = scheduler.get_timer("ticks", "x")
            renewed = info is not None and info.due_at > first.due_at + dt.timedelta(seconds=0.3)
            return renewed or len(handler.calls) > 2

        wait_for(renewed_or_redelivered)
        assert [c.payload for c in handler.calls] == ["v1", "v2"], "v2 delivered again"
        release.set()
        wait_for(timer_gone(scheduler, "ticks", "x"))
    assert [c.payload for c in handler.calls] == ["v1", "v2"]


def test_at_most_max_concurrent_handlers_of_a_topic_run_at_once(
    recording: RecordingFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    scheduler, handler = recording("ticks", blocked_until(release), handler={"max_concurrent": 2})
    for n in range(5):
        scheduler.set_timer("ticks", n, activate_in=0, timer_id=str(n))
    with running(scheduler, release):
        handler.wait_calls(2)
        time.sleep(0.2)  # give a third handler the chance to start, if it wrongly could
        assert len(handler.calls) == 2
        waiting = [scheduler.get_timer("ticks", str(n)) for n in range(5)]
        assert sum(1 for info in waiting if info is not None and info.leased) == 2
        release.set()
        handler.wait_calls(5)
        wait_for(lambda: redis_client.zcard("redistimers:{ticks}:due") == 0)
    assert sorted(handler.payloads) == [0, 1, 2, 3, 4]


# -- run_pending ------------------------------------------------------------------------


def test_run_pending_runs_due_timers_synchronously_and_counts_them(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    handler = Recorder(redis_client)
    router.handler("ticks")(handler)
    router.handler("tocks")(handler)
    scheduler = make_scheduler(router)
    before = redistimers_threads()
    past = server_now(redis_client) - dt.timedelta(seconds=10)
    scheduler.set_timer("ticks", "b", activate_at=past + dt.timedelta(seconds=2))
    scheduler.set_timer("ticks", "a", activate_at=past + dt.timedelta(seconds=1))
    scheduler.set_timer("tocks", "c", activate_at=past)
    scheduler.set_timer("ticks", "later", activate_in=60, timer_id="later")
    assert scheduler.run_pending() == 3
    assert sorted(handler.payloads) == ["a", "b", "c"]
    assert handler.payloads.index("a") < handler.payloads.index("b")
    assert scheduler.get_timer("ticks", "later") is not None
    assert scheduler.run_pending() == 0
    assert redistimers_threads() - before == set()


def test_run_pending_runs_handlers_in_the_calling_thread(
    make_scheduler: SchedulerFactory,
) -> None:
    threads: list[threading.Thread] = []
    router = Router()
    router.handler("ticks")(lambda payload: threads.append(threading.current_thread()))
    scheduler = make_scheduler(router)
    scheduler.set_timer("ticks", 1, activate_at=dt.datetime(2020, 1, 1, tzinfo=UTC))
    assert scheduler.run_pending() == 1
    assert threads == [threading.current_thread()]
    assert scheduler.running is False


def test_run_pending_does_not_loop_on_a_timer_that_asks_to_run_again_at_once(
    recording: RecordingFactory,
) -> None:
    def again(payload: Any, delivery: Delivery | None) -> None:
        raise RetryTimer(0)

    scheduler, handler = recording("ticks", again)
    scheduler.set_timer("ticks", "x", activate_at=dt.datetime(2020, 1, 1, tzinfo=UTC), timer_id="x")
    assert scheduler.run_pending() == 1
    assert len(handler.calls) == 1
    info = scheduler.get_timer("ticks", "x")
    assert info is not None
    assert info.leased is False
    assert info.attempts == 1


def test_run_pending_settles_failures_like_the_threads_do(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    def fail(payload: Any, delivery: Delivery | None) -> None:
        raise ValueError("nope")

    scheduler, _ = recording("ticks", fail, handler={"retry": RetryPolicy(max_attempts=1)})
    scheduler.set_timer("ticks", "x", activate_at=dt.datetime(2020, 1, 1, tzinfo=UTC), timer_id="x")
    assert scheduler.run_pending() == 1
    assert scheduler.get_timer("ticks", "x") is None
    assert dead_letters(redis_client, "ticks")["x"]["error"]["message"] == "nope"


def test_run_pending_while_started_raises_scheduler_state_error(
    recording: RecordingFactory,
) -> None:
    scheduler, _ = recording("ticks")
    scheduler.start()
    with pytest.raises(SchedulerStateError):
        scheduler.run_pending()
    scheduler.stop()
    assert scheduler.run_pending() == 0
