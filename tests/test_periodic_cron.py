"""Cron timers (the croniter extra) and time zones, refused periods, what get_timer shows."""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from redistimers import InvalidTimerError, TimerSpec

from .helpers import RecordingFactory, SchedulerFactory, server_now

BERLIN = ZoneInfo("Europe/Berlin")


# -- inspection ---------------------------------------------------------------------------


def test_get_timer_shows_the_period_cron_and_time_zone(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("ticks", 1, every=dt.timedelta(minutes=5), timer_id="every")
    scheduler.set_timer("ticks", 2, every=1.5, timer_id="every-float")
    scheduler.set_timer("ticks", 3, cron="*/5 * * * *", tz=BERLIN, timer_id="cron")
    scheduler.set_timer("ticks", 4, cron="0 * * * *", timer_id="cron-utc")
    scheduler.set_timer("ticks", 5, activate_in=60, timer_id="once")
    every = scheduler.get_timer("ticks", "every")
    every_float = scheduler.get_timer("ticks", "every-float")
    cron = scheduler.get_timer("ticks", "cron")
    cron_utc = scheduler.get_timer("ticks", "cron-utc")
    once = scheduler.get_timer("ticks", "once")
    assert every is not None
    assert every_float is not None
    assert cron is not None
    assert cron_utc is not None
    assert once is not None
    assert (every.every, every.cron, every.tz) == (dt.timedelta(minutes=5), None, None)
    assert every.remaining > dt.timedelta(minutes=4, seconds=50)
    assert every_float.every == dt.timedelta(seconds=1.5)
    assert (cron.every, cron.cron, cron.tz) == (None, "*/5 * * * *", "Europe/Berlin")
    assert (cron_utc.cron, cron_utc.tz) == ("0 * * * *", "UTC")
    assert (once.every, once.cron, once.tz) == (None, None, None)


# -- cron ---------------------------------------------------------------------------------


def test_cron_every_minute_is_first_due_at_the_next_whole_minute(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    before = server_now(redis_client)
    scheduler.set_timer("reports", "r", cron="* * * * *", tz=BERLIN, timer_id="r")
    info = scheduler.get_timer("reports", "r")
    assert info is not None
    assert (info.due_at.second, info.due_at.microsecond) == (0, 0)
    assert before < info.due_at <= before + dt.timedelta(minutes=1)
    assert info.cron == "* * * * *"


@pytest.mark.parametrize("skew", [-120.0, 120.0])
def test_cron_first_occurrence_comes_from_the_redis_clock_not_this_machines(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch, skew: float,
) -> None:
    """A scheduling machine whose clock is two minutes off neither stores a minute already
    past (fired at once, off the grid) nor skips occurrences."""
    scheduler = make_scheduler()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + skew)
    before = server_now(redis_client)
    scheduler.set_timers([
        TimerSpec("reports", "r", cron="* * * * *", timer_id="bulk"),
    ])
    scheduler.set_timer("reports", "r", cron="* * * * *", timer_id="one")
    monkeypatch.undo()
    for timer_id in ("one", "bulk"):
        info = scheduler.get_timer("reports", timer_id)
        assert info is not None
        assert (info.due_at.second, info.due_at.microsecond) == (0, 0)
        assert before < info.due_at <= before + dt.timedelta(minutes=1), timer_id


def test_cron_times_are_read_in_the_given_time_zone(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    before = server_now(redis_client)
    scheduler.set_timer("reports", "r", cron="30 9 * * *", tz=BERLIN, timer_id="berlin")
    scheduler.set_timer("reports", "r", cron="30 9 * * *", timer_id="utc")
    berlin = scheduler.get_timer("reports", "berlin")
    utc = scheduler.get_timer("reports", "utc")
    assert berlin is not None
    assert utc is not None
    local = berlin.due_at.astimezone(BERLIN)
    assert (local.hour, local.minute, local.second) == (9, 30, 0)
    assert (utc.due_at.hour, utc.due_at.minute, utc.due_at.second) == (9, 30, 0)
    for info in (berlin, utc):
        assert before < info.due_at <= before + dt.timedelta(days=1)


def test_cron_timer_delivered_through_run_pending_moves_to_its_next_time(
    recording: RecordingFactory,
) -> None:
    scheduler, handler = recording("reports")
    scheduler.set_timer("reports", "r", cron="* * * * *", tz=BERLIN, activate_in=0,
                        timer_id="r")
    assert scheduler.run_pending() == 1
    delivered_at = handler.calls[0].server_now
    info = scheduler.get_timer("reports", "r")
    assert info is not None
    assert (info.due_at.second, info.due_at.microsecond) == (0, 0)
    assert delivered_at < info.due_at <= delivered_at + dt.timedelta(minutes=1)
    assert info.attempts == 0
    assert (info.cron, info.tz) == ("* * * * *", "Europe/Berlin")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"cron": "not a cron"}, "not a cron"),
        ({"cron": "61 * * * *"}, "61 * * * *"),
        ({"cron": 5}, "cron"),
        ({"every": dt.timedelta(seconds=1), "cron": "* * * * *"}, "every"),
        ({"every": 1.0, "tz": BERLIN}, "tz"),
        ({"tz": BERLIN, "activate_in": 1}, "tz"),
        ({"cron": "* * * * *", "tz": "Nowhere/Nothing"}, "Nowhere/Nothing"),
        ({"every": 0}, "every"),
        ({"every": dt.timedelta(0)}, "every"),
        ({"every": dt.timedelta(seconds=-1)}, "every"),
        ({"every": -5.0}, "every"),
        ({"every": "5s"}, "every"),
    ],
)
def test_bad_period_is_refused_before_anything_is_written(
    make_scheduler: SchedulerFactory,
    redis_client: redis.Redis,
    options: dict[str, Any],
    words: str,
) -> None:
    scheduler = make_scheduler()
    with pytest.raises(InvalidTimerError) as caught:
        scheduler.set_timer("ticks", "x", timer_id="t", **options)
    assert words in str(caught.value)
    assert redis_client.dbsize() == 0


def test_cron_without_the_croniter_extra_is_a_clear_error_and_every_still_works(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)  # `import croniter` now fails
    scheduler = make_scheduler()
    with pytest.raises(InvalidTimerError, match=r"redistimers\[cron\]") as caught:
        scheduler.set_timer("reports", "r", cron="* * * * *", timer_id="r")
    assert "croniter" in str(caught.value)
    assert redis_client.dbsize() == 0
    scheduler.set_timer("ticks", "t", every=1.0, timer_id="t")
    assert scheduler.get_timer("ticks", "t") is not None


def test_worker_without_croniter_dead_letters_a_cron_timer_with_a_clear_error(
    recording: RecordingFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduler, handler = recording("reports")
    scheduler.set_timer("reports", "r", cron="* * * * *", activate_in=0, timer_id="r")
    monkeypatch.setitem(sys.modules, "croniter", None)
    assert scheduler.run_pending() == 1
    assert len(handler.calls) == 1
    assert scheduler.get_timer("reports", "r") is None
    (dead,) = scheduler.dead_timers("reports")
    assert dead.timer_id == "r"
    assert "redistimers[cron]" in dead.error
