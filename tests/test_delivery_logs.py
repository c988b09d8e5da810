"""Delivery logs: one record per finished delivery (DEBUG when it succeeded, INFO, WARNING
or ERROR otherwise), all with the same `extra` fields; one summary line a minute while
busy, none while idle."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from redistimers import RejectTimer, RetryPolicy, RetryTimer, Router
from redistimers.metrics import MetricsCounter
from redistimers.summary import MinuteSummary, percentile

from .helpers import SchedulerFactory, wait_for

FIELDS = {"topic", "timer_id", "attempt", "outcome", "lateness_ms", "duration_ms"}


def _fail(payload: Any) -> None:
    raise ValueError("card declined")


def _retry(payload: Any) -> None:
    raise RetryTimer(60)


def _reject(payload: Any) -> None:
    raise RejectTimer("not wanted")


def test_every_finished_delivery_is_one_record_with_the_same_fields(
    make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router()
    router.handler("ok")(lambda payload: None)
    router.handler("flaky", retry=RetryPolicy(max_attempts=3, initial=30))(_fail)
    router.handler("doomed", retry=RetryPolicy(max_attempts=1))(_fail)
    router.handler("later")(_retry)
    router.handler("rejected")(_reject)
    scheduler = make_scheduler(router)
    for topic in ("ok", "flaky", "doomed", "later", "rejected"):
        scheduler.set_timer(topic, 1, activate_in=0, timer_id=f"{topic}-1")
    with caplog.at_level(logging.DEBUG, logger="redistimers"), scheduler:
        wait_for(lambda: scheduler.metrics().delivered == 5, 10)
    records = {r.timer_id: r for r in caplog.records  # type: ignore[attr-defined]
               if r.name == "redistimers.delivery"}
    assert sorted(records) == ["doomed-1", "flaky-1", "later-1", "ok-1", "rejected-1"]
    expected = {
        "ok-1": ("DEBUG", "succeeded"),
        "flaky-1": ("WARNING", "retried"),
        "doomed-1": ("ERROR", "dead_lettered"),
        "later-1": ("INFO", "retried"),
        "rejected-1": ("WARNING", "rejected"),
    }
    for timer_id, record in records.items():
        fields = {name: getattr(record, name) for name in FIELDS}
        assert (record.levelname, fields["outcome"]) == expected[timer_id], timer_id
        assert fields["topic"] == timer_id.removesuffix("-1")
        assert fields["attempt"] == 1
        assert 0 <= fields["lateness_ms"] < 5000
        assert 0 <= fields["duration_ms"] < 5000
    assert "delivered (attempt 1)" in records["ok-1"].getMessage()
    assert "ms late, handler took" in records["ok-1"].getMessage()
    assert records["flaky-1"].exc_info is not None  # the traceback of a failure
    assert records["doomed-1"].exc_info is not None


def test_a_stopping_worker_sums_up_what_it_delivered_and_an_idle_one_says_nothing(
    make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router()
    router.handler("ok")(lambda payload: None)
    router.handler("bad", retry=RetryPolicy(max_attempts=1))(_fail)
    idle = make_scheduler(router)
    with caplog.at_level(logging.INFO, logger="redistimers"):
        with idle:
            pass
        assert [r for r in caplog.records if r.name == "redistimers.summary"] == []

        busy = make_scheduler(router)
        for i in range(4):
            busy.set_timer("ok", i, activate_in=0)
        busy.set_timer("bad", 0, activate_in=0)
        with busy:
            wait_for(lambda: busy.metrics().delivered == 5, 10)
    (summary,) = [r for r in caplog.records if r.name == "redistimers.summary"]
    assert "5 delivered (4 succeeded, 0 to retry, 1 dead-lettered, 1 failed)" in (
        summary.getMessage()
    )
    assert (summary.delivered, summary.dead_lettered, summary.failed) == (5, 1, 1)  # type: ignore[attr-defined]
    assert summary.late_p50_ms <= summary.late_p99_ms  # type: ignore[attr-defined]


def test_the_minute_summary_logs_each_busy_minute_and_skips_idle_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = MetricsCounter()
    summary = MinuteSummary(lambda: [counter.take_window()], interval=0.0)
    for i in range(100):
        counter.finished("t", "ack", False, lateness_s=i / 1000, duration_s=0.001)
    counter.finished("t", "retry", True, lateness_s=0.5, duration_s=0.001)
    counter.finished("t", "release", False, lateness_s=0.0, duration_s=0.0)  # no delivery
    with caplog.at_level(logging.INFO, logger="redistimers.summary"):
        summary.tick()
        summary.tick()  # an idle minute: no line
    (line,) = caplog.records
    assert "101 delivered (100 succeeded, 1 to retry, 0 dead-lettered, 1 failed)" in (
        line.getMessage()
    )
    assert line.late_p50_ms == 50.0  # type: ignore[attr-defined]
    assert line.late_p99_ms == 99.0  # type: ignore[attr-defined]


def test_the_window_keeps_a_bounded_uniform_sample() -> None:
    counter = MetricsCounter()
    for i in range(20_000):
        counter.finished("t", "ack", False, lateness_s=i / 20_000, duration_s=0.0)
    window = counter.take_window()
    assert window.delivered == 20_000
    assert len(window.lateness) == 2000
    median = percentile(sorted(window.lateness), 0.5)
    assert 0.4 < median < 0.6  # the sample spans the whole window, not its start
    assert counter.take_window().delivered == 0
